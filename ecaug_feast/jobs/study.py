"""The before/after study (``ecaug experiment``): does training on augmented data beat real-only
on real held-out data? A job: it reads a dataset ``ecaug ingest`` wrote (any dataset, one brought
in through the column mapping too) and writes a report.

The split is the one ingest recorded in the dataset's ``meta.json`` (per-user leave-last-out or one
temporal cut); the report names it and the processed dataset's path. For every history fraction f
(each user's most recent share of training events) and seed s:

1. features are rebuilt from the truncated history only and read as training examples: through a
   private Feast repo per fraction (``source="feast"``, the default: ingest's feature writer, then
   ``get_historical_features``; ``ecaug_feast.jobs.study_data``) or built in memory
   (``source="memory"``, a shortcut a parity test holds equal row for row). The report names the
   path used. At fraction 1.0 the examples equal what ``ecaug train --source feast`` reads;
2. ``popularity`` and ``real_only`` (trained from scratch, early stopping on validation) are fitted;
3. bag model: each augmentation method (``recommender.study_methods``: ``column_gan``,
   ``oversample``, ``smote``) builds a pool of extra positives from the *truncated* training
   examples; for every candidate mix ratio r the real-only checkpoint is fine-tuned on
   real + r x |real| pool rows; the ratio (0 = keep the real-only model) is chosen on validation
   NDCG@10 only;
4. the chosen model of each method is scored on the test split once.

Sequence model (``model_type="sequence"``): ``real_only`` is trained from scratch on the truncated
training histories; ``seq_ops``, ``pseudo_prior`` and ``gan_augmented`` each build extra histories
from the truncated TRAINING histories only; for every size in ``seq_ratios`` (augmented histories
per real history) the real-only model is fine-tuned on real + augmented histories
(``seq_protocol="finetune"``), or, in ASReP's order (``"pretrain"``), a fresh model is trained on
real + augmented histories and then fine-tuned on the real ones alone; with ``seq_targets="real"``
the generated items are context only, never a next-item target; with ``seq_inference="expanded"``
each model is also validated reading, for every expanded user, its generated earlier items + its
real history (ASReP's evaluation reads the augmented sequences); size 0 (keep real-only, real
histories) is a candidate and the choice is made on validation NDCG@10 only; the test split is
scored once, with the inputs chosen. With ``seq_distill`` (and the recommender as teacher), every
model ``gan_augmented`` trains also learns the teacher's soft next-item distribution, and the
``distilled`` control trains the same way on the real histories alone (one candidate).

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
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from ecaug_feast.errors import EcaugError
from ecaug_feast.jobs.presets import ExperimentConfig
from recommender.study_methods import (AUG_METHODS, METHODS, METRICS, SEQ_AUG_METHODS, SeqPool, column_pool, combine_histories,
                                       expanded_inputs, seq_pool)

if TYPE_CHECKING:
    from ecaug_feast.datasets.store import ProcessedDataset

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# the data: an ingested dataset, its split, one fraction's training examples


def dataset_path(cfg: ExperimentConfig, state_dir: Path) -> Path:
    """``<state>/datasets/<name>``: the processed dataset ``ecaug ingest`` wrote (name checked)."""
    from ecaug_feast.names import owned_child

    return owned_child(Path(state_dir) / "datasets", cfg.dataset, "dataset name")


def load_split(cfg: ExperimentConfig, data_dir: str | Path) -> tuple["ProcessedDataset", pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The processed dataset at ``data_dir`` and its train/valid/test rows (the split ingest
    wrote), restricted to ``cfg.max_users`` users when set."""
    from ecaug_feast.datasets.store import load_processed
    from recommender.study_methods import sample_users

    ds = load_processed(cfg.dataset, path=Path(data_dir))
    return (ds, *sample_users(ds.train, ds.valid, ds.test, cfg.max_users))


def split_protocol(meta: dict[str, Any]) -> str:
    """The split ingest recorded in ``meta.json``, in words."""
    sp = meta.get("split", {})
    kind = sp.get("kind")
    if kind == "leave_last_out":
        return "per-user leave-last-out (each user's last event is test, the one before validation), as ingested"
    if kind == "temporal":
        return (f"temporal: one global time cut, validation from {sp.get('valid_from')}, test from {sp.get('test_from')}, "
                "as ingested")
    return f"{kind} (as ingested)"


