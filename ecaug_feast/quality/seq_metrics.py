"""Quality measures for generated item histories (oldest-first arrays of item ids).

* ``history_stats``: per-history statistics a detector reads (length, popularity level and its
  trend by position, long-tail share, repeats, how common each step's item transition is among
  training histories). C2ST on these rows is ``c2st_auc_sequences``.
* ``window_c2st`` (the gate's ``c2st_auc_sequences``): C2ST on 5-item windows, each real
  reference window from a distinct training history, statistics leave-one-out, with a real-vs-real
  control. ``real_windows`` (whole-length windows of held-out histories) was the first reference;
  at 25% of Beauty only ~22 held-out histories reach the 11+ items of an expansion, so its 3,000
  reference rows repeated a few histories and the detector memorised them (AUC .99+ by
  construction).
* ``set_dcr``: distance to the closest training history, 1 - max Jaccard of item sets (sparse
  products, exact). The holdout rule compares it with the same distance of real held-out histories.
* ``copies``: exact copies of a training history, near copies (Jaccard >= 0.8), and the share of
  generated 3-grams that occur in training histories (memorised subsequences).
* ``coverage``: catalogue coverage and tail share (mode collapse).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from ecaug_feast.histories import csr_rows
from ecaug_feast.quality.metrics import c2st_auc, column_aucs


class TrainingStats:
    """Item counts and transition counts of TRAINING histories (sorted arrays: a history's counts
    are looked up with ``searchsorted``, not a pandas index per history)."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray, tail: np.ndarray) -> None:
        values, offsets = np.asarray(values, np.int64), np.asarray(offsets, np.int64)
        self.hists = [h for h in csr_rows(values, offsets) if len(h)]
        self.counts = pd.Series(values).value_counts()
        self.item_keys, self.item_counts = np.unique(values, return_counts=True)
        # consecutive pairs within a history (never across two)
        same = np.ones(max(len(values) - 1, 0), bool)
        ends = offsets[1:-1] - 1
        same[ends[(ends >= 0) & (ends < len(same))]] = False
        a, b = values[:-1][same], values[1:][same]
        self._base = int(max(values.max(initial=0), 0)) + 1
        self.trans_keys, self.trans_counts = np.unique(a * self._base + b, return_counts=True)
        self.trans = (pd.Series(self.trans_counts, index=pd.MultiIndex.from_arrays([self.trans_keys // self._base, self.trans_keys % self._base]))
                      if len(a) else pd.Series(dtype=float))
        self.tail = set(np.asarray(tail, np.int64).tolist())
        self.tail_items = np.unique(np.asarray(tail, np.int64))
        self.trigrams = {tuple(h[i : i + 3]) for h in self.hists for i in range(len(h) - 2)}

    def count_of(self, items: np.ndarray) -> np.ndarray:
        """Training count of each item (0 for an item never seen)."""
        return _lookup(self.item_keys, self.item_counts, np.asarray(items, np.int64))

    def transition_count(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """Training count of each (previous item, next item) transition (0 when never seen)."""
        prev, nxt = np.asarray(prev, np.int64), np.asarray(nxt, np.int64)
        known = (prev >= 0) & (prev < self._base) & (nxt >= 0) & (nxt < self._base)  # else never seen (and no overflow)
        out = np.zeros(len(prev), np.int64)
        out[known] = _lookup(self.trans_keys, self.trans_counts, prev[known] * self._base + nxt[known])
        return out

    def logpop(self, h: np.ndarray) -> np.ndarray:
        return np.log1p(self.count_of(h).astype(float))


def _lookup(keys: np.ndarray, vals: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``vals`` at the position of each of ``q`` in the sorted ``keys`` (0 where absent)."""
    if not len(keys) or not len(q):
        return np.zeros(len(q), np.int64)
    pos = np.searchsorted(keys, q).clip(0, len(keys) - 1)
    return np.where(keys[pos] == q, vals[pos], 0)


def history_stats(hists: Sequence[np.ndarray], ts: TrainingStats,
                  exclude: Sequence[np.ndarray | None] | None = None) -> pd.DataFrame:
    """One row of statistics per history. ``exclude[k]``: a training history whose own item and
    transition counts are taken out of ``ts`` for history k (leave-one-out: a window cut from a
    training history, or an expansion of one, is then scored against the OTHER histories only).
    The counts of all histories are looked up at once (flat arrays); only the leave-one-out
    corrections and the per-row reductions loop."""
    hs = [np.asarray(h, np.int64) for h in hists]
    lens = np.array([len(h) for h in hs], np.int64)
    flat = np.concatenate(hs) if hs else np.zeros(0, np.int64)
    cnt = ts.count_of(flat).astype(float)
    tail = np.isin(flat, ts.tail_items)
    starts = np.concatenate([[0], np.cumsum(lens)])
    # transitions of each history: (flat[j], flat[j + 1]) for j not at a history's end
    tcnt = ts.transition_count(flat[:-1], flat[1:]).astype(float) if len(flat) > 1 else np.zeros(0)
    has_trans = len(ts.trans) > 0
    cols: dict[str, list[float]] = {k: [] for k in ("length", "mean_logpop", "min_logpop", "first_logpop", "last_logpop",
                                                    "logpop_slope", "tail_share", "distinct_share", "mean_log_transition",
                                                    "known_transition_share")}
    for k, h in enumerate(hs):
        n = int(lens[k])
        s = int(starts[k])
        own = None if exclude is None else exclude[k]
        c = cnt[s : s + n]
        if own is not None and n:
            own = np.asarray(own, np.int64)
            c = c - (h[:, None] == own[None, :]).sum(1)
        lp = np.log1p(np.maximum(c, 0)) if n else np.zeros(0)
        if n >= 2 and has_trans:
            t = tcnt[s : s + n - 1]
            if own is not None and len(own) >= 2:
                t = t - ((h[:-1, None] == own[None, :-1]) & (h[1:, None] == own[None, 1:])).sum(1)
            tr = np.log1p(np.maximum(t, 0))
        else:
            tr = np.zeros(0)
        if n >= 3 and lp.std() > 0:  # the least-squares slope (what np.polyfit(x, lp, 1)[0] gives)
            x = np.arange(n) - (n - 1) / 2
            slope = float((x * (lp - lp.mean())).sum() / (x * x).sum())
        else:
            slope = 0.0
        cols["length"].append(n)
        cols["mean_logpop"].append(float(lp.mean()) if n else 0.0)
        cols["min_logpop"].append(float(lp.min()) if n else 0.0)
        cols["first_logpop"].append(float(lp[0]) if n else 0.0)
        cols["last_logpop"].append(float(lp[-1]) if n else 0.0)
        cols["logpop_slope"].append(slope)
        cols["tail_share"].append(float(tail[s : s + n].mean()) if n else 0.0)
        cols["distinct_share"].append(len(np.unique(h)) / n if n else 0.0)
        cols["mean_log_transition"].append(float(tr.mean()) if len(tr) else 0.0)
        cols["known_transition_share"].append(float((tr > 0).mean()) if len(tr) else 0.0)
    return pd.DataFrame(cols) if hs else pd.DataFrame()


def real_windows(hists: Sequence[np.ndarray], lengths: Sequence[int], seed: int = 0) -> list[np.ndarray]:
    """For each wanted length L, a random contiguous L-window of one of ``hists`` with >= L items
    (lengths none reaches are skipped). Pass histories the statistics were NOT counted on (a
    holdout): a window of a counted history has every transition "known" by construction."""
    rng = np.random.default_rng(seed)
    hists = [h for h in hists if len(h)]
    lens = np.array([len(h) for h in hists])
    order = np.argsort(lens)
    sl = lens[order]
    out = []
    for L in lengths:
        j = np.searchsorted(sl, L)
        if j >= len(sl):
            continue
        h = hists[order[rng.integers(j, len(sl))]]
        s = int(rng.integers(0, len(h) - L + 1))
        out.append(h[s : s + L])
    return out


def window_c2st(gen: Sequence[np.ndarray], gen_sources: Sequence[np.ndarray | None], real: Sequence[np.ndarray],
                ts: TrainingStats, width: int = 5, max_rows: int = 3000, seed: int = 0) -> dict[str, float | int | None]:
    """C2ST on ``width``-item windows: a random window of each generated history against a window
    of the same length from a DISTINCT real training history (each real history used at most once,
    so the detector cannot memorise repeated reference rows), statistics leave-one-out (a real
    window is scored without its own history's counts; an expansion without its source's).
    Also a real-vs-real control: two disjoint sets of real windows (the floor of the test), and
    ``by_statistic``: each window statistic's own AUC and means (``metrics.column_aucs``)."""
    rng = np.random.default_rng(seed)
    real = [np.asarray(h, np.int64) for h in real]
    order = rng.permutation(len(real))
    pool = {w: [i for i in order if len(real[i]) >= w] for w in range(1, width + 1)}
    used: set[int] = set()

    def cut(h: np.ndarray, w: int) -> np.ndarray:
        s = int(rng.integers(0, len(h) - w + 1))
        return h[s : s + w]

    def take(w: int) -> int | None:
        while pool[w]:
            i = int(pool[w].pop())
            if i not in used:
                used.add(i)
                return i
        return None

    g_rows, g_src, r_rows, r_src = [], [], [], []
    for k in rng.permutation(len(gen))[:max_rows]:
        h = np.asarray(gen[k], np.int64)
        w = min(width, len(h))
        i = take(w) if w else None
        if i is None:
            continue
        g_rows.append(cut(h, w)); g_src.append(gen_sources[k])
        r_rows.append(cut(real[i], w)); r_src.append(real[i])
    out: dict[str, float | int | None] = {"rows": len(g_rows), "width": width}
    if len(g_rows) < 20:
        out.update(auc=None, real_vs_real=None)
        return out
    r_st, g_st = history_stats(r_rows, ts, r_src), history_stats(g_rows, ts, g_src)
    auc = c2st_auc(r_st, g_st, max_rows=max_rows, seed=seed)
    out["auc"] = round(auc, 4) if auc == auc else None
    out["by_statistic"] = column_aucs(r_st, g_st)  # what the detector reads, one statistic at a time
    # control: windows of further distinct real histories against the reference windows
    c_rows, c_src = [], []
    for r in r_rows:
        i = take(len(r))
        if i is None:
            break
        c_rows.append(cut(real[i], len(r))); c_src.append(real[i])
    if len(c_rows) >= 20:
        ctl = c2st_auc(history_stats(r_rows[: len(c_rows)], ts, r_src[: len(c_rows)]), history_stats(c_rows, ts, c_src),
                       max_rows=max_rows, seed=seed)
        out["real_vs_real"] = round(ctl, 4) if ctl == ctl else None
    else:
        out["real_vs_real"] = None
    return out


def _incidence(hists: Sequence[np.ndarray], n_items: int):
    rows = np.repeat(np.arange(len(hists)), [len(h) for h in hists])
    cols = np.concatenate([np.asarray(h, np.int64) for h in hists]) if len(hists) else np.zeros(0, np.int64)
    m = sparse.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(hists), n_items + 1))
    m.data[:] = 1.0  # sets: repeats count once
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def set_dcr(train: Sequence[np.ndarray], query: Sequence[np.ndarray], chunk: int = 2000) -> np.ndarray:
    """1 - max Jaccard(query set, training set) over all training histories (exact)."""
    if not len(query):
        return np.zeros(0)
    n_items = int(max(max((h.max() for h in train if len(h)), default=0), max((h.max() for h in query if len(h)), default=0)))
    T, Q = _incidence(train, n_items), _incidence(query, n_items)
    tn = np.asarray(T.sum(1)).ravel()
    qn = np.asarray(Q.sum(1)).ravel()
    out = np.ones(len(query))
    for s in range(0, len(query), chunk):
        inter = (Q[s : s + chunk] @ T.T).tocsr()
        for i in range(inter.shape[0]):
            a, b = inter.indptr[i], inter.indptr[i + 1]
            if a == b:
                continue
            x = inter.data[a:b]
            j = x / (qn[s + i] + tn[inter.indices[a:b]] - x)
            out[s + i] = 1.0 - j.max()
    return out


def copies(train: Sequence[np.ndarray], ts: TrainingStats, gen: Sequence[np.ndarray], dcr: np.ndarray | None = None) -> dict[str, float]:
    keys = {tuple(h.tolist()) for h in train if len(h) >= 2}
    exact = np.array([len(h) >= 2 and tuple(np.asarray(h).tolist()) in keys for h in gen], dtype=bool)
    dcr = set_dcr(train, gen) if dcr is None else dcr
    near = (dcr <= 0.2) & np.array([len(h) >= 3 for h in gen], dtype=bool)  # bool even when nothing was accepted
    tri = [tuple(h[i : i + 3].tolist()) for h in gen for i in range(len(h) - 2)]
    return {"exact_copy_share": round(float(exact.mean()), 4) if len(gen) else 0.0,
            "near_copy_share": round(float(near.mean()), 4) if len(gen) else 0.0,
            "trigram_copy_share": round(float(np.mean([t in ts.trigrams for t in tri])), 4) if tri else 0.0}


def coverage(ts: TrainingStats, gen: Sequence[np.ndarray]) -> dict[str, float]:
    """Catalogue coverage (distinct generated items / training items) and tail share of generated
    item occurrences, next to the real tail share."""
    allv = np.concatenate([np.asarray(h, np.int64) for h in gen]) if len(gen) else np.zeros(0, np.int64)
    realv = np.concatenate(ts.hists) if ts.hists else np.zeros(0, np.int64)
    tail = np.fromiter(ts.tail, np.int64) if ts.tail else np.zeros(0, np.int64)
    return {"catalogue_coverage": round(len(np.unique(allv)) / max(len(ts.counts), 1), 4),
            "tail_share": round(float(np.isin(allv, tail).mean()) if len(allv) else 0.0, 4),
            "real_tail_share": round(float(np.isin(realv, tail).mean()) if len(realv) else 0.0, 4)}


def plot_histories(path: str | Path, real: pd.DataFrame, gen: pd.DataFrame, ts: TrainingStats,
                   gen_hists: Sequence[np.ndarray], real_hists: Sequence[np.ndarray]) -> Path:
    """One figure: length, mean log popularity, popularity by position, item frequency by rank."""
    import matplotlib  # heavy, and the backend is chosen before pyplot loads: only when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 4, figsize=(16, 3.6))
    bins = np.arange(0, max(int(real["length"].max()) if len(real) else 1, int(gen["length"].max()) if len(gen) else 1) + 2)
    ax[0].hist([real["length"], gen["length"]], bins=bins, density=True, label=["real windows", "generated"])
    ax[0].set_title("history length")
    ax[1].hist([real["mean_logpop"], gen["mean_logpop"]], bins=20, density=True, label=["real", "generated"])
    ax[1].set_title("mean log popularity")
    for name, hs in (("real", real_hists), ("generated", gen_hists)):
        pos = [(i, v) for h in hs for i, v in enumerate(ts.logpop(np.asarray(h, np.int64))[-10:][::-1])]
        if pos:
            d = pd.DataFrame(pos, columns=["k", "lp"]).groupby("k")["lp"].mean()
            ax[2].plot(d.index, d.values, marker="o", label=name)
    ax[2].set_title("log popularity by position (0 = newest)")
    for name, hs in (("real", real_hists), ("generated", gen_hists)):
        v = np.concatenate([np.asarray(h) for h in hs]) if len(hs) else np.zeros(0)
        if len(v):
            c = np.sort(np.unique(v, return_counts=True)[1])[::-1]
            ax[3].loglog(np.arange(1, len(c) + 1), c / c.sum(), label=name)
    ax[3].set_title("item frequency by rank")
    for a in ax:
        a.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

