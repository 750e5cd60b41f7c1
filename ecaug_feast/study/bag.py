"""The secondary study: the bag two-tower with pools of extra feature rows (``model: bag``).

In a cell's private workspace: examples read through Feast (``jobs.train.load_real``), the
real-only model early-stopped on ``stop``, each pool (``jobs.bag_pools``) mixed in at every
``ratios`` candidate and fine-tuned from real-only, the ratio chosen on ``choose``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable, Iterator

import numpy as np

from ecaug_feast.jobs.bag_pools import bag_pool
from ecaug_feast.jobs.presets import PRESETS
from ecaug_feast.jobs.train import load_real
from ecaug_feast.jobs.workspace import Workspace
from ecaug_feast.study.protocol import Protocol
from ecaug_feast.study.registry import Method
from recommender.data import TrainData, mix_examples
from recommender.evaluate import EvalSet
from recommender.train import TrainConfig, evaluate_model, model_config_for, model_scorer, train


def chosen_scorers(ws: Workspace, p: Protocol, methods: list[Method], name: str, seed: int, final: TrainData,
                   es: EvalSet, split: str) -> Iterator[tuple[Method, Callable[[np.ndarray], Any] | None, list, dict]]:
    """Per method: (method, the chosen model's scorer on ``es`` / ``split`` of ``final``, or None
    for popularity; the candidates; pool facts)."""
    budget = {**PRESETS[p.bag.get("preset", "full")], **{k: v for k, v in p.bag.items() if k != "preset"}}
    data, stop, choose = load_real(ws, name, "feast", examples=True)
    mcfg = model_config_for(data, **budget["model"])
    real = train(data, stop, mcfg, TrainConfig(seed=seed, **budget["train"]))
    ft_cfg = TrainConfig(seed=seed, **budget["finetune"])
    for m in methods:
        if m.stages == "baseline":
            yield m, None, [], {}
            continue
        if m.stages == "once":
            yield m, model_scorer(real.model, final, es, split), [], {}
            continue
        size = int(min(budget["pool_cap"], math.ceil(max(budget["ratios"]) * len(data.examples))))
        pool, info = bag_pool(m.pool or "", data, size, seed, budget.get("gan"))
        best, tried = None, []
        for r in budget["ratios"]:
            if len(pool) == 0:
                break
            ft = train(replace(data, examples=mix_examples(data.examples, pool, r, seed)), stop, mcfg, ft_cfg, init_state=real.state)
            v = evaluate_model(ft.model, data, choose, "test", seed=seed)["ndcg@10"]
            tried.append({"ratio": r, "choose_ndcg@10": v})
            if best is None or v > best[0]:
                best = (v, ft.model, r)
        model = real.model if best is None else best[1]
        yield m, model_scorer(model, final, es, split), tried, {**info, "ratio": None if best is None else best[2]}
