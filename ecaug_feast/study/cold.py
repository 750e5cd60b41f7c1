"""The cold-item study (issue 34): one seed of a protocol with ``cold_frac``, through the jobs.

1. the protocol's cold-item split (``datasets.split.cold_item_split``, fixed by ``cold_seed``, the
   same for every seed and method) of the dataset's leave-last-out split: no training row (and so
   no Feast feature) touches a cold item;
2. a private workspace (``jobs.study_data``) with the warm training rows, the ``stop`` half of the
   validation users as its validation split (every early stop) and the ``choose`` half as test;
3. per method: ``jobs.cold_items.train_cold`` (the id-only model, or the attribute tower), and for
   ``cold_gar`` ``jobs.cold_items.generated_vectors`` on the id-only model;
4. each method scored once, full ranking over warm and cold items together
   (``recommender.evaluate.cold_warm_metrics``): on test (training and validation items
   excluded; the user tower reads the training events + a warm validation event), or, in a
   screen, on the ``choose`` half only. Per-user arrays and the cold-target mask go to the report.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecaug_feast.datasets.split import Split, cold_item_split
from ecaug_feast.jobs.cold_items import generated_vectors, train_cold
from ecaug_feast.jobs.study_data import state_home, write_private_state
from ecaug_feast.jobs.train_data import build_in_memory
from ecaug_feast.jobs.workspace import Workspace
from ecaug_feast.study.protocol import Protocol
from ecaug_feast.study.registry import COLD_MODELS, methods_for
from recommender.baselines import popularity_scorer
from recommender.evaluate import cold_warm_metrics, make_eval_set
from recommender.seq_train import seq_scorer

log = logging.getLogger(__name__)

PER_USER = ("ndcg@10", "recall@10")


def run_cold_cell(p: Protocol, sp: dict[str, Any], seed: int, work: str | Path) -> list[dict[str, Any]]:
    """Every method of ``p`` for one seed; ``sp``: the study's splits (``cell.split_data``)."""
    torch.set_num_threads(1)
    t_cell = time.time()
    assert p.cold_frac is not None, "a cold-item protocol sets cold_frac"
    cs = cold_item_split(Split(sp["train"], sp["valid"], sp["test"], "leave_last_out", {}), sp["items"], p.cold_frac, p.cold_seed)
    stop_users, choose_users = sp["stop"]["user_id"].to_numpy(), sp["choose"]["user_id"].to_numpy()
    stop = cs.valid[cs.valid["user_id"].isin(stop_users)]
    choose = cs.valid[cs.valid["user_id"].isin(choose_users)]
    name = f"{p.dataset}-cold"
    state = Path(work).resolve() / f"cell-cold-s{seed}"
    reg = methods_for(p.model)
    rows: list[dict[str, Any]] = []
    with state_home(state):
        ws = Workspace(state_dir=state)
        write_private_state(state, name, cs.train, stop, choose, sp["items"], meta={"cold_split": cs.info})
        # what the final score reads: the warm training events (+ a warm validation event, for test)
        data = build_in_memory(cs.train, sp["items"], cs.history_valid)
        es, split = ((make_eval_set(choose, [cs.train]), "valid") if p.screen
                     else (make_eval_set(cs.test, [cs.train, cs.valid]), "test"))
        trained: dict[str, dict[str, Any]] = {}

        def model_for(kind: str) -> dict[str, Any]:
            if kind not in trained:
                spec = dict(COLD_MODELS[kind])
                spec["id_dropout"] = p.id_dropout if spec.get("id_dropout") else 0.0
                trained[kind] = train_cold(ws, name, cs.cold_items, f"cold_{kind}", epochs=p.epochs, batch_size=p.batch_size,
                                           embedding_dim=p.embedding_dim, seed=seed, **spec)
                log.info("cold cell s=%s: model %s trained (%s epochs, %.0f s)", seed, kind, trained[kind]["epochs"],
                         trained[kind]["seconds"])
            return trained[kind]

        for n in p.methods:
            m, t0, info = reg[n], time.time(), {}
            kind = m.cold.get("model")
            if kind is None:
                score = popularity_scorer(cs.train, data.num_items)
            else:
                fit = model_for(kind)
                model, info = fit["model"], {"epochs": fit["epochs"], "valid": fit["valid"], "train_seconds": fit["seconds"]}
                if m.cold.get("generator"):
                    model = copy.deepcopy(model)  # the id-only model itself stays as trained
                    info["generator"] = generated_vectors(model, fit["data"], cs.cold_items, m.cold["generator"],
                                                          p.item_generator, seed=seed)
                score = seq_scorer(model, data, es, split)
            res = cold_warm_metrics(score, es, data.num_items, cs.cold_items, seed=seed)
            per_user = {k: v for k, v in res.pop("_per_user").items() if k in PER_USER}
            per_user["cold"] = res.pop("_cold")
            rows.append({"fraction": 1.0, "seed": seed, "method": n, "model": p.model, "scored_on": "choose" if p.screen else "test",
                         "metrics": res["all"], "groups": res, "per_user": per_user, "users": es.users, "tried": [],
                         "pool": _jsonable_info(info), "cold_split": cs.info, "seconds": round(time.time() - t0, 1)})
            log.info("cold cell s=%s %s: %s NDCG@10 cold %.4f warm %.4f all %.4f", seed, n, rows[-1]["scored_on"],
                     res["cold"]["ndcg@10"], res["warm"]["ndcg@10"], res["all"]["ndcg@10"])
    for r in rows:
        r["cell_seconds"] = round(time.time() - t_cell, 1)
    return rows


def _jsonable_info(info: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in info.items()}
