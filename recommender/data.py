"""Training examples for the two-tower: real (Feast offline store), synthetic, or mixed.

One *example* = one positive training interaction with the user's features as of just before it and
the item's features at that time (a point-in-time join). Columns:
``user_id, item_id, event_timestamp, is_synthetic`` + the ``user_features`` columns + ``attributes``,
``popularity``, ``n_attributes``.

Training reads Feast, never the feature builders (layer rule 3): :func:`examples_from_feast` runs
``get_historical_features`` over the ``training`` feature service with the ``train_interactions``
rows (label 1) as entity dataframe. Composing a :class:`TrainData` from a dataset (through Feast, or
in memory from the builders for ``--source memory``) is the job's: ``ecaug_feast.jobs.train_data``.

Validation and test rows never enter: everything here starts from the *train* split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ecaug_feast import feast_io
from ecaug_feast import schema as S
from ecaug_feast.errors import DataValidationError, EcaugError
from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE
from ecaug_feast.schema import ITEM_FEATURE_COLUMNS, USER_FEATURE_COLUMNS

EXAMPLE_COLUMNS = ["user_id", "item_id", "event_timestamp", "is_synthetic", *USER_FEATURE_COLUMNS, *ITEM_FEATURE_COLUMNS]


@dataclass
class TrainData:
    """What training and evaluation need, all derived from one training frame."""

    examples: pd.DataFrame  # EXAMPLE_COLUMNS, real rows first
    user_serving: pd.DataFrame  # one row per user: features from all of its training events
    # Features for scoring the *test* split: training events + the validation event (input only,
    # never a training target), as in the usual leave-last-out protocol. None -> user_serving.
    user_test: pd.DataFrame | None
    item_serving: pd.DataFrame  # one row per item 1..I: item_id, attributes, popularity, n_attributes
    items: pd.DataFrame  # catalogue: item_id, attributes
    train: pd.DataFrame  # the real training interactions behind ``examples``
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_items(self) -> int:
        return int(self.items["item_id"].max())


def truncate_history(train: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """Keep each user's most recent ``ceil(fraction * n)`` training interactions (at least one)."""
    if not 0 < fraction <= 1:
        raise EcaugError(f"history fraction must be in (0, 1], got {fraction}")
    if fraction >= 1:
        return train
    from_end = train.groupby("user_id", sort=False).cumcount(ascending=False).to_numpy()
    n = train.groupby("user_id", sort=False)["user_id"].transform("size").to_numpy()
    keep = from_end < np.maximum(1, np.ceil(fraction * n - 1e-9))
    return train[keep].reset_index(drop=True)


def asof_join(left: pd.DataFrame, right: pd.DataFrame, key: str, cols: list[str]) -> pd.DataFrame:
    """For each ``left`` row the latest ``right`` row with the same key and time <= the row's time
    (Feast's point-in-time rule); left order kept, no match -> NaN/None."""
    l2 = left[[key, "event_timestamp"]].copy()
    l2["__row"] = np.arange(len(left))
    l2["event_timestamp"] = l2["event_timestamp"].astype("datetime64[ns, UTC]")
    r2 = right[[key, "event_timestamp", *cols]].copy()
    r2["event_timestamp"] = r2["event_timestamp"].astype("datetime64[ns, UTC]")
    m = pd.merge_asof(
        l2.sort_values("event_timestamp", kind="stable"),
        r2.sort_values("event_timestamp", kind="stable"),
        on="event_timestamp",
        by=key,
        direction="backward",
        allow_exact_matches=True,
    )
    m = m.sort_values("__row").reset_index(drop=True)
    return m[cols]


def labelled_examples(examples: pd.DataFrame, num_items: int, seed: int) -> pd.DataFrame:
    """Positives (label 1) plus one uniformly sampled negative item per row (label 0, same user
    features), the labelled table the synthesis labeler learns from."""
    real = examples[~examples["is_synthetic"].astype(bool)]
    rng = np.random.default_rng(seed)
    neg = real.copy()
    neg["item_id"] = rng.integers(1, num_items + 1, size=len(real))
    return pd.concat([real.assign(label=1), neg.assign(label=0)], ignore_index=True)