def prepare_sources(cfg: ExperimentConfig, data_dir: Path, work_dir: Path) -> dict[float, str]:
    """``source="feast"``: one private Feast repo per fraction under ``work_dir`` (written once,
    read by every seed's cell). Returns ``{fraction: state dir}`` (empty for ``memory``)."""
    if cfg.source != "feast":
        return {}
    from ecaug_feast.jobs.study_data import write_feast_repo
    from recommender.data import truncate_history

    ds, train, _, _ = load_split(cfg, data_dir)
    out = {}
    for f in sorted({float(x) for x in cfg.fractions}):
        state = work_dir / f"fraction-{f:g}"
        write_feast_repo(state, truncate_history(train, f), ds.items, f"{cfg.dataset}-fraction-{f:g}")
        out[f] = str(state)
    return out


# ----------------------------------------------------------------------------------------------
# one cell: (fraction, seed)


def validation_sample(valid: pd.DataFrame, n: int | None) -> pd.DataFrame:
    """The validation rows of at most ``n`` users (None or 0: all): a fixed, seed-independent
    sample, so every method, seed and benchmark is selected on the same users."""
    if not n or valid["user_id"].nunique() <= n:
        return valid
    vu = np.random.default_rng(777).choice(np.sort(valid["user_id"].unique()), n, replace=False)
    return valid[valid["user_id"].isin(vu)]


def cell_data(cfg: ExperimentConfig, fraction: float, data_dir: str | Path,
              feast_state: str | Path | None = None) -> tuple[Any, Any, Any]:
    """``(training data, validation set, test set)`` of one fraction's cells: the training split
    truncated to ``fraction`` (read from ``cfg.source``; ``feast_state`` for ``"feast"``), the
    validation users ``cfg.valid_users`` samples, and the test split. Exclusions use the full
    training split so every fraction ranks the same candidate set."""
    from ecaug_feast.jobs.study_data import train_data
    from recommender.data import truncate_history
    from recommender.evaluate import make_eval_set

    ds, sp_train, sp_valid, sp_test = load_split(cfg, data_dir)
    data = train_data(cfg.source, truncate_history(sp_train, fraction), ds.items, sp_valid, feast_state)
    valid = make_eval_set(validation_sample(sp_valid, cfg.valid_users), [sp_train])
    test = make_eval_set(sp_test, [sp_train, sp_valid])
    return data, valid, test


def run_cell(cfg: ExperimentConfig, fraction: float, seed: int, data_dir: str | Path,
             feast_state: str | Path | None = None) -> list[dict[str, Any]]:
    """All methods for one (fraction, seed); returns one row per method with valid/test metrics.
    ``feast_state``: the fraction's private Feast repo (:func:`prepare_sources`) for ``source="feast"``."""
    import torch

    from recommender.baselines import popularity_scorer
    from recommender.data import mix_examples
    from recommender.evaluate import evaluate
    from recommender.train import TrainConfig, evaluate_model, model_config_for, train

    torch.set_num_threads(1)
    t_cell = time.time()
    data, valid, test = cell_data(cfg, fraction, data_dir, feast_state)
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
            pool, pinfo = column_pool(method, data, size, seed, cfg.gan, source=f"{cfg.dataset} examples")
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


