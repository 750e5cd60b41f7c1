"""In-memory augmentation: fit the GAN, generate, label, gate. No Feast I/O (``synth_store`` does that).

    from ecaug_feast.synth.pipeline import augment_frame, AugmentConfig
    res = augment_frame(train_examples, n_rows=10_000, seed=0, config=AugmentConfig(segment="cold_users"))
    res.accepted   # DataFrame: user_id (synthetic), item_id, event_timestamp, label, confidence,
                   # user_features columns, is_synthetic, run_id, generator_version
    res.metrics    # rows_generated, rows_accepted, gate, c2st_auc, column_shapes, pair_trends, ...

``train_examples``: the recommender's real training examples, one row per (user, item, time):
``user_features`` columns of CONTRACT §2 (``recent_items``/``top_attributes`` as lists),
``item_id``, ``label`` and (optional) ``event_timestamp``; any other columns are ignored.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ecaug_feast.errors import DataValidationError
from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE
from ecaug_feast.label import ClusterLabeler, LabelerConfig
from ecaug_feast.paths import feast_data_dir
from ecaug_feast.quality.gates import GateConfig, evaluate
from ecaug_feast.schema import N_INTERACTIONS
from ecaug_feast.synth.examples import ExampleSchema, flatten, unflatten, user_tier
from ecaug_feast.synth.gan import GENERATOR_VERSION, ConditionalGAN, GANConfig

SEGMENT_HELP = ("cold_users | long_tail_items | attr=<attribute id> | <column>=<value> "
                "(column: user_tier, item_tier, item_id, n_interactions, recent_item_1, ...)")
NAMED_SEGMENTS = {"cold_users": ("user_tier", "cold"), "long_tail_items": ("item_tier", "tail"),
                  "hot_users": ("user_tier", "hot"), "head_items": ("item_tier", "head")}


@dataclass
class AugmentConfig:
    """Everything that shapes a run (saved in the run manifest)."""

    gan: GANConfig = field(default_factory=GANConfig)
    labeler: Any = None              # LabelerConfig; None = defaults
    gates: Any = None                # GateConfig; None = defaults
    k_recent: int = 3
    k_attr: int = 2
    max_fit_rows: int = 30_000       # subsample of real examples the GAN and labeler learn from
    holdout_rows: int = 2_000        # real rows kept away from the GAN: privacy reference
    oversample: float = 2.0          # generate this many times n_rows (row filters and label checks drop some)
    segment: str | None = None
    run_id: str = ""
    user_id_start: int = SYNTHETIC_USER_ID_BASE

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("gan", "labeler", "gates")}
        d["gan"] = self.gan.to_json()
        d["labeler"] = asdict(self.labeler) if self.labeler is not None else None
        d["gates"] = asdict(self.gates) if self.gates is not None else None
        return d


@dataclass
class AugmentResult:
    accepted: pd.DataFrame                 # synthetic examples that passed the row filters
    metrics: dict[str, Any]
    gate_passed: bool
    gan: ConditionalGAN
    labeler: Any
    schema: ExampleSchema
    real_flat: pd.DataFrame                # real rows (flat, with label) the gate compared against
    synth_flat: pd.DataFrame               # all generated rows (flat, with label, confidence, keep)


@dataclass
class Segment:
    text: str
    condition: dict[str, Any] | None      # one GAN condition column (None: unconditioned)
    predicate: Callable[[pd.DataFrame], np.ndarray]


def parse_segment(text: str | None, flat: pd.DataFrame) -> Segment | None:
    """Turn ``--segment`` into a GAN condition and/or a row predicate on the flat table."""
    if text is None or not str(text).strip():
        return None
    t = str(text).strip()
    if t in NAMED_SEGMENTS:
        col, val = NAMED_SEGMENTS[t]
    else:
        m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*==?\s*(.+?)\s*", t)
        if not m:
            raise DataValidationError(None, "segment", f"unknown segment {t!r}; use {SEGMENT_HELP}")
        col, val = m.group(1), m.group(2).strip("'\"")
    if col in ("attr", "category", "attribute"):
        slots = [c for c in flat.columns if c.startswith("top_attr_")]
        try:
            a = int(val)
        except ValueError:
            raise DataValidationError(None, "segment", f"attribute id must be an integer, got {val!r}") from None
        if not (flat[slots].to_numpy() == a).any():
            raise DataValidationError(None, "segment", f"attribute {a} is not among any training user's top attributes")
        return Segment(t, None, lambda df: (df[slots].to_numpy() == a).any(axis=1))
    if col not in flat.columns:
        raise DataValidationError(None, "segment", f"unknown column {col!r} in segment {t!r}; use {SEGMENT_HELP}")
    s = flat[col]
    value: Any = val
    if pd.api.types.is_numeric_dtype(s):
        try:
            value = float(val) if "." in val else int(val)
        except ValueError:
            raise DataValidationError(None, "segment", f"{col} is numeric, got {val!r}") from None
    if not (s == value).any():
        raise DataValidationError(None, "segment", f"no training example has {col}={value!r}")
    cond = {col: value} if col in ("user_tier", "item_tier") else None
    if col == "user_tier":
        pred = lambda df: user_tier(df[N_INTERACTIONS].to_numpy()) == value
    elif col == "item_tier":
        tiers = flat.groupby("item_id")["item_tier"].first()
        pred = lambda df: df["item_id"].map(tiers).to_numpy() == value
    else:
        pred = lambda df: (df[col] == value).to_numpy()
    return Segment(t, cond, pred)


def augment_frame(train_examples: pd.DataFrame, n_rows: int, seed: int = 0, config: AugmentConfig | None = None,
                  progress: Callable[[dict[str, float]], None] | None = None, source: str | None = None) -> AugmentResult:
    """Fit the GAN and the labeler on ``train_examples``, generate ``n_rows`` synthetic examples,
    label and gate them. Returns the accepted rows (possibly fewer than ``n_rows``) and metrics."""
    cfg = config or AugmentConfig()
    if n_rows <= 0:
        raise DataValidationError(source, None, f"n_rows must be positive, got {n_rows}")
    if "label" not in train_examples.columns:
        raise DataValidationError(source, "label", "missing: the labeler learns from labelled real examples")
    t_start = time.perf_counter()
    rng = np.random.default_rng(seed)
    df = train_examples.reset_index(drop=True)
    if len(df) > cfg.max_fit_rows + cfg.holdout_rows:
        df = df.iloc[np.sort(rng.choice(len(df), cfg.max_fit_rows + cfg.holdout_rows, replace=False))].reset_index(drop=True)
    flat, schema = flatten(df, cfg.k_recent, cfg.k_attr, source)
    y = df["label"].to_numpy()
    seg = parse_segment(cfg.segment, flat)

    # Privacy reference: real rows the generator never sees.
    n_hold = min(cfg.holdout_rows, len(flat) // 5)
    perm = rng.permutation(len(flat))
    hold_idx, fit_idx = perm[:n_hold], perm[n_hold:]

    lab_cfg = cfg.labeler or LabelerConfig(seed=seed)
    labeler = ClusterLabeler(lab_cfg).fit(flat.iloc[fit_idx].reset_index(drop=True), y[fit_idx])

    gcfg = GANConfig(**{**cfg.gan.to_json(), "seed": seed, "gen_hidden": tuple(cfg.gan.gen_hidden),
                        "dis_hidden": tuple(cfg.gan.dis_hidden), "cond_columns": ["user_tier", "item_tier"]})
    gan = ConditionalGAN(gcfg).fit(flat.iloc[fit_idx][schema.gan_columns].reset_index(drop=True),
                                   schema.discrete_columns, progress=progress or False, source=source)
    fit_seconds = time.perf_counter() - t_start

    # The gate compares against real rows of the same segment (all real rows when unsegmented).
    cols = [c for c in schema.gan_columns if c not in ("user_tier", "item_tier")] + ["label"]
    real = flat.assign(label=y)
    ref_fit, ref_hold = real.iloc[fit_idx], real.iloc[hold_idx]
    if seg:
        in_fit, in_hold = seg.predicate(ref_fit), seg.predicate(ref_hold)
        if in_fit.sum() >= 50:
            ref_fit, ref_hold = ref_fit[in_fit], ref_hold[in_hold]
    discrete = [c for c in schema.discrete_columns if c in cols] + ["label"]
    gcfg_gate = cfg.gates or GateConfig(seed=seed)
    want = int(math.ceil(n_rows * cfg.oversample))
    sample_seconds = 0.0
    # Generate (with the segment's condition), keep rows in the segment, label, gate. Oversampling
    # covers the row filters; one larger top-up round when they still leave fewer than n_rows.
    for attempt in range(2):
        t0 = time.perf_counter()
        pool: list[pd.DataFrame] = []
        got, hit_rate, tries = 0, 1.0, 0
        while got < want and tries < 6:
            m = int(min(max(1000, (want - got) / max(hit_rate, 0.02) * 1.1), 2_000_000))
            g = gan.sample(m, conditions=seg.condition if seg else None, seed=seed * 1000 + attempt * 100 + tries + 1)
            if seg:
                ok = seg.predicate(g)
                hit_rate = max(float(ok.mean()), 1e-3)
                g = g[ok]
            pool.append(g)
            got += len(g)
            tries += 1
        gen = pd.concat(pool, ignore_index=True).iloc[:want] if pool else pd.DataFrame(columns=schema.gan_columns)
        if len(gen) == 0:
            raise DataValidationError(source, "segment", f"the generator produced no rows in segment {cfg.segment!r}")
        # Round trip through the user_features schema so the gate sees exactly what gets materialized.
        feats = unflatten(gen, schema)
        gen_flat, _ = flatten(feats.assign(label=0), cfg.k_recent, cfg.k_attr)
        gen_flat["item_tier"] = gen_flat["item_id"].map(schema.item_tier).fillna("tail")
        labels, conf = labeler.predict(gen_flat)
        sample_seconds += time.perf_counter() - t0

        synth_flat = gen_flat.assign(label=labels)
        confident = conf >= labeler.config.threshold
        confident = _match_label_prior(labels, conf, confident, y, rng)
        gate = evaluate(ref_fit[cols].reset_index(drop=True), ref_hold[cols].reset_index(drop=True),
                        synth_flat[cols], discrete, gcfg_gate, accepted_extra=confident)
        n_keep = int(gate.keep.sum())
        if attempt == 1 or n_keep >= n_rows or n_keep == 0:
            break
        # Row filters took more than the oversampling covered: one more, larger round, re-gated whole.
        want = int(math.ceil(want * min(4.0, 1.15 * n_rows / n_keep)))

    keep_idx = np.flatnonzero(gate.keep)[:n_rows]
    acc = feats.iloc[keep_idx].reset_index(drop=True)
    acc.insert(0, "user_id", np.arange(cfg.user_id_start, cfg.user_id_start + len(acc), dtype=np.int64))
    if "event_timestamp" in df.columns and len(acc):
        ts = pd.to_datetime(df["event_timestamp"], utc=True).to_numpy()
        acc["event_timestamp"] = pd.to_datetime(rng.choice(ts, len(acc)), utc=True)
    else:
        acc["event_timestamp"] = pd.Timestamp.now(tz="UTC").floor("s")
    acc["label"] = labels[keep_idx].astype(np.int64)
    acc["confidence"] = conf[keep_idx].astype(np.float32)
    acc["is_synthetic"] = True
    acc["run_id"] = cfg.run_id
    acc["generator_version"] = GENERATOR_VERSION

    gm = gate.metrics
    real_pos = float((y == 1).mean())
    metrics: dict[str, Any] = {
        "rows_generated": int(len(gen)),
        "rows_accepted": int(len(acc)),
        "gate": gate.gate,
        "gate_reasons": gate.reasons,
        "c2st_auc": gm.get("c2st_auc"),
        "column_shapes": gm.get("column_shapes"),
        "pair_trends": gm.get("pair_trends"),
        "column_shapes_per_column": gm.get("column_shapes_per_column"),
        "privacy_dropped": gm.get("privacy_dropped"),
        "privacy_dropped_share": gm.get("privacy_dropped_share"),
        "exact_copies": gm.get("exact_copies"),
        "outliers": gm.get("outliers"),
        "dcr_threshold": gm.get("dcr_threshold"),
        "low_confidence_dropped": int((conf < labeler.config.threshold).sum()),
        "label_prior_dropped": int(((conf >= labeler.config.threshold) & ~confident).sum()),
        "label_agreement": labeler.report.get("agreement"),
        "labeler": labeler.report,
        "label_positive_share_real": round(real_pos, 4),
        "label_positive_share_synthetic": round(float((acc["label"] == 1).mean()), 4) if len(acc) else None,
        "segment": cfg.segment,
        "segment_hit_rate": round(hit_rate, 4) if seg else None,
        "fit_rows": int(len(fit_idx)),
        "fit_seconds": round(fit_seconds, 2),
        "gan_fit_seconds": round(gan.fit_seconds, 2),
        "gan_best_step": gan.best_step,
        "gan_history": gan.history,
        "sample_seconds": round(sample_seconds, 2),
        "total_seconds": round(time.perf_counter() - t_start, 2),
        "seed": seed,
    }
    synth_flat = synth_flat.assign(confidence=conf, keep=gate.keep)
    return AugmentResult(acc, metrics, gate.passed, gan, labeler, schema, real[cols + ["user_tier", "item_tier"]], synth_flat)


def _match_label_prior(labels: np.ndarray, conf: np.ndarray, keep: np.ndarray, y_real: np.ndarray,
                       rng: np.random.Generator) -> np.ndarray:
    """Label-bias guard: argmax + a confidence threshold over-represents the class the labeler is
    sure about. Drop the least confident rows of over-represented classes until the accepted label
    shares match the real ones (never adds rows)."""
    keep = keep.copy()
    classes, counts = np.unique(y_real, return_counts=True)
    prior = counts / counts.sum()
    kept = np.array([(keep & (labels == c)).sum() for c in classes], float)
    if kept.sum() == 0:
        return keep
    # Largest total that fits every class at the real prior.
    total = np.min(np.where(prior > 0, kept / np.maximum(prior, 1e-12), np.inf))
    for c, p in zip(classes, prior):
        idx = np.flatnonzero(keep & (labels == c))
        target = int(round(total * p))
        if len(idx) > target:
            drop = idx[np.argsort(conf[idx], kind="stable")[: len(idx) - target]]
            keep[drop] = False
    return keep


def examples_from_parquet(feast_dir: str | None = None) -> pd.DataFrame:
    """Real training examples straight from the Feast parquet sources written by ``ecaug ingest``:
    ``train_interactions`` joined with the ``user_features`` row at the same event time (the feature
    builder writes one row per training event time, so this equals Feast's point-in-time join).
    For tests and benchmarks; ``ecaug augment`` goes through Feast itself."""
    d = Path(feast_dir) if feast_dir else feast_data_dir()
    ti, uf = d / "train_interactions.parquet", d / "user_features.parquet"
    for p in (ti, uf):
        if not p.exists():
            raise DataValidationError(p, None, "missing: run `ecaug ingest` first")
    inter = pd.read_parquet(ti)
    feats = pd.read_parquet(uf)
    out = inter.merge(feats, on=["user_id", "event_timestamp"], how="left", validate="many_to_one")
    return out