def complete_synthetic(rows: pd.DataFrame, data: TrainData) -> pd.DataFrame:
    """Synthetic positives (user features + ``item_id`` [+ ``event_timestamp``]) -> example columns:
    item features joined as of the row time (latest when there is no time), ``is_synthetic`` True."""
    out = rows.reset_index(drop=True).copy()
    if "label" in out.columns:
        out = out[out["label"].astype(int) == 1].reset_index(drop=True)
    if "user_id" not in out.columns:  # generators that do not mint ids: one new synthetic user per row
        out["user_id"] = np.arange(SYNTHETIC_USER_ID_BASE, SYNTHETIC_USER_ID_BASE + len(out), dtype=np.int64)
    if "event_timestamp" not in out.columns:
        out["event_timestamp"] = data.train["event_timestamp"].max()
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True)
    itf = data.info.get("item_features")
    if itf is not None:
        feats = asof_join(out, itf, "item_id", ITEM_FEATURE_COLUMNS)
    else:
        feats = data.item_serving.set_index("item_id").reindex(out["item_id"].to_numpy())[ITEM_FEATURE_COLUMNS].reset_index(drop=True)
    for c in ITEM_FEATURE_COLUMNS:
        out[c] = feats[c].to_numpy()
    out[S.ATTRIBUTES] = [a if isinstance(a, list) else [] for a in out[S.ATTRIBUTES]]
    out[S.POPULARITY] = pd.to_numeric(out[S.POPULARITY]).fillna(0.0)
    out[S.N_ATTRIBUTES] = out[S.ATTRIBUTES].map(len)
    out["is_synthetic"] = True
    for c in S.USER_LIST_COLUMNS:
        out[c] = [[int(v) for v in x] if x is not None and not (isinstance(x, float)) else [] for x in out[c]]
    return out[EXAMPLE_COLUMNS]


def latest_item_rows(item_features: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """One row per catalogue item: its latest ``item_features`` row (popularity 0 if never seen)."""
    last = item_features.sort_values(["item_id", "event_timestamp"], kind="stable").groupby("item_id").tail(1)
    out = items[["item_id", S.ATTRIBUTES]].merge(last[["item_id", S.POPULARITY]], on="item_id", how="left")
    out[S.POPULARITY] = out[S.POPULARITY].fillna(0.0).astype(np.float32)
    out[S.N_ATTRIBUTES] = out[S.ATTRIBUTES].map(len).astype(np.int64)
    return out.sort_values("item_id").reset_index(drop=True)


def examples_from_feast(entity_df: pd.DataFrame, store: Any = None) -> pd.DataFrame:
    """Point-in-time examples from the Feast offline store (feature service ``training``)."""
    ent = entity_df[["user_id", "item_id", "event_timestamp"]].reset_index(drop=True)
    out = feast_io.historical_features(ent, features=feast_io.TRAINING_SERVICE, store=store)
    for c in USER_FEATURE_COLUMNS + ITEM_FEATURE_COLUMNS:
        if c not in out.columns:
            raise DataValidationError("feast:training", c, "feature missing from the historical join")
    out["is_synthetic"] = False
    return normalise_lists(out)[EXAMPLE_COLUMNS]


def normalise_lists(df: pd.DataFrame) -> pd.DataFrame:
    """Feast hands list features back as numpy arrays or None; use Python lists of int."""
    for c in S.LIST_COLUMNS:
        if c in df.columns:
            df[c] = [[] if x is None or (isinstance(x, float) and np.isnan(x)) else [int(v) for v in x] for x in df[c]]
    return df


def timestamps_like(ts: pd.Series, dtype: Any) -> pd.Series:
    """``ts`` in ``dtype``. Spark's offline store hands back naive UTC times and duckdb aware ones;
    both are UTC, so naive ones are localized, not shifted."""
    ts = pd.to_datetime(ts, utc=True)
    return ts.astype(dtype) if getattr(dtype, "tz", None) is not None else ts.dt.tz_localize(None).astype(dtype)


def mix_examples(real: pd.DataFrame, synthetic: pd.DataFrame, ratio: float, seed: int) -> pd.DataFrame:
    """Real examples + ``min(round(ratio * len(real)), len(synthetic))`` synthetic rows sampled
    without replacement (a small pool is used whole, never duplicated); ``ratio`` 0 returns the
    real rows."""
    if ratio < 0:
        raise EcaugError(f"mix ratio must be >= 0, got {ratio}")
    n = int(round(ratio * len(real)))
    if n == 0 or len(synthetic) == 0:
        return real
    missing = [c for c in EXAMPLE_COLUMNS if c not in synthetic.columns and c != "is_synthetic"]
    if missing:
        raise DataValidationError("synthetic examples", missing[0], "missing column")
    rng = np.random.default_rng(seed)
    n = min(n, len(synthetic))
    idx = rng.choice(len(synthetic), size=n, replace=False)
    syn = synthetic.iloc[idx].copy()
    syn["is_synthetic"] = True
    return pd.concat([real, syn[EXAMPLE_COLUMNS]], ignore_index=True)