def _sequence_rows(cfg: ExperimentConfig, data, valid, test, base: dict[str, Any], seed: int, t_cell: float) -> list[dict[str, Any]]:
    """``real_only`` with the sequence model (trained from scratch on the truncated histories), then
    each history augmentation: real-only fine-tuned on real + augmented histories, size chosen on
    validation (0 = keep real-only), test scored once."""
    from recommender.seq_train import SeqTrainConfig, evaluate_seq, histories_for, next_item_scorer, seq_config_for, train_seq

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
        teaching = method == "gan_augmented" and cfg.seq_teacher == "recommender"
        # knowledge distillation: the teacher's soft targets in every fine-tune of this method
        dist = cfg.seq_distill if (teaching or method == "distilled") and cfg.seq_distill.get("distill", 0) > 0 else {}
        best = {"ratio": 0.0, "valid": real_valid, "model": res.model, "epochs": 0, "inputs": "real", "round": 0}
        tried: list[dict[str, Any]] = [{"ratio": 0.0, "ndcg@10": real_valid["ndcg@10"]}]
        pools: list[dict[str, Any]] = []  # pool info per round
        inputs: dict[str, dict[str, Any]] = {"real": {"valid": None, "test": None}}
        # rounds > 1 (teacher only): the model validation chose so far teaches the next round
        # (born-again distillation; Furlanello et al., ICML 2018); it stops once real-only is kept
        for rnd in range(1, (max(1, cfg.seq_teacher_rounds) if teaching else 1) + 1):
            if rnd > 1 and best["round"] != rnd - 1:
                break
            kd = best["model"] if dist else None  # the model that teaches this round, soft targets too
            try:
                teacher = next_item_scorer(best["model"]) if teaching else None
                made = (SeqPool([], None, None, {"teacher": True, "seconds": 0.0}) if method == "distilled" else
                        seq_pool(method, data, hist, scfg, seed + 1000 * (rnd - 1), cfg.seq_gan, cfg.seq_aug, teacher=teacher))
            except Exception as exc:  # a generator failing on some data must not sink the other cells
                log.warning("pool %s failed at fraction=%s seed=%s: %s", method, base["fraction"], seed, exc)
                made = SeqPool([], None, None, {"error": f"{type(exc).__name__}: {exc}"[:300]})
            pool, generated, pinfo = made.histories, made.generated, made.info
            # what the user tower reads at evaluation, per candidate: real histories, and with
            # seq_inference="expanded" also each expanded user's expansion (ASReP's evaluation)
            # (only prepended items can be read before a user's history: not a teacher's continuations)
            if cfg.seq_inference == "expanded" and method != "seq_ops" and made.histories and made.info.get("prepended", True):
                inputs["expanded"] = {"valid": expanded_inputs(hist, hist, made, scfg.max_len),
                                      "test": expanded_inputs(histories_for(data, scfg, "test"), hist, made, scfg.max_len)}
                v_exp0 = evaluate_seq(res.model, data, valid, "valid", seed=seed, inputs=inputs["expanded"]["valid"])
            # generated items as context only: which items each history may train on
            gen = generated if cfg.seq_targets == "real" else None
            # a history trains only if some item after its first is a target
            ok = [len(h) >= 2 and (gen is None or not gen[i][1:].all()) for i, h in enumerate(pool)]
            pool = [h for h, k in zip(pool, ok) if k]
            gen = None if gen is None else [g for g, k in zip(gen, ok) if k]
            pools.append({**pinfo, "rows": int(len(pool)), **({"round": rnd} if teaching else {})})
            if "expanded" in inputs:  # real-only's model reading the expansions: one more candidate
                tried.append({"ratio": 0.0, "inputs": "expanded", "ndcg@10": v_exp0["ndcg@10"]})
                if v_exp0["ndcg@10"] > best["valid"]["ndcg@10"]:
                    best = {**best, "valid": v_exp0, "inputs": "expanded"}
            order = np.random.default_rng(seed).permutation(len(pool))
            # distilled: one candidate, the real histories alone (size 0, taught)
            for r in ([0.0] if method == "distilled" else sorted(cfg.seq_ratios)):
                n = min(len(pool), int(math.ceil(r * n_real)))
                if n == 0 and method != "distilled":
                    break
                mixed = hist if method == "distilled" else combine_histories(
                    hist, [pool[i] for i in order[:n]], scfg.max_len, None if gen is None else [gen[i] for i in order[:n]])
                extra: dict[str, Any] = {"round": rnd} if cfg.seq_teacher_rounds > 1 and teaching else {}
                if dist:
                    extra["distill"] = dict(dist)
                if cfg.seq_protocol == "pretrain":  # ASReP: fresh model on the mix, then real histories only
                    pre = train_seq(data, valid, scfg, SeqTrainConfig(seed=seed, **{**cfg.seq_train, **dist}), histories=mixed, teacher=kd)
                    extra["pretrain_epochs"] = pre.best_epoch
                    f = train_seq(data, valid, scfg, replace(ft, **dist), init_state=pre.state, teacher=kd)
                else:
                    f = train_seq(data, valid, scfg, replace(ft, **dist), init_state=res.state, histories=mixed, teacher=kd)
                for how, split_inputs in inputs.items():
                    v = evaluate_seq(f.model, data, valid, "valid", seed=seed, inputs=split_inputs["valid"])
                    tried.append({"ratio": r, "histories": n, "ndcg@10": v["ndcg@10"], "epochs": f.best_epoch, **extra,
                                  **({"inputs": how} if len(inputs) > 1 else {})})
                    if v["ndcg@10"] > best["valid"]["ndcg@10"]:
                        best = {"ratio": r, "valid": v, "model": f.model, "epochs": f.best_epoch, "inputs": how, "round": rnd,
                                "taught": bool(dist)}
                if n == len(pool):
                    break
        chose_real_only = best["model"] is res.model and best["inputs"] == "real"
        tst = real_test if chose_real_only else evaluate_seq(best["model"], data, test, "test", seed=seed, buckets=True,
                                                             inputs=inputs[best["inputs"]]["test"])
        # the pool of the chosen round (round 1's when real-only was kept)
        rows.append({**base, "method": method, "model": "sequence", "ratio": best["ratio"], "valid": best["valid"], "test": tst,
                     "tried": tried, "pool": pools[max(0, best["round"] - 1)], "seconds": round(time.time() - t0, 1),
                     **({"inputs": best["inputs"]} if len(inputs) > 1 else {}),
                     **({"distill": dict(dist), "taught": best.get("taught", False)} if dist else {}),
                     **({"round": best["round"], "pools": pools} if len(pools) > 1 else {})})
        log.info("cell fraction=%s seed=%s %s: size %s, valid NDCG@10 %.4f, test NDCG@10 %.4f (real-only %.4f)",
                 base["fraction"], seed, method, best["ratio"], best["valid"]["ndcg@10"], tst["ndcg@10"], real_test["ndcg@10"])
    for r in rows:
        r["cell_seconds"] = round(time.time() - t_cell, 1)
    return rows


