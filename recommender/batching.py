"""DataFrame rows -> ``KeyedJaggedTensor`` batches, without per-row Python work per step.

A frame is encoded once (:func:`encode_users`, :func:`encode_items`) into CSR arrays (flat values
+ offsets) and a dense float matrix; a batch is then pure numpy indexing (:meth:`Encoded.take`).
The user side and the item side share one ``EmbeddingBagCollection`` (the item-id table serves both
the candidate item and the user's recent items, the attribute table serves item attributes, the
user's top attributes and the attributes of the user's recent items), so one KJT carries all keys;
a side that is absent gets zero lengths.

Feature columns (names as in the Feast views ``user_features`` / ``item_features``):

- user: ``user_id`` (optional; hashed to a bucket, 0 for unknown/synthetic), ``recent_items`` (also
  giving ``last_item``, the most recent one, and ``recent_attributes``),
  ``top_attributes``, ``n_interactions``, ``days_since_last``, ``attr_diversity``,
  ``mean_item_popularity``.
- item: ``item_id``, ``attributes``, ``popularity`` (``n_attributes`` is derived from ``attributes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torchrec import KeyedJaggedTensor

from ecaug_feast import schema as S
from ecaug_feast.errors import DataValidationError
from ecaug_feast.histories import csr_from_lists, csr_take, offsets_of, truncate_csr
from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE

# KJT keys: the list features of the views plus two derived from recent_items (``last_item``,
# ``recent_attributes``); the dense inputs are the views' scalar features.
USER_SPARSE = ["user_id", "last_item", S.RECENT_ITEMS, "recent_attributes", S.TOP_ATTRIBUTES]
ITEM_SPARSE = ["item_id", S.ATTRIBUTES]
KJT_KEYS = USER_SPARSE + ITEM_SPARSE
USER_DENSE = list(S.USER_SCALAR_COLUMNS)
ITEM_DENSE = list(S.ITEM_SCALAR_COLUMNS)
# Heavy-tailed counts go through log1p before standardisation.
LOG_DENSE = S.HEAVY_TAILED_COLUMNS
USER_COLUMNS = [*S.USER_LIST_COLUMNS, *USER_DENSE]
ITEM_COLUMNS = ["item_id", S.ATTRIBUTES, S.POPULARITY]
MAX_RECENT = 20


def user_bucket(user_id: np.ndarray, buckets: int) -> np.ndarray:
    """Hash real user ids into ``1..buckets-1``; unknown (<1) and synthetic users share bucket 0."""
    uid = np.asarray(user_id, dtype=np.int64)
    # multiplicative hash so neighbouring ids spread; contiguous ids would also be fine
    h = ((uid.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(buckets - 1)).astype(np.int64) + 1
    return np.where((uid < 1) | (uid >= SYNTHETIC_USER_ID_BASE), 0, h)


@dataclass
class ItemCatalog:
    """Static item side: attributes per item id as CSR (row = item id, row 0 empty)."""

    num_items: int
    num_attributes: int
    attr_values: np.ndarray
    attr_offsets: np.ndarray

    @classmethod
    def from_frame(cls, items: pd.DataFrame, num_attributes: int | None = None) -> "ItemCatalog":
        """``items``: ``item_id`` (1..I) and ``attributes`` (list of int)."""
        for col in ("item_id", S.ATTRIBUTES):
            if col not in items.columns:
                raise DataValidationError("items", col, "missing column")
        n = int(items["item_id"].max()) if len(items) else 0
        full = pd.Series([[]] * (n + 1), dtype=object)
        full.iloc[items["item_id"].to_numpy()] = items[S.ATTRIBUTES].to_numpy()
        v, o = csr_from_lists(full)
        na = int(num_attributes if num_attributes is not None else (v.max(initial=0)))
        return cls(num_items=n, num_attributes=na, attr_values=v, attr_offsets=o)

    def attributes_of(self, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Concatenated attributes of ``item_ids`` (unknown ids -> none) and per-item lengths."""
        ids = np.asarray(item_ids, dtype=np.int64)
        ids = np.where((ids >= 1) & (ids <= self.num_items), ids, 0)
        return csr_take(self.attr_values, self.attr_offsets, ids)


@dataclass
class Encoded:
    """Encoded rows of one side: sparse CSR per KJT key (missing keys = empty) + dense matrix."""

    n: int
    sparse: dict[str, tuple[np.ndarray, np.ndarray]]
    dense: np.ndarray | None  # float32 [n, k], already standardised
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def take(self, rows: np.ndarray) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray | None]:
        """Sparse (values, lengths) per key and dense rows for ``rows``."""
        out = {k: csr_take(v, o, rows) for k, (v, o) in self.sparse.items()}
        return out, (self.dense[rows] if self.dense is not None else None)


