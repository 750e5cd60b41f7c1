"""Pools of extra feature rows for the bag model (the secondary study, ``model: bag``): built from
a cell's training examples only. ``column_gan`` (GAN + labeler + gates,
``synth.pipeline.augment_frame``), ``oversample`` (copies of sparse users' rows), ``smote``
(SMOTE-style interpolation of flattened example rows, ``synth.smote``). Each returns
``(positives with the example columns, facts for the report)``.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import pandas as pd

from ecaug_feast.errors import EcaugError
from ecaug_feast.synth.examples import flatten, unflatten
from ecaug_feast.synth.gan import GANConfig
from ecaug_feast.synth.pipeline import AugmentConfig, augment_frame
from ecaug_feast.synth.smote import SmoteSynthesizer
from recommender.baselines import oversample_pool
from recommender.data import TrainData, complete_synthetic, labelled_examples

BagPool = Callable[[TrainData, int, int, dict[str, Any]], tuple[pd.DataFrame, dict[str, Any]]]


def _oversample(data: TrainData, size: int, seed: int, gan: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    return oversample_pool(data.examples, size, seed), {}


def _column_gan(data: TrainData, size: int, seed: int, gan: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    lab = labelled_examples(data.examples, data.num_items, seed)
    # only rows the labeler marks positive become training positives (often a small share)
    acfg = AugmentConfig(gan=GANConfig(**gan), max_fit_rows=min(30_000, len(lab)), holdout_rows=min(2000, len(lab) // 5))
    res = augment_frame(lab, n_rows=size, seed=seed, config=acfg, source="study examples")
    pos = complete_synthetic(res.accepted, data)
    info = {k: res.metrics.get(k) for k in ("rows_generated", "rows_accepted", "gate", "c2st_auc")}
    return pos, {**info, "gate_passed": bool(res.gate_passed)}


def _smote(data: TrainData, size: int, seed: int, gan: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    real = data.examples[~data.examples["is_synthetic"].astype(bool)]
    flat, schema = flatten(real.assign(label=1))
    sm = SmoteSynthesizer(seed=seed, max_rows=30_000).fit(flat[schema.gan_columns], schema.discrete_columns)
    feats = unflatten(sm.sample(size, seed=seed), schema)
    feats["event_timestamp"] = np.random.default_rng(seed).choice(real["event_timestamp"].to_numpy(), len(feats))
    return complete_synthetic(feats, data), {}


BAG_POOLS: dict[str, BagPool] = {"column_gan": _column_gan, "oversample": _oversample, "smote": _smote}


def bag_pool(method: str, data: TrainData, size: int, seed: int, gan: dict[str, Any] | None = None
             ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """:data:`BAG_POOLS` ``method``'s pool of ``size`` rows; a generator refusing the data (an
    :class:`EcaugError`: too few rows, a gate) gives an empty pool and the reason under ``refused``
    (it must not sink the other methods); any other exception is a bug and raises."""
    t0 = time.time()
    try:
        pool, info = BAG_POOLS[method](data, size, seed, gan or {})
    except EcaugError as exc:
        pool, info = data.examples.iloc[:0], {"refused": str(exc)[:300]}
    return pool, {**info, "rows": int(len(pool)), "seconds": round(time.time() - t0, 2)}