def _cell_entry(args: tuple[dict[str, Any], float, int, str, str | None]) -> list[dict[str, Any]]:
    cfg_d, fraction, seed, data_dir, feast_state = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.getLogger("torchrec").setLevel(logging.ERROR)
    from ecaug_feast.noise import quiet_known_noise

    quiet_known_noise()  # known library noise only; real warnings stay visible
    try:
        return run_cell(ExperimentConfig(**cfg_d), fraction, seed, data_dir, feast_state)
    except ValueError as exc:  # the trainers refuse data smaller than one batch
        if "fewer than one batch" in str(exc):
            raise EcaugError(f"dataset '{cfg_d['dataset']}' at fraction {fraction}: too small for this preset's batch size ({exc})") from None
        raise


# ----------------------------------------------------------------------------------------------
# the whole study


COLD_BUCKET = "<=3"  # users with at most 3 kept training items: the issue reports their lift on its own
_COLD_PARTS = ("1", "2-3")


def cold_bucket(per_seed: list[dict[str, dict[str, float]]]) -> dict[str, float] | None:
    """The ``<=3`` bucket from the ``1`` and ``2-3`` buckets (user-weighted), mean over seeds."""
    if not all(b in per_seed[0] for b in _COLD_PARTS):
        return None
    n = sum(per_seed[0][b]["users"] for b in _COLD_PARTS)
    if n == 0:
        return None
    out: dict[str, float] = {"users": int(n)}
    for m in ("ndcg@10", "recall@10"):
        out[m] = float(np.mean([sum(x[b][m] * x[b]["users"] for b in _COLD_PARTS) / n for x in per_seed]))
    return out


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
            cold = cold_bucket(bk)
            if cold:
                rec["buckets"][COLD_BUCKET] = cold
        rec["ndcg@10_seeds"] = [float(x) for x in g["ndcg@10"]]
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
        a, b = by[(gan, low)], by[("real_only", low)]
        # "more than 2 std apart": the gap between the means against twice the larger seed std
        apart = abs(a["ndcg@10"] - b["ndcg@10"]) > 2 * max(a["ndcg@10_std"], b["ndcg@10_std"]) if a["seeds"] > 1 else False
        out["gan_lift_at_low_fraction"] = {"method": gan, "fraction": low, "lift": g[gan], "goal": 0.10,
                                           "met": g[gan] >= 0.10 and apart, "two_std_apart": bool(apart),
                                           "beats_naive": g[gan] > max(others, default=-1e9)}
    out["cold_lift_vs_real_only"] = {}
    for f in fr:  # users with <= 3 kept training items, on their own
        base = by.get(("real_only", f), {}).get("buckets", {}).get(COLD_BUCKET)
        if not base or base["ndcg@10"] <= 0:
            continue
        out["cold_lift_vs_real_only"][str(f)] = {
            m: round(by[(m, f)]["buckets"][COLD_BUCKET]["ndcg@10"] / base["ndcg@10"] - 1, 4)
            for m in [*SEQ_AUG_METHODS, *AUG_METHODS] if COLD_BUCKET in by.get((m, f), {}).get("buckets", {})}
    if 1.0 in fr and "1.0" in lifts and gan in lifts["1.0"]:
        out["gan_cost_at_full"] = {"method": gan, "lift": lifts["1.0"][gan], "goal": -0.01, "met": lifts["1.0"][gan] >= -0.01}
    return out


