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
