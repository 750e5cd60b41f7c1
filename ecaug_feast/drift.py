"""Drift between the rows a synthetic run was fitted on (reference) and recent real rows.

Pure functions over DataFrames (no I/O); ``ecaug drift`` (``ecaug_feast/jobs/refresh.py``) reads the
windows from the offline store and writes the report.

Each score compares ``reference`` with ``recent``:

* ``psi:<col>`` (population stability index, 10 reference-quantile bins) and, for continuous
  columns, ``ks:<col>`` (Kolmogorov-Smirnov statistic);
* ``c2st_auc``: classifier two-sample test of recent against reference rows
  (:func:`ecaug_feast.quality.metrics.c2st_auc`; 0.5 = indistinguishable);
* ``item_js`` (Jensen-Shannon divergence of the item popularity distributions, bits, in [0, 1])
  and ``item_topk_overlap`` (share of the recent top-K items that are in the reference top-K);
* ``new_item_share`` / ``new_user_share``: share of recent rows whose item / user the
  reference (the generator's vocabulary) lacks;
* ``label_rate_change``: |recent positive rate − reference positive rate|.

Why a permutation null: on sparse data most of these statistics are far from 0 even when nothing
changed (a week of 1,000 purchases over 11,000 items has a JS divergence near 0.7 from any other
week). So every score except the C2ST AUC (already calibrated: 0.5) is also computed on
``permutations`` random splits of the pooled rows with the same two sizes, and the threshold
applies to the *excess* over that null (``observed − null mean``; for the top-K overlap
``null mean − observed``). A shuffled-time control then scores an excess near 0 whatever the
sample sizes, and a real change scores above it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ecaug_feast import schema as S
from ecaug_feast.errors import DataValidationError

# Columns of a training example the per-feature scores look at. ``mean_item_popularity`` is left
# out on purpose: it is a cumulative count, so it grows with time even when behaviour does not
# change (every window would "drift"); item popularity is compared directly instead.
DEFAULT_FEATURES = (S.N_INTERACTIONS, S.DAYS_SINCE_LAST, S.ATTR_DIVERSITY)
CONTINUOUS = tuple(S.USER_FLOAT_COLUMNS)


@dataclass
class DriftThresholds:
    """When a score counts as drift. Excess = observed − permutation null (see module docstring).
    ``None`` reports a score without thresholding it."""

    psi: float | None = 0.10               # excess PSI, any feature
    ks: float | None = 0.10                # excess KS statistic, any continuous feature
    c2st_auc: float | None = 0.60          # raw AUC of recent vs reference
    item_js: float | None = 0.025          # excess JS divergence (bits)
    item_topk_overlap: float | None = 0.20  # drop of the top-K overlap below the null's
    new_item_share: float | None = 0.10    # excess share of recent rows on unknown items
    new_user_share: float | None = None    # reported only: session data has new "users" every day
    label_rate_change: float | None = 0.10  # excess absolute change of the positive rate
    top_k: int = 50
    permutations: int = 20
    min_rows: int = 100                    # fewer recent or reference rows: no verdict (error)
    c2st_rows: int = 3000
    features: tuple[str, ...] = DEFAULT_FEATURES
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["features"] = list(self.features)
        return d

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None, source: str | Path | None = None) -> "DriftThresholds":
        """Defaults overridden by ``data`` (a parsed ``drift.yaml``); unknown keys are an error."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        bad = sorted(set(data) - known)
        if bad:
            raise DataValidationError(source, bad[0], f"unknown drift threshold (known: {', '.join(sorted(known))})")
        for k, v in data.items():
            if k == "features":
                if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
                    raise DataValidationError(source, k, "must be a list of column names")
                data[k] = tuple(v)
            elif v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise DataValidationError(source, k, f"must be a number or null, got {v!r}")
        return cls(**data)


@dataclass
class DriftResult:
    drifted: bool
    scores: dict[str, float]               # observed values
    excess: dict[str, float]               # observed − null (what thresholds apply to)
    null: dict[str, float]                 # permutation null means
    crossed: list[str]                     # score names over their threshold
    rows: dict[str, int]
    details: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ single statistics