EXAMPLE_PATHS = {
    "feast": ("Feast: each fraction's features written by ingest's writer into a private Feast repo (offline store, duckdb); "
              "examples and serving rows read with get_historical_features; test-time user rows (training + validation "
              "events) built in memory"),
    "memory": ("in memory: recommender.data.build_in_memory, the shortcut a parity test holds equal to the Feast path "
               "row for row"),
}


def run_study(ws: Any, cfg: ExperimentConfig, out_dir: str | Path | None = None,
              progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Run every cell on the ingested dataset ``cfg.dataset``, aggregate, write the report files;
    returns the JSON summary. ``ws``: the workspace (its ``state_dir``); None = ``$ECAUG_HOME``."""
    from ecaug_feast.datasets.store import load_processed
    from ecaug_feast.paths import state_dir

    t0 = time.time()
    state = Path(ws.state_dir) if ws is not None else state_dir()
    data_dir = dataset_path(cfg, state)
    cells = [(float(f), int(s)) for f in cfg.fractions for s in range(cfg.seeds)]
    # biggest cells first so the two workers finish together
    cells.sort(key=lambda c: -c[0])
    rows: list[dict[str, Any]] = []
    cfg_d = cfg.to_json()
    done = 0
    if out_dir is None:
        out_dir = state / "experiments" / f"{cfg.dataset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out_dir = Path(out_dir)
    check_out_dir(out_dir)  # before hours of work, not after
    meta = load_processed(cfg.dataset, path=data_dir).meta  # not ingested: a one-line error before any work
    # finished cells are appended here as they come, so a long run that is stopped keeps its results
    partial = out_dir.parent / f".{out_dir.name}.partial.jsonl"
    partial.parent.mkdir(parents=True, exist_ok=True)
    # the private Feast repos (source="feast") live beside the output while the study runs
    work = out_dir.parent / f".{out_dir.name}.feast-{os.getpid()}"

    def _keep(cell_rows: list[dict[str, Any]]) -> None:
        rows.extend(cell_rows)
        with partial.open("a") as fh:
            for r in cell_rows:
                fh.write(json.dumps(r, default=_jsonable) + "\n")

    try:
        repos = prepare_sources(cfg, data_dir, work)
        args = {(f, s): (cfg_d, f, s, str(data_dir), repos.get(f)) for f, s in cells}
        if cfg.workers > 1 and len(cells) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=mp.get_context("spawn")) as ex:
                futs = {ex.submit(_cell_entry, args[c]): c for c in cells}
                for fut in as_completed(futs):
                    _keep(fut.result())
                    done += 1
                    if progress:
                        progress(done, len(cells), f"fraction={futs[fut][0]} seed={futs[fut][1]}")
        else:
            for c in cells:
                _keep(_cell_entry(args[c]))
                done += 1
                if progress:
                    progress(done, len(cells), f"fraction={c[0]} seed={c[1]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = aggregate(rows)
    summary = {
        "dataset": cfg.dataset,
        "config": cfg_d,
        "data": {
            "path": str(data_dir),
            "split": meta.get("split", {}),
            "ingested_at": meta.get("written_at"),
            "example_path": cfg.source,
        },
        "protocol": {
            "split": split_protocol(meta),
            "examples": EXAMPLE_PATHS[cfg.source],
            "ranking": "full ranking over all items; training items excluded (test: also the validation item)",
            "tie_break": "random",
            "test_touched": "once per (method, fraction, seed), for the configuration chosen on validation",
            "history_fraction": "each user's most recent share of training events, features rebuilt from it",
            "augmented_histories": ("sequence model: a fresh model trained on real + augmented histories, then fine-tuned on real alone (ASReP's order)"
                                    if cfg.seq_protocol == "pretrain" else "sequence model: real-only's model fine-tuned on real + augmented histories"),
            "generated_items": ("context only: pseudo_prior and gan_augmented histories train on their real items; whole synthetic users left out"
                                if cfg.seq_targets == "real" else "training targets like real items"),
            "inference_inputs": ("real histories, and (pseudo_prior, gan_augmented) each expanded user's generated earlier items + real history "
                                 "as further candidates (ASReP's evaluation); validation chooses; ranking still excludes only real training items"
                                 if cfg.seq_inference == "expanded" else "real histories"),
            "expansions": ("gan_augmented: continuations drawn from real-only's sequence model (the teacher) under the generator's "
                           "sampling settings, labelled and gated like the generator's"
                           + (f"; up to {cfg.seq_teacher_rounds} rounds, each later one taught by the model validation chose in the round "
                              "before (a new pool, trained the same way; stops when a round is not chosen)" if cfg.seq_teacher_rounds > 1 else "")
                           if cfg.seq_teacher == "recommender"
                           else "gan_augmented: earlier items from the sequence GAN's network"),
            **({"distillation": (f"knowledge distillation, weight {cfg.seq_distill['distill']:g}, temperature "
                                 f"{cfg.seq_distill.get('distill_temperature', 1.0):g}: every model gan_augmented trains also learns the "
                                 "teacher's soft next-item distribution; distilled = the same teaching on the real histories alone")}
               if cfg.seq_distill.get("distill", 0) > 0 else {}),
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
           f"Model: `{cfg.get('model_type', 'bag')}`. Fractions {cfg['fractions']}, {cfg['seeds']} seeds, "
           + (f"augmented histories per real one {[0.0] + list(cfg.get('seq_ratios', []))}" if cfg.get("model_type") == "sequence"
              else f"mix ratios {[0.0] + list(cfg['ratios'])}") + " chosen on validation "
           f"NDCG@10; fine-tune mode `{cfg['finetune_mode']}`. Wall time {summary['seconds']:.0f} s.", "",
           *_data_lines(summary.get("data")),
           "Protocol: " + "; ".join(f"{k}: {x}" for k, x in summary["protocol"].items()) + ".", "",
           "## Test metrics (mean ± std over seeds)", "", table_markdown(summary["results"]),
           "![NDCG@10 vs fraction](ndcg_vs_fraction.png)", "", "## Against the goal", ""]
    for f, lifts in v.get("lift_vs_real_only", {}).items():
        if not lifts:  # no augmentation method at this fraction
            continue
        out.append(f"- fraction {f}: NDCG@10 change vs real-only: " + ", ".join(f"{m} {x:+.1%}" for m, x in lifts.items()))
    if "gan_lift_at_low_fraction" in v:
        g = v["gan_lift_at_low_fraction"]
        out.append(f"- GAN lift at fraction {g['fraction']}: {g['lift']:+.1%} (goal +10% and more than 2 std apart: "
                   f"{'met' if g['met'] else 'not met'}; 2 std apart: {'yes' if g.get('two_std_apart') else 'no'}; "
                   f"beats the other augmentations: {'yes' if g['beats_naive'] else 'no'})")
    for f, lifts in v.get("cold_lift_vs_real_only", {}).items():
        if lifts:
            out.append(f"- fraction {f}, users with <= 3 kept training items: NDCG@10 change vs real-only: "
                       + ", ".join(f"{m} {x:+.1%}" for m, x in lifts.items()))
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
    pools = [r for r in summary["runs"] if r["method"] in SEQ_AUG_METHODS and r["method"] != "distilled"]  # distilled: no pool
    if pools:
        out += ["", "## History pools (sequence model)", "",
                "| fraction | seed | method | histories | gate | C2ST histories | C2ST features | coverage | tail share | labeler agreement | fit+gen s | chosen size |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(pools, key=lambda r: (r["fraction"], r["seed"], r["method"])):
            for p in r.get("pools") or [r.get("pool", {})]:  # teacher rounds: one line per round
                how = f"{r['method']} (round {p['round']})" if "pools" in r else r["method"]
                size = _chosen_size(r, p)
                out.append(f"| {r['fraction']:g} | {r['seed']} | {how} | {p.get('rows', '-')} | {p.get('gate', p.get('error', '-'))} | "
                           f"{p.get('c2st_auc_sequences', '-')} | {p.get('c2st_auc_features', '-')} | {p.get('catalogue_coverage', '-')} | "
                           f"{p.get('tail_share', '-')} | {p.get('labeler_agreement', '-')} | {p.get('seconds', '-')} | {size} |")
    tried = [r for r in summary["runs"] if r.get("model") == "sequence" and r.get("tried")]
    if tried:  # what validation saw: every candidate of every augmented run, the chosen one in bold
        out += ["", "## Candidates on validation (NDCG@10; size 0 with real histories = real-only)", "",
                "| fraction | seed | method | candidates (size, inputs: NDCG@10) |", "|---|---|---|---|"]
        for r in sorted(tried, key=lambda r: (r["fraction"], r["seed"], r["method"])):
            chosen = (r["ratio"], r.get("inputs", "real"), r.get("round") if r["ratio"] else None, bool(r.get("taught")))

            def label(t: dict[str, Any]) -> str:
                return (f"{t['ratio']:g}, {t.get('inputs', 'real')}" + (f", round {t['round']}" if "round" in t else "")
                        + (", taught" if "distill" in t else ""))

            cells = [(f"**{label(t)}: {t['ndcg@10']:.4f}**"
                      if (t["ratio"], t.get("inputs", "real"), t.get("round") if t["ratio"] else None, "distill" in t) == chosen
                      else f"{label(t)}: {t['ndcg@10']:.4f}") for t in r["tried"]]
            out.append(f"| {r['fraction']:g} | {r['seed']} | {r['method']} | {'; '.join(cells)} |")
    return "\n".join(out) + "\n"


def _chosen_size(run: dict[str, Any], pool: dict[str, Any]) -> str:
    """The report's "chosen size" of one pool line: the run's chosen ratio, except on the lines of
    a teacher-rounds run (``run["pools"]``) for a round other than the chosen one: "-"."""
    if "pools" not in run or pool.get("round", 0) in (0, run.get("round", 0)):
        return f"{run['ratio']:g}"
    return "-"


def _data_lines(data: dict[str, Any] | None) -> list[str]:
    """The report's statement of the data it read: path, split and example path."""
    if not data:
        return []
    sp = data.get("split", {})
    counts = ", ".join(f"{k} {sp[k]:,}" for k in ("train", "valid", "test") if k in sp)
    return [f"Data: `{data['path']}` (ingested {data.get('ingested_at')}); split `{sp.get('kind')}` ({counts}); "
            f"training examples read through **{data['example_path']}**.", ""]


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
