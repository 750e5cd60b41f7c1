"""One study cell, (fraction, seed), through the product's jobs in a private workspace.

1. a private state dir (``jobs.study_data``): the dataset with each user's most recent
   ``fraction`` of training events as its training split, the ``stop`` half of the validation
   users as its validation split and the ``choose`` half as its test split, and its Feast sources
   written by ingest's writer (``source feast``);
2. ``jobs.train.train_real``: the real-only model, early stopping on ``stop``;
3. per method (``study.registry``): ``real_twice`` runs ``jobs.finetune`` (pre-train -> fine-tune on
   the real histories); a pool method runs ``jobs.augment_seq.augment_seq_run`` (``method=`` its
   pool, the real-only checkpoint as teacher where the method says) and then ``jobs.finetune`` on
   its run. For every candidate (``expansions``) the job's "test" figure is the ``choose`` half:
   the choice is made there;
4. the chosen model of each method is scored once: on the real test split (training and
   validation items excluded; the user tower reads the kept training events + the validation
   event), or, in a screen, on the ``choose`` half only. Per-user arrays go to the report.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch

from ecaug_feast.datasets.store import load_processed
from ecaug_feast.jobs.augment_seq import augment_seq_run, seq_config
from ecaug_feast.jobs.finetune import finetune
from ecaug_feast.jobs.study_data import state_home, write_private_state
from ecaug_feast.jobs.train import train_real
from ecaug_feast.jobs.train_data import build_in_memory
from ecaug_feast.jobs.workspace import Workspace
from ecaug_feast.study import bag
from ecaug_feast.study.cold import run_cold_cell
from ecaug_feast.study.protocol import Protocol, validation_halves
from ecaug_feast.study.registry import Method, methods_for
from recommender.baselines import popularity_scorer
from recommender.checkpoint import load_checkpoint
from recommender.data import truncate_history
from recommender.evaluate import evaluate, make_eval_set
from recommender.seq_train import seq_scorer

log = logging.getLogger(__name__)

USER_SAMPLE_SEED = 12345  # the user subsample is the same for every fraction, seed and method
PER_USER = ("ndcg@10", "recall@10")
MIX_ALL = 1e9  # mix ratio that takes a whole run (the pool is already size-matched)


def sample_users(train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame, max_users: int | None
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three splits restricted to ``max_users`` users drawn with a fixed seed (unchanged when
    ``max_users`` is None or not smaller than the number of users)."""
    users = np.unique(np.concatenate([df["user_id"].to_numpy(np.int64) for df in (train, valid, test)]))
    if not max_users or max_users >= len(users):
        return train, valid, test
    keep = np.random.default_rng(USER_SAMPLE_SEED).choice(users, size=max_users, replace=False)
    return tuple(df[df["user_id"].isin(keep)].reset_index(drop=True) for df in (train, valid, test))  # type: ignore[return-value]


def split_data(p: Protocol, data_dir: Path) -> dict[str, pd.DataFrame]:
    """train / valid / test (user subsample applied), the validation halves and the items."""
    ds = load_processed(p.dataset, path=data_dir)
    train, valid, test = sample_users(ds.train, ds.valid, ds.test, p.max_users)
    stop, choose = validation_halves(valid["user_id"].to_numpy(np.int64), p.halves_seed)
    return {"train": train, "valid": valid, "test": test, "stop": valid[stop], "choose": valid[choose], "items": ds.items}


