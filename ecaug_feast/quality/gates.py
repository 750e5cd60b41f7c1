"""Quality gates: per-row filters (privacy, copies, outliers) and run-level pass/fail checks.

Row filters (a dropped row never reaches Feast):

* exact copies of a training row;
* privacy: distance to the closest training record below the ``privacy_quantile`` (5th
  percentile) of the same distance measured for *holdout* real rows (rows the generator never saw):
  a synthetic row closer to a training row than real unseen rows usually are is treated as a leak;
* outliers: a numeric value outside the real ``[min, max]`` widened by ``outlier_margin`` of the
  range.

Run-level checks (all configurable, thresholds in ``GateConfig``): column shapes and pair trends
at least their minimum, C2ST AUC at most its maximum, the privacy drop share at most its maximum,
at least ``min_accepted_share`` of the generated rows accepted. A failed gate means the run is
written (for inspection) but never materialized.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ecaug_feast.quality import metrics as M


@dataclass
class GateConfig:
    min_column_shapes: float = 0.80
    min_pair_trends: float = 0.75
    max_c2st_auc: float = 0.80
    privacy_quantile: float = 0.05
    max_privacy_drop_share: float = 0.50
    min_accepted_share: float = 0.20
    outlier_margin: float = 0.0
    c2st_rows: int = 5000
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GateResult:
    passed: bool
    keep: np.ndarray                       # row mask over the synthetic table
    metrics: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def gate(self) -> str:
        return "pass" if self.passed else "fail"


def row_filters(train: pd.DataFrame, holdout: pd.DataFrame | None, synth: pd.DataFrame,
                discrete: Sequence[str], cfg: GateConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """Masks of rows to drop (copies, privacy, outliers) and their counts."""
    n = len(synth)
    copies = M.exact_copies(train, synth)
    space = M.GowerSpace(train, discrete, seed=cfg.seed)
    dcr = M.distance_to_closest_record(train, synth, discrete, space)
    thr = 0.0
    if holdout is not None and len(holdout):
        ref = M.distance_to_closest_record(train, holdout, discrete, space)
        thr = float(np.quantile(ref, cfg.privacy_quantile))
    too_close = (dcr < thr) & ~copies
    out = np.zeros(n, bool)
    for c in train.columns:
        if c in discrete or not pd.api.types.is_numeric_dtype(train[c]):
            continue
        lo, hi = float(train[c].min()), float(train[c].max())
        m = cfg.outlier_margin * (hi - lo)
        x = synth[c].to_numpy(dtype=float)
        out |= (x < lo - m) | (x > hi + m)
    drop = copies | too_close | out
    info = {"exact_copies": int(copies.sum()), "privacy_too_close": int(too_close.sum()), "outliers": int((out & ~copies & ~too_close).sum()),
            "privacy_dropped": int((copies | too_close).sum()), "privacy_dropped_share": float((copies | too_close).mean()) if n else 0.0,
            "dcr_threshold": thr, "dcr_median": float(np.median(dcr)) if n else None}
    return ~drop, info


def evaluate(train: pd.DataFrame, holdout: pd.DataFrame | None, synth: pd.DataFrame, discrete: Sequence[str],
             cfg: GateConfig | None = None, accepted_extra: np.ndarray | None = None) -> GateResult:
    """Run the row filters and the run-level checks on ``synth`` against the real ``train`` rows.

    ``accepted_extra``: another keep-mask (e.g. the labeler's confidence filter) combined with ours.
    Fidelity metrics are computed on the accepted rows (what would be materialized)."""
    cfg = cfg or GateConfig()
    synth = synth[list(train.columns)].reset_index(drop=True)
    keep, info = row_filters(train, holdout, synth, discrete, cfg)
    if accepted_extra is not None:
        keep &= np.asarray(accepted_extra, bool)
    acc = synth[keep]
    res: dict[str, Any] = dict(info)
    res["rows_generated"], res["rows_accepted"] = int(len(synth)), int(keep.sum())
    reasons: list[str] = []
    if len(acc) >= 10:
        shapes = M.column_shapes(train, acc, discrete)
        trends = M.pair_trends(train, acc, discrete)
        res["column_shapes"], res["pair_trends"] = shapes["score"], trends["score"]
        res["column_shapes_per_column"] = shapes["columns"]
        res["c2st_auc"] = M.c2st_auc(train, acc, discrete, max_rows=cfg.c2st_rows, seed=cfg.seed)
    else:
        res["column_shapes"] = res["pair_trends"] = 0.0
        res["c2st_auc"] = float("nan")
        reasons.append(f"only {len(acc)} rows survived the row filters")
    share = keep.mean() if len(keep) else 0.0
    if res["column_shapes"] < cfg.min_column_shapes:
        reasons.append(f"column shapes {res['column_shapes']:.3f} < {cfg.min_column_shapes}")
    if res["pair_trends"] < cfg.min_pair_trends:
        reasons.append(f"pair trends {res['pair_trends']:.3f} < {cfg.min_pair_trends}")
    if not np.isnan(res["c2st_auc"]) and res["c2st_auc"] > cfg.max_c2st_auc:
        reasons.append(f"C2ST AUC {res['c2st_auc']:.3f} > {cfg.max_c2st_auc}")
    if info["privacy_dropped_share"] > cfg.max_privacy_drop_share:
        reasons.append(f"privacy gate dropped {info['privacy_dropped_share']:.1%} > {cfg.max_privacy_drop_share:.0%}")
    if share < cfg.min_accepted_share:
        reasons.append(f"accepted {share:.1%} of generated rows < {cfg.min_accepted_share:.0%}")
    return GateResult(passed=not reasons, keep=keep, metrics=res, reasons=reasons)
