"""The Diginetica replay's no-change control (benchmarks/drift_replay.py): moving each user's block
of purchases to another real start time must keep the blocks intact and inside the data's span,
or its "0 false alarms" would be measured on a control that changed behaviour."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd


def _replay():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "drift_replay.py"
    spec = importlib.util.spec_from_file_location("drift_replay", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _events(rng: np.random.Generator) -> pd.DataFrame:
    start = pd.Timestamp("2016-01-01", tz="UTC")
    rows = []
    for u in range(300):
        t = start + pd.Timedelta(days=float(rng.uniform(0, 150)))
        for _ in range(int(rng.integers(1, 5))):
            rows.append((u, int(rng.integers(0, 50)), t))
            t += pd.Timedelta(hours=float(rng.exponential(48)))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "event_timestamp"]).sort_values("event_timestamp").reset_index(drop=True)


def test_session_shuffle_keeps_blocks_and_span():
    mod = _replay()
    ev = _events(np.random.default_rng(0))
    out = mod.shuffle_sessions(ev, np.random.default_rng(1))
    assert len(out) == len(ev)
    # same purchases per user, same gaps inside each user's block
    assert out.groupby("user_id").size().sort_index().equals(ev.groupby("user_id").size().sort_index())
    a = ev.sort_values(["user_id", "event_timestamp"], kind="stable")
    b = out.sort_values(["user_id", "event_timestamp"], kind="stable")
    assert (a.groupby("user_id")["event_timestamp"].diff().fillna(pd.Timedelta(0)).to_numpy()
            == b.groupby("user_id")["event_timestamp"].diff().fillna(pd.Timedelta(0)).to_numpy()).all()
    assert (b["item_id"].to_numpy() == a["item_id"].to_numpy()).all()
    # no block runs past the data's span; the times really moved
    assert out["event_timestamp"].min() >= ev["event_timestamp"].min()
    assert out["event_timestamp"].max() <= ev["event_timestamp"].max()
    starts_before = ev.groupby("user_id")["event_timestamp"].min()
    starts_after = out.groupby("user_id")["event_timestamp"].min()
    assert (starts_before != starts_after).mean() > 0.5
    assert out["event_timestamp"].is_monotonic_increasing
