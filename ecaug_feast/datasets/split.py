"""Split real interactions before anything else touches them.

- ``leave_last_out`` (sequence data): per user, the last interaction is test, the second to last
  validation, the rest train. Users with 2 interactions give one train + one test; users with 1
  give one train row. This is the S3-Rec protocol.
- ``temporal`` (timestamped data): one global cut. Events before the ``valid_frac``-from-the-end
  quantile of time are train, the next slice validation, the last ``test_frac`` test. A user's
  history can straddle the cut; features only ever see the train part.

Validation and test rows never feed a feature, the GAN or the labeler (see ``features.build``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ecaug_feast.datasets.base import INTERACTION_COLUMNS, Dataset
from ecaug_feast.errors import EcaugError
from ecaug_feast.histories import leave_last_out

SPLITS = ("train", "valid", "test")


@dataclass
class Split:
    """Three frames with the interaction columns (sorted by user, time)."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    kind: str
    info: dict[str, Any]


def assign_split(inter: pd.DataFrame, kind: str, valid_frac: float = 0.1, test_frac: float = 0.1) -> tuple[np.ndarray, dict[str, Any]]:
    """Return a ``split`` label per row of ``inter`` (sorted by user, time) and split facts."""
    n = len(inter)
    labels = np.full(n, "train", dtype=object)
    if kind == "leave_last_out":
        # rank from the end within each user; input is sorted by (user, time) with stable ties
        from_end = inter.groupby("user_id", sort=False).cumcount(ascending=False).to_numpy()
        size = inter.groupby("user_id", sort=False)["user_id"].transform("size").to_numpy()
        labels[(from_end == 0) & (size >= 2)] = "test"
        labels[(from_end == 1) & (size >= 3)] = "valid"
        return labels, {"kind": kind}
    if kind == "temporal":
        ts = inter["event_timestamp"]
        t_valid = ts.quantile(1.0 - valid_frac - test_frac)
        t_test = ts.quantile(1.0 - test_frac)
        labels[(ts >= t_valid).to_numpy()] = "valid"
        labels[(ts >= t_test).to_numpy()] = "test"
        if (labels == "train").sum() == 0:
            raise EcaugError("temporal split left no training rows (all events share one timestamp?)")
        return labels, {"kind": kind, "valid_from": str(t_valid), "test_from": str(t_test)}
    raise ValueError(f"unknown split kind {kind!r}")


def event_log_split(users: Any, times: Any) -> np.ndarray:
    """The ``leave_last_out`` label of each event of a shop's log, given as its user keys and
    times (any types pandas reads) in the order the offline store read them; labels come back in
    that order (:func:`ecaug_feast.histories.leave_last_out`: per user by time, equal times in
    read order, as :func:`assign_split` labels a frame sorted by user and time). Every reader of
    a shop's log (``ecaug augment --repo --events``, ``train --repo``, ``plugin.training_rows``)
    holds out the same events."""
    codes = pd.factorize(pd.Series(users).to_numpy())[0]
    ns = pd.to_datetime(pd.Series(times), utc=True).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return leave_last_out(codes, ns)


def split_interactions(ds: Dataset, valid_frac: float = 0.1, test_frac: float = 0.1) -> Split:
    """Split ``ds.interactions`` by ``ds.split_kind`` (see module docstring)."""
    inter = ds.interactions[INTERACTION_COLUMNS]
    labels, info = assign_split(inter, ds.split_kind, valid_frac, test_frac)
    parts = {s: inter[labels == s].reset_index(drop=True) for s in SPLITS}
    info.update({s: int(len(parts[s])) for s in SPLITS})
    return Split(parts["train"], parts["valid"], parts["test"], ds.split_kind, info)


# ------------------------------------------------------------------------------------------------
# cold items (issue 34): GAR's setup (Chen et al., SIGIR 2022) on top of leave-last-out


@dataclass
class ColdSplit:
    """A leave-last-out split with a share of the items made cold.

    ``train`` has no interaction with a cold item (so neither have the features built from it);
    ``valid`` and ``test`` keep every row, and ``valid_cold`` / ``test_cold`` say per row whether
    its target is a cold item (the user's group). ``history_valid`` is ``valid`` without cold rows:
    what a user tower may read as history at test time (a cold item is never an input)."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    cold_items: np.ndarray   # sorted int64 item ids
    warm_items: np.ndarray   # sorted int64 item ids (the rest of the catalogue)
    valid_cold: np.ndarray   # bool per valid row
    test_cold: np.ndarray    # bool per test row
    info: dict[str, Any]

    @property
    def history_valid(self) -> pd.DataFrame:
        return self.valid[~self.valid_cold].reset_index(drop=True)

    def is_cold(self, item_ids: np.ndarray) -> np.ndarray:
        """Bool per id of ``item_ids``: is it a cold item."""
        return np.isin(np.asarray(item_ids, np.int64), self.cold_items)


def pick_cold_items(item_ids: np.ndarray, cold_frac: float, seed: int) -> np.ndarray:
    """``round(cold_frac * n)`` of the ``item_ids`` (sorted, int64), drawn with ``seed``: the same
    ids whatever their input order, for the same catalogue and seed."""
    if not 0.0 < cold_frac < 1.0:
        raise EcaugError(f"cold_frac must lie in (0, 1), got {cold_frac}")
    ids = np.unique(np.asarray(item_ids, np.int64))
    n = int(round(cold_frac * len(ids)))
    if n < 1 or n >= len(ids):
        raise EcaugError(f"cold_frac {cold_frac} of {len(ids)} items leaves no cold or no warm item")
    return np.sort(np.random.default_rng(seed).choice(ids, size=n, replace=False))


def cold_item_split(split: Split, items: pd.DataFrame, cold_frac: float = 0.2, seed: int = 0) -> ColdSplit:
    """``cold_frac`` of the catalogue (``items.item_id``) made cold by ``seed``; every training
    interaction with a cold item removed; validation and test rows kept, grouped by whether their
    target is cold. ``split`` is a leave-last-out :class:`Split` (``split_interactions`` or a
    processed dataset's three frames): the last item of each user stays its test target, cold or
    warm, and is scored with full ranking over the whole catalogue."""
    if split.kind != "leave_last_out":
        raise EcaugError(f"the cold-item split needs a leave-last-out split, got {split.kind!r}")
    cold = pick_cold_items(items["item_id"].to_numpy(np.int64), cold_frac, seed)
    warm = np.setdiff1d(np.unique(items["item_id"].to_numpy(np.int64)), cold)
    tr_cold = np.isin(split.train["item_id"].to_numpy(np.int64), cold)
    train = split.train[~tr_cold].reset_index(drop=True)
    v_cold = np.isin(split.valid["item_id"].to_numpy(np.int64), cold)
    t_cold = np.isin(split.test["item_id"].to_numpy(np.int64), cold)
    info = {"kind": "cold_items", "cold_frac": float(cold_frac), "seed": int(seed), "cold_items": int(len(cold)),
            "warm_items": int(len(warm)), "train_removed": int(tr_cold.sum()), "train": int(len(train)),
            "valid": int(len(split.valid)), "valid_cold": int(v_cold.sum()), "test": int(len(split.test)),
            "test_cold": int(t_cold.sum())}
    return ColdSplit(train, split.valid.reset_index(drop=True), split.test.reset_index(drop=True), cold, warm, v_cold, t_cold,
                     info)
