"""The parts a recommendation request is built from, each replaceable (dependency injection).

- a :class:`FeatureReader` returns a user's online features (Feast → Redis in production),
- :class:`SeenItems` knows which items a user already has (training history),
- :class:`Popularity` answers when the model cannot (unknown/cold user, feature store down),
- :class:`ItemCatalog` answers ``/items/{id}``.
The model itself (user tower + item index) lives in :mod:`recommender.serving.model_bundle`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, Sequence

import numpy as np
import pandas as pd

from ecaug_feast import schema as S
from ecaug_feast.errors import DataValidationError


class FeatureStoreUnavailable(RuntimeError):
    """The online store could not be read (Redis down, timeout). Serving degrades, never crashes."""


@dataclass
class UserFeatures:
    """One user's online feature values. ``found`` is False when the store has no row for it.
    ``user_id``: ecaug's int id, or a shop's own key (a string, an int)."""

    user_id: Any
    found: bool
    values: dict[str, Any] = field(default_factory=dict)
    event_timestamp: datetime | None = None

    @property
    def n_interactions(self) -> int:
        v = self.values.get(S.N_INTERACTIONS)
        return int(v) if v is not None else 0

    @property
    def recent_items(self) -> list[int]:
        return [int(x) for x in (self.values.get(S.RECENT_ITEMS) or [])]


class FeatureReader(Protocol):
    """Reads online features for a batch of users, in order."""

    def read(self, user_ids: Sequence[int]) -> list[UserFeatures]:
        """Raise :class:`FeatureStoreUnavailable` when the backing store cannot be reached."""
        ...

    def ping(self) -> bool:
        """True when the backing store answers (used by ``/health``)."""
        ...


class SeenItems:
    """Per-user item history in CSR form (sorted user ids, offsets, items): O(log U) lookup,
    a few bytes per interaction."""

    def __init__(self, user_ids: np.ndarray, indptr: np.ndarray, items: np.ndarray):
        self._users = user_ids
        self._indptr = indptr
        self._items = items

    @classmethod
    def from_interactions(cls, df: pd.DataFrame, source: str = "<interactions>") -> "SeenItems":
        for col in ("user_id", "item_id"):
            if col not in df.columns:
                raise DataValidationError(source, col, "missing column")
        pairs = df[["user_id", "item_id"]].drop_duplicates().sort_values(["user_id", "item_id"])
        users = pairs["user_id"].to_numpy(np.int64)
        items = pairs["item_id"].to_numpy(np.int64)
        uniq, starts = np.unique(users, return_index=True)
        indptr = np.append(starts, len(users)).astype(np.int64)
        return cls(uniq, indptr, items)

    @classmethod
    def from_pairs(cls, users: np.ndarray, items: np.ndarray) -> "SeenItems":
        """From (user key, item index) pairs; user keys of any one orderable type (a shop's
        String keys as well as Int64), items > 0 kept (0 = an item the model does not know)."""
        users, items = np.asarray(users), np.asarray(items, dtype=np.int64)
        keep = items > 0
        df = pd.DataFrame({"u": users[keep], "i": items[keep]}).drop_duplicates().sort_values(["u", "i"], kind="stable")
        u = df["u"].to_numpy()
        if u.dtype == object:  # text keys: a fixed-width array searches without Python compares
            u = u.astype(str)
        uniq, starts = np.unique(u, return_index=True)
        return cls(uniq, np.append(starts, len(u)).astype(np.int64), df["i"].to_numpy(np.int64))

    def get(self, user_id: int) -> np.ndarray:
        i = int(np.searchsorted(self._users, user_id))
        if i < len(self._users) and self._users[i] == user_id:
            return self._items[self._indptr[i] : self._indptr[i + 1]]
        return np.empty(0, dtype=np.int64)

    def __contains__(self, user_id: int) -> bool:
        i = int(np.searchsorted(self._users, user_id))
        return i < len(self._users) and self._users[i] == user_id

    @property
    def n_users(self) -> int:
        return len(self._users)


class Popularity:
    """Items ranked by number of training interactions; the fallback ranking."""

    def __init__(self, item_ids: np.ndarray, counts: np.ndarray):
        order = np.lexsort((item_ids, -counts))  # most popular first, ties by id: deterministic
        self.item_ids = np.asarray(item_ids, dtype=np.int64)[order]
        self.counts = np.asarray(counts, dtype=np.float64)[order]
        total = float(self.counts.sum()) or 1.0
        self._score = (self.counts / total).astype(np.float32)  # share of interactions
        self._rank = {int(i): r for r, i in enumerate(self.item_ids)}

    @classmethod
    def from_interactions(
        cls, df: pd.DataFrame, catalogue: Sequence[int] | None = None, source: str = "<interactions>"
    ) -> "Popularity":
        if "item_id" not in df.columns:
            raise DataValidationError(source, "item_id", "missing column")
        counts = df["item_id"].value_counts()
        if catalogue is not None:  # items never bought still exist; they rank last
            counts = counts.reindex(pd.Index(np.asarray(catalogue, dtype=np.int64)), fill_value=0)
        return cls(counts.index.to_numpy(np.int64), counts.to_numpy(np.float64))

    def top(self, k: int, exclude: np.ndarray | Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item ids and their popularity share, skipping ``exclude``."""
        excl = np.asarray(exclude if exclude is not None else [], dtype=np.int64)
        take = min(len(self.item_ids), k + len(excl))
        ids, sc = self.item_ids[:take], self._score[:take]
        if len(excl):
            keep = ~np.isin(ids, excl)
            ids, sc = ids[keep], sc[keep]
        return ids[:k], sc[:k]

    def count(self, item_id: int) -> float | None:
        r = self._rank.get(int(item_id))
        return None if r is None else float(self.counts[r])


class ItemCatalog:
    """Item attributes for ``/items/{id}``."""

    def __init__(self, items: pd.DataFrame, source: str = "<items>"):
        if "item_id" not in items.columns:
            raise DataValidationError(source, "item_id", "missing column")
        self._rows = {int(r["item_id"]): r for r in items.to_dict("records")}

    def get(self, item_id: int) -> dict[str, Any] | None:
        row = self._rows.get(int(item_id))
        if row is None:
            return None
        return {k: _jsonable(v) for k, v in row.items()}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, item_id: int) -> bool:
        return int(item_id) in self._rows


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return v
