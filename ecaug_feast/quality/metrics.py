"""Fidelity and privacy metrics of a synthetic table against the real one.

All metrics take two DataFrames with the same columns and the list of categorical columns.

* ``column_shapes``: per column, 1 - KS statistic (numeric) or 1 - total variation distance
  (categorical); mean over columns. 1 = identical marginals.
* ``pair_trends``: per column pair, 1 - |Pearson r_real - r_synth| / 2 (both numeric) or
  1 - TV distance of the joint contingency table (otherwise; numeric columns binned into 10
  real-quantile bins); mean over pairs.
  High-cardinality categoricals (> ``top_k`` categories) are compared on their ``top_k`` most
  frequent real categories + "other": with 12k items and 20k rows a per-id TV is dominated by
  sampling noise (a second real sample would score badly too).
* ``c2st_auc``: classifier two-sample test; 5-fold cross-validated ROC AUC of a histogram
  gradient-boosted classifier separating real from synthetic rows (balanced, up to ``max_rows``
  each). 0.5 = indistinguishable, 1.0 = trivially separable. Categoricals enter as their frequency in
  the whole real table (an id never seen in real data gets 0) and a frequency-rank code.
* ``distance_to_closest_record``: per synthetic row, the distance to its nearest training row in
  a Gower-like space (numeric -> real empirical CDF rank in [0, 1]; categorical -> a random
  unit-ish code so two different categories are ~1 apart), exact nearest neighbour with FAISS.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_score

from ecaug_feast.threads import single_thread


def _is_cat(df: pd.DataFrame, col: str, discrete: Sequence[str]) -> bool:
    return col in discrete or not pd.api.types.is_numeric_dtype(df[col])


def _collapse(real: pd.Series, synth: pd.Series, top_k: int) -> tuple[pd.Series, pd.Series]:
    r, s = real.astype(object).where(real.notna(), "<nan>"), synth.astype(object).where(synth.notna(), "<nan>")
    r, s = r.map(repr), s.map(repr)
    if r.nunique() > top_k:
        keep = set(r.value_counts().index[:top_k])
        r = r.where(r.isin(keep), "<other>")
        s = s.where(s.isin(keep), "<other>")
    return r, s


def column_shapes(real: pd.DataFrame, synth: pd.DataFrame, discrete: Sequence[str] = (), top_k: int = 50) -> dict[str, Any]:
    """Mean and per-column marginal similarity in [0, 1]."""
    per: dict[str, float] = {}
    for c in real.columns:
        if _is_cat(real, c, discrete):
            r, s = _collapse(real[c], synth[c], top_k)
            pr, ps = r.value_counts(normalize=True), s.value_counts(normalize=True)
            tv = 0.5 * pr.subtract(ps, fill_value=0).abs().sum()
            per[c] = float(1 - tv)
        else:
            a = np.sort(real[c].dropna().to_numpy(dtype=float))
            b = np.sort(synth[c].dropna().to_numpy(dtype=float))
            if len(a) == 0 or len(b) == 0:
                per[c] = 0.0
                continue
            grid = np.concatenate([a, b])
            ks = np.abs(np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b)).max()
            per[c] = float(1 - ks)
    return {"score": float(np.mean(list(per.values()))), "columns": per}


def _binned(real: pd.Series, synth: pd.Series, cat: bool, top_k: int, bins: int = 10) -> tuple[pd.Series, pd.Series]:
    if cat:
        return _collapse(real, synth, top_k)
    edges = np.unique(np.nanquantile(real.to_numpy(dtype=float), np.linspace(0, 1, bins + 1)[1:-1]))
    f = lambda x: pd.Series(np.searchsorted(edges, x.to_numpy(dtype=float), "right")).astype(str)
    return f(real), f(synth)


def pair_trends(real: pd.DataFrame, synth: pd.DataFrame, discrete: Sequence[str] = (), top_k: int = 20) -> dict[str, Any]:
    """Mean and per-pair dependence similarity in [0, 1]."""
    cols = list(real.columns)
    cat = {c: _is_cat(real, c, discrete) for c in cols}
    binned = {c: _binned(real[c].reset_index(drop=True), synth[c].reset_index(drop=True), cat[c], top_k) for c in cols}
    per: dict[str, float] = {}
    for i, a in enumerate(cols):
        for b in cols[i + 1:]:
            if not cat[a] and not cat[b]:
                ra = real[[a, b]].astype(float).corr().iloc[0, 1]
                sa = synth[[a, b]].astype(float).corr().iloc[0, 1]
                ra, sa = np.nan_to_num(ra), np.nan_to_num(sa)
                per[f"{a}|{b}"] = float(1 - abs(ra - sa) / 2)
            else:
                jr = (binned[a][0] + "\x00" + binned[b][0]).value_counts(normalize=True)
                js = (binned[a][1] + "\x00" + binned[b][1]).value_counts(normalize=True)
                per[f"{a}|{b}"] = float(1 - 0.5 * jr.subtract(js, fill_value=0).abs().sum())
    return {"score": float(np.mean(list(per.values()))) if per else 1.0, "pairs": per}


def _detector_matrix(real: pd.DataFrame, synth: pd.DataFrame, discrete: Sequence[str],
                     reference: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    cols_r, cols_s = [], []
    for c in real.columns:
        if _is_cat(real, c, discrete):
            key_r = real[c].astype(object).map(repr)
            key_s = synth[c].astype(object).map(repr)
            # Frequency and code from the whole real reference table, computed before the detector's
            # subsample: maps fitted on the sample itself leak which rows were sampled (two
            # disjoint halves of real data then score AUC 0.64 on sparse ids, measured).
            freq = reference[c].astype(object).map(repr).value_counts()
            codes = pd.Series(np.arange(len(freq)), index=freq.index)
            cols_r += [key_r.map(freq).fillna(0).to_numpy(float), key_r.map(codes).fillna(-1).to_numpy(float)]
            cols_s += [key_s.map(freq).fillna(0).to_numpy(float), key_s.map(codes).fillna(-1).to_numpy(float)]
        else:
            cols_r.append(real[c].to_numpy(dtype=float))
            cols_s.append(synth[c].to_numpy(dtype=float))
    return np.column_stack(cols_r), np.column_stack(cols_s)


def c2st_auc(real: pd.DataFrame, synth: pd.DataFrame, discrete: Sequence[str] = (), max_rows: int = 5000,
             folds: int = 5, seed: int = 0, reference: pd.DataFrame | None = None) -> float:
    """5-fold ROC AUC of a gradient-boosted real-vs-synthetic classifier (0.5 = indistinguishable).
    ``reference``: the real table category frequencies come from (default ``real``; pass the full
    training table when ``real`` is itself a part of it, e.g. for a real-vs-real baseline)."""
    rng = np.random.default_rng(seed)
    n = min(len(real), len(synth), max_rows)
    if n < folds * 2:
        return float("nan")
    r = real.iloc[rng.choice(len(real), n, replace=False)].reset_index(drop=True)
    s = synth.iloc[rng.choice(len(synth), n, replace=False)].reset_index(drop=True)
    Xr, Xs = _detector_matrix(r, s, discrete, real if reference is None else reference)
    X = np.vstack([Xr, Xs])
    y = np.r_[np.zeros(n), np.ones(n)]
    clf = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, random_state=seed)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with single_thread():
        return float(np.mean(cross_val_score(clf, X, y, cv=cv, scoring="roc_auc")))


def column_aucs(real: pd.DataFrame, synth: pd.DataFrame, columns: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """One column at a time: how well it alone tells ``synth`` from ``real`` (ROC AUC of the raw
    value, folded to >= .5: .5 = no signal), with both means. What a C2ST detector reads."""
    out: dict[str, dict[str, float]] = {}
    for c in columns or [c for c in real.columns if c in synth.columns]:
        r = pd.to_numeric(real[c], errors="coerce").dropna().to_numpy(float)
        g = pd.to_numeric(synth[c], errors="coerce").dropna().to_numpy(float)
        if len(r) == 0 or len(g) == 0:
            continue
        auc = roc_auc_score(np.r_[np.zeros(len(r)), np.ones(len(g))], np.r_[r, g])
        out[c] = {"auc": round(max(auc, 1 - auc), 3), "real_mean": round(float(r.mean()), 4), "synth_mean": round(float(g.mean()), 4)}
    return out


class GowerSpace:
    """Embed rows so squared L2 ~ a Gower-style mismatch count (fitted on the training rows)."""

    def __init__(self, train: pd.DataFrame, discrete: Sequence[str] = (), code_dim: int = 8, seed: int = 0) -> None:
        self.cols = list(train.columns)
        self.cat = {c: _is_cat(train, c, discrete) for c in self.cols}
        self.sorted = {c: np.sort(train[c].dropna().to_numpy(dtype=float)) for c in self.cols if not self.cat[c]}
        self.code_dim, self.seed = code_dim, seed

    def embed(self, df: pd.DataFrame) -> np.ndarray:
        parts = []
        for c in self.cols:
            if self.cat[c]:
                # Deterministic pseudo-random code per category: hash -> seeded normal vector with norm
                # 1/sqrt(2), so two different categories are ~1 apart (squared) and equal ones 0.
                h = pd.util.hash_array(df[c].astype(object).map(repr).to_numpy(), categorize=True).astype(np.uint64)
                codes = np.empty((len(df), self.code_dim), np.float32)
                uniq, inv = np.unique(h, return_inverse=True)
                for k, u in enumerate(uniq):
                    v = np.random.default_rng([int(u % (2**63)), self.seed]).standard_normal(self.code_dim)
                    codes[inv == k] = v / np.linalg.norm(v) / np.sqrt(2)
                parts.append(codes)
            else:
                s = self.sorted[c]
                x = df[c].to_numpy(dtype=float)
                rank = np.searchsorted(s, x, "right") / max(len(s), 1)
                parts.append(np.nan_to_num(rank, nan=-1.0).astype(np.float32)[:, None])
        return np.ascontiguousarray(np.hstack(parts), dtype=np.float32)


def distance_to_closest_record(train: pd.DataFrame, query: pd.DataFrame, discrete: Sequence[str] = (),
                               space: GowerSpace | None = None) -> np.ndarray:
    """Distance of each ``query`` row to its nearest ``train`` row (exact, FAISS flat L2)."""
    import faiss  # optional (the serve extra) and heavy: loaded only when a distance is asked for

    space = space or GowerSpace(train, discrete)
    xt, xq = space.embed(train), space.embed(query)
    index = faiss.IndexFlatL2(xt.shape[1])
    index.add(xt)
    d, _ = index.search(xq, 1)
    return np.sqrt(np.maximum(d[:, 0], 0.0))


def exact_copies(train: pd.DataFrame, query: pd.DataFrame) -> np.ndarray:
    """True where a ``query`` row equals some training row on every column."""
    def key(df: pd.DataFrame) -> np.ndarray:
        d = df.copy()
        for c in d.columns:
            if pd.api.types.is_float_dtype(d[c]):
                d[c] = d[c].round(6)
        return pd.util.hash_pandas_object(d, index=False).to_numpy()

    return np.isin(key(query[train.columns]), key(train))