def run_cell(p: Protocol, data_dir: str | Path, fraction: float, seed: int, work: str | Path) -> list[dict[str, Any]]:
    """Every method of ``p`` for one (fraction, seed): one row each, with the per-user arrays of
    the split it was scored on (``per_user``) and the candidates the ``choose`` half saw."""
    torch.set_num_threads(1)
    t_cell = time.time()
    sp = split_data(p, Path(data_dir))
    if p.cold_frac is not None:  # the cold-item study (issue 34): its own cell
        return run_cold_cell(p, sp, seed, work)
    kept = truncate_history(sp["train"], fraction)
    name = f"{p.dataset}-f{fraction:g}"
    state = Path(work).resolve() / f"cell-f{fraction:g}-s{seed}"
    reg = methods_for(p.model)
    with state_home(state):
        ws = Workspace(state_dir=state)
        write_private_state(state, name, kept, sp["stop"], sp["choose"], sp["items"])
        # what the final score reads: the kept events (+ the validation event, for test)
        data = build_in_memory(kept, sp["items"], sp["valid"])
        es, split = ((make_eval_set(sp["choose"], [sp["train"]]), "valid") if p.screen
                     else (make_eval_set(sp["test"], [sp["train"], sp["valid"]]), "test"))
        methods = [reg[n] for n in p.methods]
        chosen = (bag.chosen_scorers(ws, p, methods, name, seed, data, es, split) if p.model == "bag"
                  else _sequence_scorers(ws, p, methods, name, seed, data, es, split))
        rows = []
        t0 = time.time()
        for m, score, tried, pool in chosen:
            res = evaluate(score or popularity_scorer(kept, data.num_items), es, data.num_items, seed=seed, per_user=True)
            per_user = {k: v for k, v in res.pop("_per_user").items() if k in PER_USER}
            rows.append({"fraction": fraction, "seed": seed, "method": m.name, "model": p.model,
                         "scored_on": "choose" if p.screen else "test", "metrics": res, "per_user": per_user, "users": es.users,
                         "tried": tried, "pool": pool, "seconds": round(time.time() - t0, 1)})
            log.info("cell f=%s s=%s %s: %s NDCG@10 %.4f", fraction, seed, m.name, rows[-1]["scored_on"], res["ndcg@10"])
            t0 = time.time()
    for r in rows:
        r["cell_seconds"] = round(time.time() - t_cell, 1)
    return rows


def _sequence_scorers(ws: Workspace, p: Protocol, methods: list[Method], name: str, seed: int, data: Any, es: Any,
                      split: str) -> Iterator[tuple[Method, Any, list[dict[str, Any]], dict[str, Any]]]:
    """Per method: (method, the chosen model's scorer on ``es``, or None for popularity; the
    candidates; pool facts). The real-only model is trained first (``jobs.train``)."""
    real = train_real(ws, name, name="real_only", epochs=p.epochs, batch_size=p.batch_size, embedding_dim=p.embedding_dim,
                      seed=seed)
    for m in methods:
        chosen, tried, pool = _choose(ws, p, m, name, real, seed)
        yield m, None if chosen is None else seq_scorer(load_checkpoint(chosen)[0], data, es, split), tried, pool


def _choose(ws: Workspace, p: Protocol, m: Method, name: str, real: dict[str, Any], seed: int
            ) -> tuple[str | None, list[dict[str, Any]], dict[str, Any]]:
    """(chosen checkpoint, candidates with their ``choose`` NDCG@10, pool facts) of method ``m``."""
    if m.stages == "baseline":
        return None, [], {}
    if m.stages == "once":
        return real["checkpoint"], [], {}
    ft = dict(dataset=name, seed=seed, epochs=p.finetune_epochs, pretrain_epochs=p.epochs, batch_size=p.batch_size)
    if m.stages == "twice":
        out = finetune(ws, real["checkpoint"], mix_ratio=0.0, name=m.name, protocol="pretrain", **ft)
        return out["checkpoint"], [{"choose_ndcg@10": out["test"]["ndcg@10"]}], {}
    best: tuple[float, str, dict[str, Any]] | None = None
    tried = []
    for k in p.expansions:
        cfg = seq_config({"expand_below": p.expand_below, "n_new": p.n_new, "expansions": int(k), "synthetic_share": 0.0,
                          "gan": {**p.generator, **m.gan}, "refine": {**p.refine, **m.refine_settings} if m.refine else None},
                         seed=seed, source=f"protocol {p.name}, method {m.name}")
        run = augment_seq_run(ws, cfg, seed=seed, dataset=name, publish=False, method=m.pool or "", match_size=True,
                              teacher=real["checkpoint"] if m.teacher else None)
        out = finetune(ws, real["checkpoint"], mix_ratio=MIX_ALL, run_id=run["run_id"], name=f"{m.name}-x{k}",
                       protocol=m.protocol, **ft)
        pool = {key: run.get(key) for key in ("run_id", "rows_accepted", "gate", "c2st_auc_sequences", "c2st_auc")}
        tried.append({"expansions": int(k), "histories": out["synthetic_histories"], "choose_ndcg@10": out["test"]["ndcg@10"],
                      "pool": pool})
        if best is None or out["test"]["ndcg@10"] > best[0]:
            best = (out["test"]["ndcg@10"], out["checkpoint"], {**pool, "expansions": int(k), "histories": out["synthetic_histories"]})
    assert best is not None
    return best[1], tried, best[2]