def _dense_matrix(df: pd.DataFrame, cols: list[str], source: str) -> np.ndarray:
    mats = []
    for c in cols:
        if c not in df.columns:
            raise DataValidationError(source, c, "missing feature column")
        x = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64)
        if c in LOG_DENSE:
            x = np.log1p(np.clip(x, 0.0, None))
        mats.append(x)
    return np.stack(mats, axis=1) if mats else np.zeros((len(df), 0))


def dense_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Mean/std per column ignoring NaN (std floor 1e-6), for the checkpoint config."""
    mean = np.nan_to_num(np.nanmean(x, axis=0)) if len(x) else np.zeros(x.shape[1])
    std = np.nan_to_num(np.nanstd(x, axis=0)) if len(x) else np.ones(x.shape[1])
    return [float(m) for m in mean], [float(max(s, 1e-6)) for s in std]


def standardise(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Raw dense features -> the model's input: (x - mean) / std, float32, NaN at the mean."""
    z = (x - np.asarray(mean)) / np.asarray(std)
    # missing numeric features (a user's first event has no history) sit at the mean
    return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def raw_user_dense(df: pd.DataFrame, source: str = "user_features") -> np.ndarray:
    return _dense_matrix(df, USER_DENSE, source)


def raw_item_dense(df: pd.DataFrame, source: str = "item_features") -> np.ndarray:
    d = df
    if S.N_ATTRIBUTES not in df.columns and S.ATTRIBUTES in df.columns:
        d = df.assign(**{S.N_ATTRIBUTES: df[S.ATTRIBUTES].map(lambda a: 0 if a is None or (isinstance(a, float)) else len(a))})
    return _dense_matrix(d, ITEM_DENSE, source)


def encode_users(
    df: pd.DataFrame,
    catalog: ItemCatalog,
    *,
    user_buckets: int,
    mean: Sequence[float],
    std: Sequence[float],
    source: str = "user_features",
) -> Encoded:
    """Encode user-feature rows (``user_id`` optional: missing -> unknown bucket 0)."""
    for c in S.USER_LIST_COLUMNS:
        if c not in df.columns:
            raise DataValidationError(source, c, "missing feature column")
    n = len(df)
    uid = df["user_id"].to_numpy(dtype=np.int64) if "user_id" in df.columns else np.zeros(n, dtype=np.int64)
    rv, ro = csr_from_lists(df[S.RECENT_ITEMS], max_len=MAX_RECENT)
    ra_v, ra_len_per_item = catalog.attributes_of(rv)
    # attributes of each row's recent items: sum per-item lengths within each row
    row_of_item = np.repeat(np.arange(n), np.diff(ro))
    ra_lengths = np.bincount(row_of_item, weights=ra_len_per_item, minlength=n).astype(np.int64)
    ta_v, ta_o = csr_from_lists(df[S.TOP_ATTRIBUTES])
    # the most recent item on its own: the strongest sequential signal, lost in the mean of 20
    li_v, li_o = truncate_csr(rv, ro, 1)
    sparse = {
        "user_id": (user_bucket(uid, user_buckets), np.arange(n + 1, dtype=np.int64)),
        "last_item": (clip_ids(li_v, catalog.num_items), li_o),
        S.RECENT_ITEMS: (clip_ids(rv, catalog.num_items), ro),
        "recent_attributes": (clip_ids(ra_v, catalog.num_attributes), offsets_of(ra_lengths)),
        S.TOP_ATTRIBUTES: (clip_ids(ta_v, catalog.num_attributes), ta_o),
    }
    dense = standardise(raw_user_dense(df, source), mean, std)
    return Encoded(n=n, sparse=sparse, dense=dense, ids=uid)


