"""``history_stats`` looks counts up in sorted arrays, all histories at once; the figures must be
those of the per-history pandas loop it replaced (kept here as the reference), leave-one-out included."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecaug_feast.histories import rows_to_csr
from ecaug_feast.quality import seq_metrics as SM


def _reference(hists, ts, exclude=None) -> pd.DataFrame:
    """The loop before (commit 8240b5e): pandas reindex per history, np.polyfit for the slope."""
    pairs = [(a, b) for h in ts.hists for a, b in zip(h[:-1], h[1:])]
    trans = pd.Series(1, index=pd.MultiIndex.from_tuples(pairs)).groupby(level=[0, 1]).size()
    rows = []
    for k, h in enumerate(hists):
        h = np.asarray(h, np.int64)
        n = len(h)
        own = None if exclude is None else exclude[k]
        lp = np.log1p(ts.counts.reindex(h).fillna(0).to_numpy()) if n else np.zeros(0)
        if own is not None and n:
            own = np.asarray(own, np.int64)
            c = ts.counts.reindex(h).fillna(0).to_numpy() - (h[:, None] == own[None, :]).sum(1)
            lp = np.log1p(np.maximum(c, 0))
        if n >= 2:
            c = trans.reindex(pd.MultiIndex.from_arrays([h[:-1], h[1:]])).fillna(0).to_numpy()
            if own is not None and len(own) >= 2:
                c = c - ((h[:-1, None] == own[None, :-1]) & (h[1:, None] == own[None, 1:])).sum(1)
            tr = np.log1p(np.maximum(c, 0))
        else:
            tr = np.zeros(0)
        slope = float(np.polyfit(np.arange(n), lp, 1)[0]) if n >= 3 and lp.std() > 0 else 0.0
        rows.append({"length": n, "mean_logpop": float(lp.mean()) if n else 0.0, "min_logpop": float(lp.min()) if n else 0.0,
                     "first_logpop": float(lp[0]) if n else 0.0, "last_logpop": float(lp[-1]) if n else 0.0,
                     "logpop_slope": slope, "tail_share": float(np.mean([x in ts.tail for x in h.tolist()])) if n else 0.0,
                     "distinct_share": len(set(h.tolist())) / n if n else 0.0,
                     "mean_log_transition": float(tr.mean()) if len(tr) else 0.0,
                     "known_transition_share": float((tr > 0).mean()) if len(tr) else 0.0})
    return pd.DataFrame(rows)


def test_history_stats_equal_the_per_history_loop():
    rng = np.random.default_rng(3)
    real = [rng.integers(1, 120, int(n)) for n in rng.integers(0, 14, 400)]  # repeats and empty rows too
    v, o = rows_to_csr(real)
    ts = SM.TrainingStats(v, o, np.arange(60, 120))
    # generated rows: unseen items (500), repeats, single items, windows of real rows
    gen = [rng.integers(1, 130, int(n)) for n in rng.integers(1, 12, 300)] + [np.array([500, 7, 7, 500]), np.array([3])]
    gen += [r[:5] for r in real[:50] if len(r)]
    own = [real[i] if i % 3 == 0 and i < len(real) else None for i in range(len(gen))]
    for ex in (None, own):
        got, want = SM.history_stats(gen, ts, ex), _reference(gen, ts, ex)
        assert list(got.columns) == list(want.columns)
        np.testing.assert_allclose(got.to_numpy(float), want.to_numpy(float), rtol=0, atol=1e-9)
    assert SM.history_stats([], ts).empty
    # a transition across two histories is not a training transition
    ts2 = SM.TrainingStats(*rows_to_csr([np.array([1, 2]), np.array([3, 4])]), np.zeros(0, np.int64))
    assert SM.history_stats([np.array([2, 3])], ts2)["known_transition_share"].iloc[0] == 0.0
    assert SM.history_stats([np.array([1, 2])], ts2)["known_transition_share"].iloc[0] == 1.0
