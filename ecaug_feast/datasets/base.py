"""The in-memory dataset every adapter returns, and the checks every adapter shares.

Invariants (checked by :func:`validate_dataset`, relied on by features, the GAN and the recommender):

- ``interactions``: ``user_id`` int64 in 1..U, ``item_id`` int64 in 1..I, ``event_timestamp``
  ``datetime64[ns, UTC]``, ``weight`` float64; sorted by (user_id, event_timestamp) with the input
  order kept for ties; no NaN anywhere.
- ``items``: one row per item id 1..I, ``attributes`` a non-empty list of int ids >= 1.
- ``users``: ``None`` or one row per user id with extra attribute columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ecaug_feast.errors import DataValidationError
from ecaug_feast.ids import MAX_REAL_ID

INTERACTION_COLUMNS = ["user_id", "item_id", "event_timestamp", "weight"]
SplitKind = Literal["leave_last_out", "temporal"]


@dataclass
class Dataset:
    """A loaded, validated dataset with contiguous int64 ids from 1."""

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame | None = None
    split_kind: SplitKind = "leave_last_out"
    # Free-form provenance: source files, timestamp scheme, id-mapping notes. Goes into meta.json.
    meta: dict[str, Any] = field(default_factory=dict)
    # Raw id -> contiguous id, for adapters that re-index (None when the source ids are already 1..N).
    user_map: pd.DataFrame | None = None
    item_map: pd.DataFrame | None = None

    @property
    def n_users(self) -> int:
        return int(self.interactions["user_id"].max()) if len(self.interactions) else 0

    @property
    def n_items(self) -> int:
        return int(len(self.items))

    def summary(self) -> dict[str, Any]:
        """Counts for logs and ``--json`` output."""
        inter = self.interactions
        return {
            "name": self.name,
            "users": int(inter["user_id"].nunique()),
            "items": self.n_items,
            "interactions": int(len(inter)),
            "attributes": int(max((max(a) for a in self.items["attributes"]), default=0)),
            "split_kind": self.split_kind,
            "first_event": str(inter["event_timestamp"].min()),
            "last_event": str(inter["event_timestamp"].max()),
        }


def reindex(values: pd.Series, name: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Map arbitrary raw ids to contiguous int64 ids 1..N in order of first appearance.

    Returns the new ids and a mapping frame ``raw_<name>`` -> ``<name>``.
    """
    codes, uniques = pd.factorize(values, sort=False)
    ids = codes.astype(np.int64) + 1
    mapping = pd.DataFrame({f"raw_{name}": pd.Series(uniques).astype(str), name: np.arange(1, len(uniques) + 1, dtype=np.int64)})
    return ids, mapping


def sort_interactions(df: pd.DataFrame) -> pd.DataFrame:
    """Sort by user then time, stable so equal timestamps keep the input (sequence) order."""
    return df.sort_values(["user_id", "event_timestamp"], kind="stable").reset_index(drop=True)


def validate_dataset(ds: Dataset, source: str | Path | None = None) -> Dataset:
    """Check the invariants in the module docstring; raise ``DataValidationError`` naming the problem."""
    src = source or ds.meta.get("source") or ds.name
    inter = ds.interactions
    if inter is None or len(inter) == 0:
        raise DataValidationError(src, None, "no interactions (empty data)")
    for col in INTERACTION_COLUMNS:
        if col not in inter.columns:
            raise DataValidationError(src, col, "missing column")
    for col in ("user_id", "item_id"):
        if inter[col].isna().any():
            raise DataValidationError(src, col, f"{int(inter[col].isna().sum())} NaN ids")
        if inter[col].dtype != np.int64:
            raise DataValidationError(src, col, f"expected int64 ids, got {inter[col].dtype}")
        lo, hi = int(inter[col].min()), int(inter[col].max())
        if lo < 1 or hi > MAX_REAL_ID:
            raise DataValidationError(src, col, f"ids must lie in 1..{MAX_REAL_ID}, got {lo}..{hi}")
    ts = inter["event_timestamp"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype) or str(ts.dt.tz) != "UTC":
        raise DataValidationError(src, "event_timestamp", f"expected datetime64[ns, UTC], got {ts.dtype}")
    if ts.isna().any():
        raise DataValidationError(src, "event_timestamp", f"{int(ts.isna().sum())} missing timestamps")
    _check_time_range(ts, src, ds.meta.get("columns", {}).get("timestamp") or "event_timestamp")
    w = inter["weight"]
    if not np.issubdtype(w.dtype, np.floating) or not np.isfinite(w.to_numpy()).all():
        raise DataValidationError(src, "weight", "weights must be finite floats")

    items = ds.items
    if items is None or len(items) == 0:
        raise DataValidationError(src, "item_id", "no items")
    if items["item_id"].duplicated().any():
        dup = items.loc[items["item_id"].duplicated(), "item_id"].iloc[0]
        raise DataValidationError(src, "item_id", f"duplicate item id {dup} in the item table")
    missing = np.setdiff1d(inter["item_id"].unique(), items["item_id"].to_numpy())
    if len(missing):
        raise DataValidationError(
            src, "item_id", f"{len(missing)} interacted items have no attribute entry (first: {missing[0]})"
        )
    empty = items["attributes"].map(lambda a: a is None or len(a) == 0)
    if empty.any():
        raise DataValidationError(
            src, "attributes", f"{int(empty.sum())} items have no attributes (first: item {items.loc[empty, 'item_id'].iloc[0]})"
        )
    if ds.users is not None and ds.users["user_id"].duplicated().any():
        dup = ds.users.loc[ds.users["user_id"].duplicated(), "user_id"].iloc[0]
        raise DataValidationError(src, "user_id", f"duplicate user id {dup} in the user table")
    return ds


# Feast materializes from the Unix epoch on, and a point-in-time join never sees rows from the
# future: data outside [1970, now + 1 day] would ingest fine and then serve nothing.
EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
FUTURE_SLACK = pd.Timedelta(days=1)


def _check_time_range(ts: pd.Series, src: str | Path, col: str) -> None:
    lo, hi = ts.min(), ts.max()
    if lo < EPOCH:
        n = int((ts < EPOCH).sum())
        raise DataValidationError(src, col, f"{n} timestamps before 1970-01-01 (first: {lo}); check the unit or the format")
    limit = pd.Timestamp.now(tz="UTC") + FUTURE_SLACK
    if hi > limit:
        n = int((ts > limit).sum())
        raise DataValidationError(src, col, f"{n} timestamps in the future (latest: {hi}); check the unit or the format")


def subset_users(ds: Dataset, n_users: int) -> Dataset:
    """The first ``n_users`` user ids (and only the items they touched): small, fast copies for tests/demos."""
    inter = ds.interactions[ds.interactions["user_id"] <= n_users].reset_index(drop=True)
    items = ds.items[ds.items["item_id"].isin(inter["item_id"].unique())].reset_index(drop=True)
    users = ds.users[ds.users["user_id"] <= n_users].reset_index(drop=True) if ds.users is not None else None
    meta = {**ds.meta, "subset_users": int(n_users)}
    return Dataset(ds.name, inter, items, users, ds.split_kind, meta, ds.user_map, ds.item_map)