def psi(ref: np.ndarray, rec: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index with bins at the reference quantiles (atoms share a bin)."""
    ref, rec = np.asarray(ref, float), np.asarray(rec, float)
    ref, rec = ref[~np.isnan(ref)], rec[~np.isnan(rec)]
    if len(ref) == 0 or len(rec) == 0:
        return float("nan")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    p = np.bincount(np.searchsorted(edges, ref, "right"), minlength=len(edges) + 1) / len(ref)
    q = np.bincount(np.searchsorted(edges, rec, "right"), minlength=len(edges) + 1) / len(rec)
    p, q = np.maximum(p, eps), np.maximum(q, eps)
    return float(np.sum((q - p) * np.log(q / p)))


def ks(ref: np.ndarray, rec: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (max CDF gap)."""
    a = np.sort(np.asarray(ref, float))
    b = np.sort(np.asarray(rec, float))
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b)).max())


def js_divergence(ref_keys: np.ndarray, rec_keys: np.ndarray) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two key-frequency distributions."""
    keys, inv = np.unique(np.concatenate([ref_keys, rec_keys]), return_inverse=True)
    p = np.bincount(inv[: len(ref_keys)], minlength=len(keys)).astype(float)
    q = np.bincount(inv[len(ref_keys):], minlength=len(keys)).astype(float)
    if p.sum() == 0 or q.sum() == 0:
        return float("nan")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return 0.5 * kl(p) + 0.5 * kl(q)


def topk_overlap(ref_keys: np.ndarray, rec_keys: np.ndarray, k: int) -> float:
    """Share of the recent top-``k`` keys (by count, ties by key) found in the reference top-``k``."""
    def top(x: np.ndarray) -> set[Any]:
        s = pd.Series(x).value_counts()
        s = s.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
        return set(s.index[:k])

    a, b = top(ref_keys), top(rec_keys)
    return float(len(a & b) / max(1, len(b)))


def unknown_share(ref_keys: np.ndarray, rec_keys: np.ndarray) -> float:
    """Share of recent rows whose key never occurs in the reference."""
    if len(rec_keys) == 0:
        return float("nan")
    return float((~np.isin(rec_keys, np.unique(ref_keys))).mean())


def rate_change(ref: np.ndarray, rec: np.ndarray) -> float:
    return float(abs(np.mean(rec) - np.mean(ref))) if len(ref) and len(rec) else float("nan")


# ------------------------------------------------------------------ with a permutation null
def with_null(stat: Callable[[np.ndarray, np.ndarray], float], ref: np.ndarray, rec: np.ndarray,
              permutations: int, rng: np.random.Generator) -> tuple[float, float]:
    """``(observed, null mean)``: ``stat`` on the two samples, and its mean over random splits of
    the pooled values with the same sizes (what the statistic reads when nothing changed)."""
    obs = stat(ref, rec)
    if permutations <= 0:
        return obs, 0.0
    pooled = np.concatenate([ref, rec])
    vals = []
    for _ in range(permutations):
        p = rng.permutation(len(pooled))
        vals.append(stat(pooled[p[: len(ref)]], pooled[p[len(ref):]]))
    return obs, float(np.nanmean(vals))


def compare(reference: pd.DataFrame, recent: pd.DataFrame, thresholds: DriftThresholds | None = None,
            item_col: str = "item_id", user_col: str = "user_id", label_col: str = "label",
            vocabulary: np.ndarray | None = None) -> DriftResult:
    """Every score of the module docstring for two windows of training examples.

    ``reference``/``recent``: one row per example with the ``thresholds.features`` columns and
    (when present) ``item_col``, ``user_col``, ``label_col``. ``vocabulary``: the generator's item
    ids (default: the reference's items), for ``new_item_share``."""
    from ecaug_feast.quality.metrics import c2st_auc

    th = thresholds or DriftThresholds()
    if len(reference) < th.min_rows or len(recent) < th.min_rows:
        raise DataValidationError(None, None, f"too few rows to compare (reference {len(reference)}, recent {len(recent)}; "
                                  f"min_rows {th.min_rows}): widen the window")
    rng = np.random.default_rng(th.seed)
    scores: dict[str, float] = {}
    null: dict[str, float] = {}
    limits: dict[str, float | None] = {}
    higher_is_worse: dict[str, bool] = {}

    def add(name: str, stat: Callable[[np.ndarray, np.ndarray], float], a: np.ndarray, b: np.ndarray,
            limit: float | None, worse_high: bool = True) -> None:
        scores[name], null[name] = with_null(stat, a, b, th.permutations, rng)
        limits[name], higher_is_worse[name] = limit, worse_high

    feats = [c for c in th.features if c in reference.columns and c in recent.columns]
    for c in feats:
        a, b = reference[c].to_numpy(float), recent[c].to_numpy(float)
        add(f"psi:{c}", psi, a, b, th.psi)
        if c in CONTINUOUS:
            add(f"ks:{c}", ks, a, b, th.ks)
    if item_col in reference.columns and item_col in recent.columns:
        a, b = reference[item_col].to_numpy(np.int64), recent[item_col].to_numpy(np.int64)
        add("item_js", js_divergence, a, b, th.item_js)
        add("item_topk_overlap", lambda x, y: topk_overlap(x, y, th.top_k), a, b, th.item_topk_overlap, worse_high=False)
        add("new_item_share", unknown_share, a, b, th.new_item_share)
        if vocabulary is not None:  # against the generator's own vocabulary (reported, not thresholded)
            scores["new_item_share_vs_generator"] = unknown_share(np.asarray(vocabulary, np.int64), b)
    if user_col in reference.columns and user_col in recent.columns:
        add("new_user_share", unknown_share, reference[user_col].to_numpy(np.int64), recent[user_col].to_numpy(np.int64),
            th.new_user_share)
    if label_col in reference.columns and label_col in recent.columns:
        add("label_rate_change", rate_change, reference[label_col].to_numpy(float), recent[label_col].to_numpy(float),
            th.label_rate_change)

    c2_cols = feats + [c for c in (item_col,) if c in reference.columns and c in recent.columns]
    if c2_cols:
        # Item frequencies from the pooled rows: a reference-only table would give every reference
        # row a count >= 1 and many recent rows 0, which a detector finds even when nothing moved.
        # Shuffled: the detector's rank code breaks frequency ties by first appearance, which would
        # put every recent-only item after the reference's ones.
        pooled = pd.concat([reference[c2_cols], recent[c2_cols]], ignore_index=True).sample(frac=1.0, random_state=th.seed)
        auc = c2st_auc(reference[c2_cols].reset_index(drop=True), recent[c2_cols].reset_index(drop=True),
                       discrete=[item_col], max_rows=th.c2st_rows, seed=th.seed, reference=pooled)
        scores["c2st_auc"], null["c2st_auc"] = auc, 0.5
        limits["c2st_auc"], higher_is_worse["c2st_auc"] = th.c2st_auc, True

    excess: dict[str, float] = {}
    crossed: list[str] = []
    for name, obs in scores.items():
        if name not in null:
            continue
        ex = obs - null[name] if higher_is_worse[name] else null[name] - obs
        excess[name] = ex
        lim = limits[name]
        if name == "c2st_auc":  # thresholded on the AUC itself
            if lim is not None and obs == obs and obs > lim:
                crossed.append(name)
        elif lim is not None and ex == ex and ex > lim:
            crossed.append(name)
    return DriftResult(bool(crossed), {k: _r(v) for k, v in scores.items()}, {k: _r(v) for k, v in excess.items()},
                       {k: _r(v) for k, v in null.items()}, crossed,
                       {"reference": int(len(reference)), "recent": int(len(recent))})


def limit_of(name: str, th: DriftThresholds) -> float | None:
    """The threshold that applies to score ``name`` (``psi:<col>`` -> ``psi``)."""
    key = name.split(":", 1)[0]
    return getattr(th, key, None) if key in {f.name for f in fields(th)} else None


def _r(v: float) -> float:
    return round(float(v), 4) if v == v else float("nan")