def int_list(v: Any) -> np.ndarray:
    """One online list feature (list, array, None or NaN) -> int64 ids."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return np.zeros(0, dtype=np.int64)
    return np.asarray(v, dtype=np.int64).reshape(-1)


def user_sparse_rows(
    recent: Sequence[np.ndarray],
    top: Sequence[np.ndarray],
    user_ids: np.ndarray,
    catalog: ItemCatalog,
    user_buckets: int,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The user-side KJT inputs, ``(values, lengths)`` per :data:`USER_SPARSE` key, of a few
    online rows given as int arrays (``recent`` most recent first), without pandas: the same
    encoding as :func:`encode_users` for a request (serving checks both agree on probe rows)."""
    n = len(recent)
    recent = [np.asarray(r, dtype=np.int64)[:MAX_RECENT] for r in recent]
    rv = np.concatenate(recent) if n else np.zeros(0, np.int64)
    rlen = np.array([len(r) for r in recent], dtype=np.int64)
    ra_v, ra_len_item = catalog.attributes_of(rv)
    row_of_item = np.repeat(np.arange(n), rlen)
    ra_len = np.bincount(row_of_item, weights=ra_len_item, minlength=n).astype(np.int64)
    uid = np.asarray(user_ids, dtype=np.int64)
    return {
        "user_id": (user_bucket(uid, user_buckets), np.ones(n, dtype=np.int64)),
        # the most recent item alone (first of recent_items, which are most recent first)
        "last_item": (clip_ids(np.array([r[0] for r in recent if len(r)], dtype=np.int64), catalog.num_items),
                      np.minimum(rlen, 1)),
        S.RECENT_ITEMS: (clip_ids(rv, catalog.num_items), rlen),
        "recent_attributes": (clip_ids(ra_v, catalog.num_attributes), ra_len),
        S.TOP_ATTRIBUTES: (
            clip_ids(np.concatenate(top) if n else np.zeros(0, np.int64), catalog.num_attributes),
            np.array([len(t) for t in top], dtype=np.int64),
        ),
    }


def user_dense_rows(values: Sequence[dict[str, Any]], mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Standardised dense user inputs of online value dicts (missing/None/NaN -> the mean), the
    same arithmetic as :func:`encode_users` without a DataFrame."""
    x = np.array([[_num(v.get(c)) for c in USER_DENSE] for v in values], dtype=np.float64).reshape(len(values), len(USER_DENSE))
    log = np.array([c in LOG_DENSE for c in USER_DENSE])
    x[:, log] = np.log1p(np.clip(x[:, log], 0.0, None))
    return standardise(x, mean, std)


def _num(v: Any) -> float:
    try:
        return float(v) if v is not None else np.nan
    except (TypeError, ValueError):
        return np.nan


def encode_items(
    df: pd.DataFrame,
    catalog: ItemCatalog,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    source: str = "item_features",
) -> Encoded:
    """Encode item rows: ``item_id`` + ``popularity``; attributes come from the catalog when absent."""
    for c in ("item_id", S.POPULARITY):
        if c not in df.columns:
            raise DataValidationError(source, c, "missing feature column")
    ids = df["item_id"].to_numpy(dtype=np.int64)
    n = len(df)
    if S.ATTRIBUTES in df.columns:
        av, ao = csr_from_lists(df[S.ATTRIBUTES])
    else:
        av, alen = catalog.attributes_of(ids)
        ao = offsets_of(alen)
    n_attr = np.diff(ao)
    d = df.assign(**{S.N_ATTRIBUTES: n_attr})
    sparse = {
        "item_id": (clip_ids(ids, catalog.num_items), np.arange(n + 1, dtype=np.int64)),
        S.ATTRIBUTES: (clip_ids(av, catalog.num_attributes), ao),
    }
    dense = standardise(_dense_matrix(d, ITEM_DENSE, source), mean, std)
    return Encoded(n=n, sparse=sparse, dense=dense, ids=ids)


def clip_ids(v: np.ndarray, n: int) -> np.ndarray:
    """Ids outside the vocabulary (new items/attributes at serving time) -> row 0 (unknown)."""
    return np.where((v >= 1) & (v <= n), v, 0).astype(np.int64)


def make_kjt(
    user: dict[str, tuple[np.ndarray, np.ndarray]] | None,
    item: dict[str, tuple[np.ndarray, np.ndarray]] | None,
    batch_size: int,
) -> "KeyedJaggedTensor":
    """One KJT with every key in :data:`KJT_KEYS`; absent sides get zero lengths."""
    values, lengths = [], []
    empty = (np.zeros(0, dtype=np.int64), np.zeros(batch_size, dtype=np.int64))
    for k in KJT_KEYS:
        src = user if k in USER_SPARSE else item
        v, ln = (src or {}).get(k, empty)
        values.append(v)
        lengths.append(ln)
    return KeyedJaggedTensor(
        keys=list(KJT_KEYS),
        values=torch.from_numpy(np.concatenate(values)),
        lengths=torch.from_numpy(np.concatenate(lengths)),
    )
