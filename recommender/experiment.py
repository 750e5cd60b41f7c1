"""The before/after study: does training on augmented data beat real-only on real held-out data?

For every history fraction f (each user's most recent share of training events) and seed s:

1. features are rebuilt from the truncated history only (``recommender.data.build_in_memory``);
2. ``popularity`` and ``real_only`` (two-tower trained from scratch, early stopping on validation)
   are fitted;
3. bag model: each augmentation method builds a pool of extra positives from the *truncated*
   training examples: ``column_gan`` (GAN + labeler + gates, ``ecaug_feast.synth.pipeline.augment_frame``),
   ``oversample`` (copies of sparse users' rows), ``smote`` (SMOTE-style interpolation of flattened
   example rows, ``ecaug_feast.synth.smote``); for every candidate mix ratio r the real-only
   checkpoint is fine-tuned on real + r x |real| pool rows; the ratio (0 = keep the real-only model)
   is chosen on validation NDCG@10 only;
4. the chosen model of each method is scored on the test split once.

Sequence model (``model_type="sequence"``): ``real_only`` is trained from scratch on the truncated
training histories; ``seq_ops`` (crop/mask/reorder/insert, ``ecaug_feast.synth.seq_ops``),
``pseudo_prior`` (ASReP-style reversed transformer, MLE only) and ``gan_augmented`` (the sequence
GAN + segment labeler + gates, ``ecaug_feast.synth.seq_pipeline``) each build extra histories from
the truncated TRAINING histories only; for every size in ``seq_ratios`` (augmented histories per
real history) the real-only model is fine-tuned on real + augmented histories
(``train_seq(..., init_state=real_only, histories=...)``); size 0 (keep real-only) is a candidate and
the choice is made on validation NDCG@10 only; the test split is scored once.

Cells (f, s) are independent and run in ``workers`` processes. Output: ``results.json``,
``table.md``, ``report.md``, ``ndcg_vs_fraction.png`` under the output directory.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ecaug_feast.errors import EcaugError

log = logging.getLogger(__name__)

METHODS = ["popularity", "real_only", "seq_ops", "pseudo_prior", "gan_augmented", "column_gan", "oversample", "smote"]
AUG_METHODS = ["column_gan", "oversample", "smote"]  # bag model: extra feature rows
SEQ_AUG_METHODS = ["seq_ops", "pseudo_prior", "gan_augmented"]  # sequence model: extra histories
# What each model can be studied with: the column methods make feature rows, which only the bag
# model reads; the sequence methods make histories, which only the sequence model reads.
MODEL_METHODS = {"bag": ["popularity", "real_only", *AUG_METHODS], "sequence": ["popularity", "real_only", *SEQ_AUG_METHODS]}
METRICS = ["recall@10", "ndcg@10", "recall@20", "ndcg@20", "coverage@10"]


@dataclass
class ExperimentConfig:
    dataset: str = "beauty"
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0])
    seeds: int = 3
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    ratios: list[float] = field(default_factory=lambda: [0.25, 0.5])  # 0 is always a candidate
    pool_cap: int = 20_000  # at most this many pool rows; a mix never duplicates pool rows
    max_users: int | None = None  # subsample users (quick preset)
    valid_users: int | None = 8000  # validation users used for early stopping / ratio choice (speed)
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig for real-only
    finetune: dict[str, Any] = field(default_factory=dict)  # TrainConfig for fine-tunes
    finetune_mode: str = "full"
    gan: dict[str, Any] = field(default_factory=dict)  # GANConfig overrides
    workers: int = 2
    model_type: str = "sequence"  # sequence (self-attention user tower) | bag (mean-of-bags two-tower)
    seq_model: dict[str, Any] = field(default_factory=dict)  # SeqConfig overrides
    seq_train: dict[str, Any] = field(default_factory=dict)  # SeqTrainConfig overrides
    seq_finetune: dict[str, Any] = field(default_factory=dict)  # SeqTrainConfig overrides for fine-tunes
    seq_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0])  # augmented histories per real one
    seq_gan: dict[str, Any] = field(default_factory=dict)  # SeqGANConfig overrides (pseudo_prior, gan_augmented)
    seq_aug: dict[str, Any] = field(default_factory=dict)  # SeqAugmentConfig scalar overrides

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# Budgets sized for 2 shared CPU cores: the full preset on Beauty was designed to finish in < 30 min.
PRESETS: dict[str, dict[str, Any]] = {
    "full": dict(
        fractions=[0.1, 0.25, 1.0],
        seeds=3,
        ratios=[0.5],
        model=dict(embedding_dim=64, hidden_dim=256, out_dim=64, temperature=0.1, dropout=0.3),
        train=dict(epochs=8, patience=2, batch_size=1024, lr_sparse=0.04, lr_dense=2e-3),
        finetune=dict(epochs=2, patience=1, batch_size=1024, lr_sparse=0.02, lr_dense=1e-3),
        gan=dict(max_steps=500, eval_every=100, patience=3),
        seq_model=dict(),  # SeqConfig defaults: d=64, 2 blocks, 1 head, dropout 0.5, max_len 50
        seq_train=dict(epochs=60, patience=5, batch_size=128, lr=1e-3, threads=1),
        seq_finetune=dict(epochs=20, patience=3),
        seq_gan=dict(threads=1),
    ),
    "quick": dict(
        fractions=[0.25, 1.0],
        seeds=3,
        max_users=1500,
        ratios=[0.5],
        pool_cap=3000,
        model=dict(embedding_dim=16, hidden_dim=32, out_dim=16, temperature=0.1, dropout=0.1, user_buckets=4096),
        train=dict(epochs=3, patience=1, batch_size=256, lr_sparse=0.05, lr_dense=2e-3),
        finetune=dict(epochs=1, patience=1, batch_size=256, lr_sparse=0.02, lr_dense=1e-3),
        gan=dict(max_steps=60, eval_every=30, patience=2, batch_size=200, eval_rows=500, calib_rows=2000),
        seq_model=dict(embedding_dim=16, num_blocks=1, max_len=20, dropout=0.2),
        seq_train=dict(epochs=3, patience=1, batch_size=64, lr=2e-3, threads=1),
        seq_finetune=dict(epochs=2, patience=1),
        seq_ratios=[0.5],
        seq_gan=dict(embedding_dim=32, num_layers=1, mle_epochs=3, adv_steps=10, adv_batch=64, threads=1),
    ),
}


def make_config(preset: str = "full", **overrides: Any) -> ExperimentConfig:
    if preset not in PRESETS:
        raise EcaugError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    base = dict(PRESETS[preset])
    base.update({k: v for k, v in overrides.items() if v is not None})
    kind = base.get("model_type", "sequence")
    if kind not in MODEL_METHODS:
        raise EcaugError(f"--model must be one of {', '.join(MODEL_METHODS)}, got {kind!r}")
    allowed = MODEL_METHODS[kind]
    base.setdefault("methods", list(allowed))
    unknown = [m for m in base["methods"] if m not in METHODS]
    if unknown:
        raise EcaugError(f"unknown method(s) {unknown} (choose from {', '.join(METHODS)})")
    other = [m for m in base["methods"] if m not in allowed]
    if other:
        need = "bag" if kind == "sequence" else "sequence"
        what = "feature rows, which the sequence model" if kind == "sequence" else "histories, which the bag model"
        raise EcaugError(f"method(s) {', '.join(other)} need --model {need}: they generate {what} does not read "
                         f"(it can be studied with {', '.join(allowed)})")
    for f in base.get("fractions", []):
        if not 0 < float(f) <= 1:
            raise EcaugError(f"fractions must lie in (0, 1], got {f}")
    if int(base.get("seeds", 3)) < 1:
        raise EcaugError("seeds must be >= 1")
    return ExperimentConfig(**base)


# ----------------------------------------------------------------------------------------------
# one cell: (fraction, seed)


def _load_split(cfg: ExperimentConfig):
    from ecaug_feast.datasets import load_dataset
    from ecaug_feast.features.split import split_interactions

    ds = load_dataset(cfg.dataset)
    sp = split_interactions(ds)
    if cfg.max_users:
        users = np.sort(sp.train["user_id"].unique())
        keep = np.random.default_rng(12345).choice(users, size=min(cfg.max_users, len(users)), replace=False)
        sp.train, sp.valid, sp.test = (df[df["user_id"].isin(keep)].reset_index(drop=True) for df in (sp.train, sp.valid, sp.test))
    return ds, sp


def _pool(method: str, data, size: int, seed: int, cfg: ExperimentConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Extra positives for ``method`` (example columns) and facts about how they were made."""
    from recommender.baselines import oversample_pool
    from recommender.data import complete_synthetic, labelled_examples

    t0 = time.time()
    if method == "oversample":
        return oversample_pool(data.examples, size, seed), {"seconds": round(time.time() - t0, 2)}
    if method == "column_gan":
        from ecaug_feast.synth.gan import GANConfig
        from ecaug_feast.synth.pipeline import AugmentConfig, augment_frame

        lab = labelled_examples(data.examples, data.num_items, seed)
        # only rows the labeler marks positive become training positives (often a small share)
        acfg = AugmentConfig(gan=GANConfig(**cfg.gan), max_fit_rows=min(30_000, len(lab)), holdout_rows=min(2000, len(lab) // 5))
        res = augment_frame(lab, n_rows=size, seed=seed, config=acfg, source=f"{cfg.dataset} examples")
        pos = complete_synthetic(res.accepted, data)
        m = res.metrics
        info = {k: m.get(k) for k in ("rows_generated", "rows_accepted", "gate", "c2st_auc", "privacy_dropped_share", "fit_seconds", "total_seconds")}
        info.update(gate_passed=bool(res.gate_passed), positives=int(len(pos)), seconds=round(time.time() - t0, 2))
        return pos, info
    if method == "smote":
        from ecaug_feast.synth.examples import flatten, unflatten
        from ecaug_feast.synth.smote import SmoteSynthesizer

        real = data.examples[~data.examples["is_synthetic"].astype(bool)]
        flat, schema = flatten(real.assign(label=1))
        sm = SmoteSynthesizer(seed=seed, max_rows=30_000).fit(flat[schema.gan_columns], schema.discrete_columns)
        gen = sm.sample(size, seed=seed)
        feats = unflatten(gen, schema)
        rng = np.random.default_rng(seed)
        feats["event_timestamp"] = rng.choice(real["event_timestamp"].to_numpy(), len(feats))
        pos = complete_synthetic(feats, data)
        return pos, {"positives": int(len(pos)), "seconds": round(time.time() - t0, 2)}
    raise EcaugError(f"unknown augmentation method {method!r}")


def run_cell(cfg: ExperimentConfig, fraction: float, seed: int) -> list[dict[str, Any]]:
    """All methods for one (fraction, seed); returns one row per method with valid/test metrics."""
    import torch

    from recommender.baselines import popularity_scorer
    from recommender.data import build_in_memory, mix_examples, truncate_history
    from recommender.evaluate import evaluate, make_eval_set
    from recommender.train import TrainConfig, evaluate_model, model_config_for, train

    torch.set_num_threads(1)
    t_cell = time.time()
    ds, sp = _load_split(cfg)
    tr = truncate_history(sp.train, fraction)
    data = build_in_memory(tr, ds.items, sp.valid)
    # exclusions use the full training split so every fraction ranks the same candidate set
    vdf = sp.valid
    if cfg.valid_users and vdf["user_id"].nunique() > cfg.valid_users:
        # a fixed (seed-independent) sample, so every method is selected on the same users
        vu = np.random.default_rng(777).choice(np.sort(vdf["user_id"].unique()), cfg.valid_users, replace=False)
        vdf = vdf[vdf["user_id"].isin(vu)]
    valid = make_eval_set(vdf, [sp.train])
    test = make_eval_set(sp.test, [sp.train, sp.valid])
    n_items = data.num_items
    rows: list[dict[str, Any]] = []
    base = {"fraction": fraction, "seed": seed, "train_examples": int(len(data.examples))}

    if "popularity" in cfg.methods:
        sc = popularity_scorer(data.train, n_items)
        rows.append({**base, "method": "popularity", "ratio": 0.0,
                     "valid": evaluate(sc, valid, n_items, seed=seed), "test": evaluate(sc, test, n_items, seed=seed)})

    need_real = any(m in cfg.methods for m in ["real_only", *AUG_METHODS, *SEQ_AUG_METHODS])
    if not need_real:
        return rows
    if cfg.model_type == "sequence":
        return rows + _sequence_rows(cfg, data, valid, test, base, seed, t_cell)
    mcfg = model_config_for(data, **cfg.model)
    t0 = time.time()
    real = train(data, valid, mcfg, TrainConfig(seed=seed, **cfg.train))
    real_valid = evaluate_model(real.model, data, valid, "valid", seed=seed)
    real_s = time.time() - t0
    real_test = None
    if "real_only" in cfg.methods:
        real_test = evaluate_model(real.model, data, test, "test", seed=seed)
        rows.append({**base, "method": "real_only", "ratio": 0.0, "valid": real_valid, "test": real_test,
                     "epochs": real.best_epoch, "seconds": round(real_s, 1), "examples_per_s": round(real.examples_per_s)})

    ft_cfg = TrainConfig(seed=seed, finetune_mode=cfg.finetune_mode, **cfg.finetune)
    n_real = len(data.examples)
    for method in [m for m in AUG_METHODS if m in cfg.methods]:
        t0 = time.time()
        size = int(min(cfg.pool_cap, math.ceil(max(cfg.ratios) * n_real)))
        try:
            pool, pinfo = _pool(method, data, size, seed, cfg)
        except Exception as exc:  # a generator failing on some data must not sink the other cells
            log.warning("pool %s failed at fraction=%s seed=%s: %s", method, fraction, seed, exc)
            pool, pinfo = data.examples.iloc[:0], {"error": f"{type(exc).__name__}: {exc}"[:300]}
        best = {"ratio": 0.0, "valid": real_valid, "model": real.model, "epochs": 0}
        tried = [{"ratio": 0.0, "ndcg@10": real_valid["ndcg@10"]}]
        for r in cfg.ratios:
            if len(pool) == 0:
                break
            mixed = replace(data, examples=mix_examples(data.examples, pool, r, seed))
            ft = train(mixed, valid, mcfg, ft_cfg, init_state=real.state)
            v = evaluate_model(ft.model, data, valid, "valid", seed=seed)
            n_syn = int(mixed.examples["is_synthetic"].sum())
            tried.append({"ratio": r, "effective_ratio": round(n_syn / n_real, 4), "ndcg@10": v["ndcg@10"], "epochs": ft.best_epoch})
            if v["ndcg@10"] > best["valid"]["ndcg@10"]:
                best = {"ratio": r, "valid": v, "model": ft.model, "epochs": ft.best_epoch}
        # the test split is scored once, for the configuration chosen on validation
        tst = real_test if best["ratio"] == 0.0 and real_test is not None else evaluate_model(best["model"], data, test, "test", seed=seed)
        rows.append({**base, "method": method, "ratio": best["ratio"], "valid": best["valid"], "test": tst,
                     "tried": tried, "pool": {**pinfo, "rows": int(len(pool))}, "seconds": round(time.time() - t0, 1)})
    log.info("cell fraction=%s seed=%s done in %.0fs", fraction, seed, time.time() - t_cell)
    for r in rows:
        r["cell_seconds"] = round(time.time() - t_cell, 1)
    return rows


def _seq_pool(method: str, data, hist, scfg, seed: int, cfg: ExperimentConfig) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Extra training histories for ``method``, made from the truncated TRAINING histories ``hist``
    only (``histories_for(data, cfg, "valid")``: serving rows before any validation event)."""
    from ecaug_feast.synth.seq_gan import SeqGANConfig, SequenceGAN, pseudo_prior_config
    from ecaug_feast.synth.seq_ops import SeqOps, SeqOpsConfig, csr_rows

    t0 = time.time()
    gan_over = {"max_len": scfg.max_len, "seed": seed, **cfg.seq_gan}
    if method == "seq_ops":
        v, o, _ = SeqOps(SeqOpsConfig(copies=2, seed=seed)).fit(hist.values, hist.offsets).sample(max_len=scfg.max_len)
        return csr_rows(v, o), {"seconds": round(time.time() - t0, 2)}
    if method == "pseudo_prior":
        # ASReP: pseudo-prior items prepended to short histories by a reversed transformer (MLE only)
        aug = {k: v for k, v in cfg.seq_aug.items() if k in ("expand_below", "n_new")}
        below, n_new = aug.get("expand_below", 8), aug.get("n_new", 10)
        g = SequenceGAN(pseudo_prior_config(**gan_over)).fit(hist.values, hist.offsets)
        short = np.flatnonzero((hist.lengths >= 1) & (hist.lengths < below))
        out = g.expand(hist.values, hist.offsets, short, n_new, seed=seed)
        return out, {"seconds": round(time.time() - t0, 2), "expanded": int(len(short)), "generator_nll": g.report.get("nll_mle")}
    if method == "gan_augmented":
        from ecaug_feast.synth.seq_pipeline import SeqAugmentConfig, augment_histories, feature_c2st, feature_rows

        acfg = SeqAugmentConfig(gan=SeqGANConfig(**{"reverse": True, "adversarial": True, **gan_over}), seed=seed,
                                **{k: v for k, v in cfg.seq_aug.items() if k in ("expand_below", "n_new", "synthetic_share", "sparse_share")})
        res = augment_histories(hist.values, hist.offsets, acfg)
        m = res.metrics
        info = {k: m.get(k) for k in ("generated", "expanded", "synthetic", "accepted", "dropped_low_confidence", "dropped_off_segment",
                                      "dropped_privacy", "gate", "c2st_auc_sequences", "catalogue_coverage", "tail_share", "real_tail_share",
                                      "exact_copy_share", "near_copy_share", "trigram_copy_share", "fit_seconds", "generate_seconds")}
        info["labeler_agreement"] = m["labeler"].get("agreement")
        info["adversarial"] = m["generator"].get("adversarial")
        info["generator_nll"] = {"mle": m["generator"].get("nll_mle"), "after_adversarial": m["generator"].get("nll_after_adversarial")}
        if res.histories:  # features follow behaviour: the real builder on the generated histories
            attrs = dict(zip(data.items["item_id"].astype(int), data.items["attributes"]))
            end = np.full(len(res.histories), int(pd.Timestamp(data.train["event_timestamp"].max()).value))
            fr = feature_rows(res.histories, end, data.train, attrs, seed=seed)
            from ecaug_feast.features.build import build_user_features

            auc = feature_c2st(fr, build_user_features(data.train, attrs), seed=seed)
            info["c2st_auc_features"] = round(auc, 4) if auc == auc else None
        info["seconds"] = round(time.time() - t0, 2)
        return res.histories, info
    raise EcaugError(f"unknown sequence augmentation method {method!r}")


def combine_histories(hist, extra: list[np.ndarray], max_len: int):
    """Real histories + extra ones (newest ``max_len`` each) under synthetic user ids."""
    from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE
    from ecaug_feast.synth.seq_ops import rows_to_csr
    from recommender.seq_model import Histories

    v, o = rows_to_csr([np.asarray(h, np.int64)[-max_len:] for h in extra])
    ids = SYNTHETIC_USER_ID_BASE + np.arange(len(extra), dtype=np.int64)
    return Histories(np.concatenate([hist.user_ids, ids]), np.concatenate([hist.values, v]),
                     np.concatenate([hist.offsets, hist.offsets[-1] + o[1:]]).astype(np.int64))


def _sequence_rows(cfg: ExperimentConfig, data, valid, test, base: dict[str, Any], seed: int, t_cell: float) -> list[dict[str, Any]]:
    """``real_only`` with the sequence model (trained from scratch on the truncated histories), then
    each history augmentation: real-only fine-tuned on real + augmented histories, size chosen on
    validation (0 = keep real-only), test scored once."""
    from recommender.seq_train import SeqTrainConfig, evaluate_seq, histories_for, seq_config_for, train_seq

    t0 = time.time()
    scfg = seq_config_for(data, **cfg.seq_model)
    res = train_seq(data, valid, scfg, SeqTrainConfig(seed=seed, **cfg.seq_train))
    real_valid = evaluate_seq(res.model, data, valid, "valid", seed=seed)
    real_test = evaluate_seq(res.model, data, test, "test", seed=seed, buckets=True)
    rows = []
    if "real_only" in cfg.methods:
        rows.append({**base, "method": "real_only", "model": "sequence", "ratio": 0.0, "valid": real_valid, "test": real_test,
                     "epochs": res.best_epoch, "seconds": round(time.time() - t0, 1), "examples_per_s": round(res.examples_per_s)})
    hist = histories_for(data, scfg, "valid")  # training events only
    n_real = int((hist.lengths >= 1).sum())
    ft = SeqTrainConfig(seed=seed, **{**cfg.seq_train, **cfg.seq_finetune})
    for method in [m for m in SEQ_AUG_METHODS if m in cfg.methods]:
        t0 = time.time()
        try:
            pool, pinfo = _seq_pool(method, data, hist, scfg, seed, cfg)
        except Exception as exc:  # a generator failing on some data must not sink the other cells
            log.warning("pool %s failed at fraction=%s seed=%s: %s", method, base["fraction"], seed, exc)
            pool, pinfo = [], {"error": f"{type(exc).__name__}: {exc}"[:300]}
        pool = [h for h in pool if len(h) >= 2]  # a single item has no next item to train on
        best = {"ratio": 0.0, "valid": real_valid, "model": res.model, "epochs": 0}
        tried: list[dict[str, Any]] = [{"ratio": 0.0, "ndcg@10": real_valid["ndcg@10"]}]
        order = np.random.default_rng(seed).permutation(len(pool))
        for r in sorted(cfg.seq_ratios):
            n = min(len(pool), int(math.ceil(r * n_real)))
            if n == 0:
                break
            mixed = combine_histories(hist, [pool[i] for i in order[:n]], scfg.max_len)
            f = train_seq(data, valid, scfg, ft, init_state=res.state, histories=mixed)
            v = evaluate_seq(f.model, data, valid, "valid", seed=seed)
            tried.append({"ratio": r, "histories": n, "ndcg@10": v["ndcg@10"], "epochs": f.best_epoch})
            if v["ndcg@10"] > best["valid"]["ndcg@10"]:
                best = {"ratio": r, "valid": v, "model": f.model, "epochs": f.best_epoch}
            if n == len(pool):
                break
        tst = real_test if best["ratio"] == 0.0 else evaluate_seq(best["model"], data, test, "test", seed=seed, buckets=True)
        rows.append({**base, "method": method, "model": "sequence", "ratio": best["ratio"], "valid": best["valid"], "test": tst,
                     "tried": tried, "pool": {**pinfo, "rows": int(len(pool))}, "seconds": round(time.time() - t0, 1)})
        log.info("cell fraction=%s seed=%s %s: size %s, valid NDCG@10 %.4f, test NDCG@10 %.4f (real-only %.4f)",
                 base["fraction"], seed, method, best["ratio"], best["valid"]["ndcg@10"], tst["ndcg@10"], real_test["ndcg@10"])
    for r in rows:
        r["cell_seconds"] = round(time.time() - t_cell, 1)
    return rows


def _cell_entry(args: tuple[dict[str, Any], float, int]) -> list[dict[str, Any]]:
    cfg_d, fraction, seed = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.getLogger("torchrec").setLevel(logging.ERROR)
    from ecaug_feast.noise import quiet_known_noise

    quiet_known_noise()  # known library noise only; real warnings stay visible
    return run_cell(ExperimentConfig(**cfg_d), fraction, seed)


# ----------------------------------------------------------------------------------------------
# the whole study


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std (over seeds) of the test metrics per (method, fraction)."""
    out = []
    df = pd.DataFrame([{"method": r["method"], "fraction": r["fraction"], "seed": r["seed"], "ratio": r.get("ratio", 0.0),
                        **{m: r["test"][m] for m in METRICS}} for r in rows])
    for (method, fraction), g in df.groupby(["method", "fraction"], sort=False):
        rec: dict[str, Any] = {"method": method, "fraction": float(fraction), "seeds": int(len(g))}
        for m in METRICS:
            rec[m] = float(g[m].mean())
            rec[f"{m}_std"] = float(g[m].std(ddof=1)) if len(g) > 1 else 0.0
        rec["ratios"] = [float(x) for x in g["ratio"]]
        bk = [r["test"]["buckets"] for r in rows if r["method"] == method and r["fraction"] == fraction and "buckets" in r["test"]]
        if bk:  # test NDCG@10 per kept-history-length bucket, mean over seeds
            rec["buckets"] = {b: {"users": bk[0][b]["users"], "ndcg@10": float(np.mean([x[b]["ndcg@10"] for x in bk])),
                                  "recall@10": float(np.mean([x[b]["recall@10"] for x in bk]))} for b in bk[0]}
        out.append(rec)
    order = {m: i for i, m in enumerate(METHODS)}
    return sorted(out, key=lambda r: (r["fraction"], order.get(r["method"], 99)))


def verdict(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's goal, checked literally (relative NDCG@10 changes vs real_only)."""
    by = {(r["method"], r["fraction"]): r for r in results}
    fr = sorted({r["fraction"] for r in results})
    out: dict[str, Any] = {"lift_vs_real_only": {}}
    for f in fr:
        base = by.get(("real_only", f))
        if not base or base["ndcg@10"] <= 0:
            continue
        out["lift_vs_real_only"][str(f)] = {
            m: round(by[(m, f)]["ndcg@10"] / base["ndcg@10"] - 1, 4) for m in [*SEQ_AUG_METHODS, *AUG_METHODS] if (m, f) in by
        }
    low = min(fr, key=lambda x: abs(x - 0.25)) if fr else None
    lifts = out["lift_vs_real_only"]
    # the GAN under test: the sequence GAN where it ran, else the column GAN of the bag model
    gan = "gan_augmented" if any("gan_augmented" in x for x in lifts.values()) else "column_gan"
    if low is not None and str(low) in lifts and gan in lifts[str(low)]:
        g = lifts[str(low)]
        others = [g[m] for m in g if m != gan]
        out["gan_lift_at_low_fraction"] = {"method": gan, "fraction": low, "lift": g[gan], "goal": 0.10,
                                           "met": g[gan] >= 0.10, "beats_naive": g[gan] > max(others, default=-1e9)}
    if 1.0 in fr and "1.0" in lifts and gan in lifts["1.0"]:
        out["gan_cost_at_full"] = {"method": gan, "lift": lifts["1.0"][gan], "goal": -0.01, "met": lifts["1.0"][gan] >= -0.01}
    return out


def run_experiment(cfg: ExperimentConfig, out_dir: str | Path | None = None,
                   progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Run every cell, aggregate, write the report files; returns the JSON summary."""
    from ecaug_feast.paths import state_dir

    t0 = time.time()
    cells = [(float(f), int(s)) for f in cfg.fractions for s in range(cfg.seeds)]
    # biggest cells first so the two workers finish together
    cells.sort(key=lambda c: -c[0])
    rows: list[dict[str, Any]] = []
    cfg_d = cfg.to_json()
    done = 0
    if out_dir is None:
        out_dir = state_dir() / "experiments" / f"{cfg.dataset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out_dir = Path(out_dir)
    check_out_dir(out_dir)  # before hours of work, not after
    # finished cells are appended here as they come, so a long run that is stopped keeps its results
    partial = out_dir.parent / f".{out_dir.name}.partial.jsonl"
    partial.parent.mkdir(parents=True, exist_ok=True)

    def _keep(cell_rows: list[dict[str, Any]]) -> None:
        rows.extend(cell_rows)
        with partial.open("a") as fh:
            for r in cell_rows:
                fh.write(json.dumps(r, default=_jsonable) + "\n")

    if cfg.workers > 1 and len(cells) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=mp.get_context("spawn")) as ex:
            futs = {ex.submit(_cell_entry, (cfg_d, f, s)): (f, s) for f, s in cells}
            for fut in as_completed(futs):
                _keep(fut.result())
                done += 1
                if progress:
                    progress(done, len(cells), f"fraction={futs[fut][0]} seed={futs[fut][1]}")
    else:
        for f, s in cells:
            _keep(_cell_entry((cfg_d, f, s)))
            done += 1
            if progress:
                progress(done, len(cells), f"fraction={f} seed={s}")
    results = aggregate(rows)
    summary = {
        "dataset": cfg.dataset,
        "config": cfg_d,
        "protocol": {
            "split": "per-user leave-last-out (data layer split)",
            "ranking": "full ranking over all items; training items excluded (test: also the validation item)",
            "tie_break": "random",
            "test_touched": "once per (method, fraction, seed), for the configuration chosen on validation",
            "history_fraction": "each user's most recent share of training events, features rebuilt from it",
        },
        "results": results,
        "verdict": verdict(results),
        "runs": rows,
        "seconds": round(time.time() - t0, 1),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    summary["out_dir"] = str(write_outputs(summary, out_dir))
    partial.unlink(missing_ok=True)
    return summary


# ----------------------------------------------------------------------------------------------
# outputs


def table_markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| fraction | method | seeds | Recall@10 | NDCG@10 | Recall@20 | NDCG@20 | coverage@10 | mix ratios |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        cell = lambda m: f"{r[m]:.4f} ± {r[m + '_std']:.4f}"  # noqa: E731
        lines.append(f"| {r['fraction']:g} | {r['method']} | {r['seeds']} | {cell('recall@10')} | {cell('ndcg@10')} | "
                     f"{cell('recall@20')} | {cell('ndcg@20')} | {r['coverage@10']:.3f} | {', '.join(f'{x:g}' for x in r['ratios'])} |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for m in METHODS:
        rs = sorted([r for r in results if r["method"] == m], key=lambda r: r["fraction"])
        if not rs:
            continue
        x = [r["fraction"] for r in rs]
        y = np.array([r["ndcg@10"] for r in rs])
        e = np.array([r["ndcg@10_std"] for r in rs])
        ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=m)
    ax.set_xscale("log")
    ax.set_xticks(sorted({r["fraction"] for r in results}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("fraction of each user's training history (most recent kept)")
    ax.set_ylabel("test NDCG@10 (full ranking, mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report_markdown(summary: dict[str, Any]) -> str:
    cfg = summary["config"]
    v = summary["verdict"]
    out = [f"# ecaug experiment: {summary['dataset']}", "",
           f"Model: `{cfg.get('model_type', 'bag')}`. Fractions {cfg['fractions']}, {cfg['seeds']} seeds, mix ratios {[0.0] + list(cfg['ratios'])} chosen on validation "
           f"NDCG@10; fine-tune mode `{cfg['finetune_mode']}`. Wall time {summary['seconds']:.0f} s.", "",
           "Protocol: " + "; ".join(f"{k}: {x}" for k, x in summary["protocol"].items()) + ".", "",
           "## Test metrics (mean ± std over seeds)", "", table_markdown(summary["results"]),
           "![NDCG@10 vs fraction](ndcg_vs_fraction.png)", "", "## Against the goal", ""]
    for f, lifts in v.get("lift_vs_real_only", {}).items():
        if not lifts:  # no augmentation method at this fraction
            continue
        out.append(f"- fraction {f}: NDCG@10 change vs real-only: " + ", ".join(f"{m} {x:+.1%}" for m, x in lifts.items()))
    if "gan_lift_at_low_fraction" in v:
        g = v["gan_lift_at_low_fraction"]
        out.append(f"- GAN lift at fraction {g['fraction']}: {g['lift']:+.1%} (goal +10%: {'met' if g['met'] else 'not met'}; "
                   f"beats naive augmentation: {'yes' if g['beats_naive'] else 'no'})")
    if "gan_cost_at_full" in v:
        g = v["gan_cost_at_full"]
        out.append(f"- GAN at 100%: {g['lift']:+.1%} (goal: no worse than -1%: {'met' if g['met'] else 'not met'})")
    with_buckets = [r for r in summary["results"] if "buckets" in r]
    if with_buckets:
        names = list(with_buckets[0]["buckets"])
        out += ["", "## Test NDCG@10 by kept training-history length (events per user; mean over seeds)", "",
                "| fraction | method | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for r in with_buckets:
            out.append(f"| {r['fraction']:g} | {r['method']} | " + " | ".join(
                f"{r['buckets'][b]['ndcg@10']:.4f} (n={r['buckets'][b]['users']})" for b in names) + " |")
    pools = [r for r in summary["runs"] if r["method"] == "column_gan"]
    if pools:
        out += ["", "## Column GAN pools", "", "| fraction | seed | rows accepted | gate | C2ST AUC | positives | chosen ratio |", "|---|---|---|---|---|---|---|"]
        for r in sorted(pools, key=lambda r: (r["fraction"], r["seed"])):
            p = r.get("pool", {})
            out.append(f"| {r['fraction']:g} | {r['seed']} | {p.get('rows_accepted', '-')} | {p.get('gate', p.get('error', '-'))} | "
                       f"{p.get('c2st_auc', '-')} | {p.get('positives', '-')} | {r['ratio']:g} |")
    pools = [r for r in summary["runs"] if r["method"] in SEQ_AUG_METHODS]
    if pools:
        out += ["", "## History pools (sequence model)", "",
                "| fraction | seed | method | histories | gate | C2ST histories | C2ST features | coverage | tail share | labeler agreement | fit+gen s | chosen size |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(pools, key=lambda r: (r["fraction"], r["seed"], r["method"])):
            p = r.get("pool", {})
            out.append(f"| {r['fraction']:g} | {r['seed']} | {r['method']} | {p.get('rows', '-')} | {p.get('gate', p.get('error', '-'))} | "
                       f"{p.get('c2st_auc_sequences', '-')} | {p.get('c2st_auc_features', '-')} | {p.get('catalogue_coverage', '-')} | "
                       f"{p.get('tail_share', '-')} | {p.get('labeler_agreement', '-')} | {p.get('seconds', '-')} | {r['ratio']:g} |")
    return "\n".join(out) + "\n"


OUTPUT_FILES = {"results.json", "table.md", "report.md", "ndcg_vs_fraction.png"}


def check_out_dir(out_dir: Path) -> None:
    """``--out`` must be new, empty, or an earlier experiment's output (which is replaced): never
    a folder holding anything else, which the replacement would delete."""
    out_dir = Path(out_dir).expanduser()
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_symlink() or not out_dir.is_dir():
        raise EcaugError(f"{out_dir}: --out exists and is not a folder")
    names = {p.name for p in out_dir.iterdir()}
    if names and not ("results.json" in names and names <= OUTPUT_FILES):
        raise EcaugError(f"{out_dir}: --out holds other files; give a new or empty folder "
                         "(only an earlier experiment's output is replaced)")


def write_outputs(summary: dict[str, Any], out_dir: Path) -> Path:
    """results.json, table.md, report.md and the plot, written to a temp dir then renamed."""
    out_dir = out_dir.expanduser().resolve()
    check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (tmp / "results.json").write_text(json.dumps(summary, indent=2, default=_jsonable))
        (tmp / "table.md").write_text(table_markdown(summary["results"]))
        (tmp / "report.md").write_text(report_markdown(summary))
        plot(summary["results"], tmp / "ndcg_vs_fraction.png")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)
