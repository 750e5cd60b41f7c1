"""Diginetica (CIKM Cup 2016): purchases with dates and in-session time, one category per item.

Rules (documented in docs/guide/data.md):

- **Interactions** are the rows of ``train-purchases.csv`` (implicit feedback, weight 1.0).
  ``event_timestamp = eventdate (00:00 UTC) + timeframe`` milliseconds (``timeframe`` is the time
  since the session started, so events keep their in-session order).
- **Anonymous sessions** (``userId`` = NA) become one pseudo-user per session (raw id
  ``s<sessionId>``); sessions with a known user are merged under that user (raw id ``u<userId>``).
  A session is the only identity an anonymous shopper has, and merging all anonymous sessions into
  one "user" would create a giant fake user.
- Exact duplicate rows (same user, item and timestamp) are dropped and counted in the meta.
- **Attributes**: ``product-categories.csv`` gives one category per item; the attribute id is the
  category re-indexed from 1.
- Ids are re-indexed to 1..N (``user_map`` / ``item_map`` keep the raw ids).
- Split: temporal cut (the data has real timestamps).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ecaug_feast import paths
from ecaug_feast.datasets.base import Dataset, reindex, sort_interactions, validate_dataset
from ecaug_feast.errors import DataValidationError, EcaugError

PURCHASES = "train-purchases.csv"
CATEGORIES = "product-categories.csv"


def _read(path: Path, required: list[str]) -> pd.DataFrame:
    if not path.exists():
        raise DataValidationError(path, None, "file not found")
    df = pd.read_csv(path, sep=";", na_values=["NA"])
    for col in required:
        if col not in df.columns:
            raise DataValidationError(path, col, "missing column")
    if df.empty:
        raise DataValidationError(path, None, "no rows (empty data)")
    return df


def load_diginetica(source_dir: str | Path | None = None) -> Dataset:
    """Load Diginetica purchases + categories from ``<shared>/diginetica/`` (or ``source_dir``)."""
    src = Path(source_dir) if source_dir else paths.shared_data_dir() / "diginetica"
    if not (src / PURCHASES).exists():
        raise EcaugError(f"{src / PURCHASES}: Diginetica not found (set ECAUG_SHARED_DATA to a folder holding diginetica/)")
    pur_path, cat_path = src / PURCHASES, src / CATEGORIES
    pur = _read(pur_path, ["sessionId", "userId", "timeframe", "eventdate", "itemId"])
    cat = _read(cat_path, ["itemId", "categoryId"])

    for col in ("sessionId", "itemId", "timeframe"):
        if pur[col].isna().any():
            raise DataValidationError(pur_path, col, f"{int(pur[col].isna().sum())} missing values")
    day = pd.to_datetime(pur["eventdate"], format="%Y-%m-%d", errors="coerce", utc=True)
    if day.isna().any():
        bad = pur.loc[day.isna(), "eventdate"].iloc[0]
        raise DataValidationError(pur_path, "eventdate", f"unparseable date {bad!r} (expected YYYY-MM-DD)")
    ts = day + pd.to_timedelta(pur["timeframe"].astype(np.int64), unit="ms")

    # Anonymous sessions -> one pseudo-user per session; known users merged across sessions.
    known = pur["userId"].notna()
    raw_user = np.where(
        known,
        "u" + pur["userId"].fillna(0).astype(np.int64).astype(str),
        "s" + pur["sessionId"].astype(np.int64).astype(str),
    )
    inter = pd.DataFrame({"raw_user": raw_user, "raw_item": pur["itemId"].astype(np.int64), "event_timestamp": ts})
    n_before = len(inter)
    inter = inter.drop_duplicates(["raw_user", "raw_item", "event_timestamp"]).sort_values(
        ["event_timestamp"], kind="stable"
    )
    n_dups = n_before - len(inter)

    user_ids, user_map = reindex(inter["raw_user"], "user_id")
    item_ids, item_map = reindex(inter["raw_item"], "item_id")
    inter = pd.DataFrame(
        {
            "user_id": user_ids,
            "item_id": item_ids,
            "event_timestamp": pd.DatetimeIndex(inter["event_timestamp"]).as_unit("ns"),
            "weight": np.ones(len(inter), dtype=np.float64),
        }
    )

    if cat["itemId"].duplicated().any():
        dup = int(cat.loc[cat["itemId"].duplicated(), "itemId"].iloc[0])
        raise DataValidationError(cat_path, "itemId", f"duplicate key: item {dup} listed twice")
    cat_ids, _ = reindex(cat["categoryId"], "category")
    cat_of = pd.Series(cat_ids, index=cat["itemId"].astype(np.int64).to_numpy())
    raw_items = item_map["raw_item_id"].astype(np.int64).to_numpy()
    item_cat = cat_of.reindex(raw_items)
    items = pd.DataFrame(
        {
            "item_id": item_map["item_id"].to_numpy(),
            "attributes": [[int(c)] if pd.notna(c) else [] for c in item_cat.to_numpy()],
        }
    )
    ds = Dataset(
        name="diginetica",
        interactions=sort_interactions(inter),
        items=items,
        users=None,
        split_kind="temporal",
        meta={
            "source": str(src),
            "files": [PURCHASES, CATEGORIES],
            "format": "diginetica",
            "timestamp_scheme": "eventdate (UTC midnight) + timeframe milliseconds",
            "anonymous_sessions": "one pseudo-user per anonymous session (raw id s<sessionId>)",
            "anonymous_purchase_rows": int((~known).sum()),
            "duplicates_dropped": int(n_dups),
        },
        user_map=user_map,
        item_map=item_map,
    )
    return validate_dataset(ds, pur_path)
