"""augment_frame on a small seeded examples table: schema, segments, lineage, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecaug_feast.errors import DataValidationError
from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE
from ecaug_feast.quality.gates import GateConfig
from ecaug_feast.synth.examples import USER_FEATURE_COLUMNS, flatten, unflatten
from ecaug_feast.synth.gan import GANConfig
from ecaug_feast.synth.pipeline import AugmentConfig, augment_frame


def _examples(n: int = 2500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_int = rng.geometric(0.15, n) - 1
    pop = rng.zipf(1.6, n) % 400 + 1
    item = np.where(rng.random(n) < 0.5, pop, rng.integers(1, 400, n))
    label = (item == pop).astype(int)
    rec = [list(rng.choice(np.arange(1, 400), min(k, 5), replace=False)) for k in n_int]
    att = [list(rng.choice(np.arange(1, 30), min(k, 3) and 3, replace=False)) if k else [] for k in n_int]
    return pd.DataFrame({
        "user_id": rng.integers(1, 800, n), "item_id": item, "label": label,
        "event_timestamp": pd.Timestamp("2014-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 180, n), unit="D"),
        "n_interactions": n_int, "days_since_last": np.where(n_int == 0, -1.0, rng.exponential(3, n)).astype("float32"),
        "recent_items": rec, "top_attributes": att,
        "attr_diversity": np.where(n_int == 0, 0.0, np.log1p(n_int)).astype("float32"),
        "mean_item_popularity": np.where(n_int == 0, 0.0, rng.gamma(2, 1, n)).astype("float32"),
    })


CFG = dict(gan=GANConfig(max_steps=80, eval_every=40, calib_rows=3000), holdout_rows=400,
           gates=GateConfig(max_c2st_auc=1.0, min_column_shapes=0.0, min_pair_trends=0.0, c2st_rows=1000))


def test_flatten_unflatten_keeps_user_features_schema() -> None:
    ex = _examples(300)
    flat, schema = flatten(ex, k_recent=3, k_attr=2)
    back = unflatten(flat, schema)
    assert list(back.columns) == USER_FEATURE_COLUMNS + ["item_id"]
    assert [r[:3] for r in ex["recent_items"]] == back["recent_items"].tolist()
    np.testing.assert_array_equal(back["n_interactions"], ex["n_interactions"])
    assert set(flat["user_tier"]) <= {"cold", "warm", "hot"} and set(flat["item_tier"]) <= {"head", "torso", "tail"}


def test_augment_frame_end_to_end_and_segment() -> None:
    ex = _examples()
    res = augment_frame(ex, 400, seed=0, config=AugmentConfig(**CFG, segment="cold_users"))
    acc, m = res.accepted, res.metrics
    assert 0 < len(acc) <= 400 and m["rows_accepted"] == len(acc)
    assert (acc["user_id"] >= SYNTHETIC_USER_ID_BASE).all() and acc["user_id"].is_unique
    assert set(USER_FEATURE_COLUMNS + ["item_id", "event_timestamp", "label", "confidence", "is_synthetic",
                                       "run_id", "generator_version"]) <= set(acc.columns)
    assert (acc["n_interactions"] <= 3).all()                     # the segment holds for every row
    assert (acc["recent_items"].map(len) <= acc["n_interactions"]).all()   # structural repair
    assert set(acc["item_id"]).issubset(set(ex["item_id"]))
    assert set(acc["label"]) <= {0, 1} and (acc["confidence"] >= 0.55).all()
    for k in ("rows_generated", "gate", "c2st_auc", "column_shapes", "pair_trends", "privacy_dropped",
              "label_agreement", "fit_seconds"):
        assert k in m
    # smoke-sized GAN (80 steps): conditioning strength is tested in test_transformer_gan; here
    # the hit rate is reported and rejection sampling makes every accepted row satisfy the segment
    assert 0 < m["segment_hit_rate"] <= 1


@pytest.mark.parametrize("bad, match", [
    (lambda ex: ex.iloc[:0], "empty"),
    (lambda ex: ex.assign(mean_item_popularity=np.nan), "mean_item_popularity.*all NaN"),
    (lambda ex: ex.assign(item_id=7), "item_id.*single item"),
    (lambda ex: ex.drop(columns="recent_items"), "recent_items.*missing"),
    (lambda ex: ex.drop(columns="label"), "label.*missing"),
])
def test_bad_input_clear_errors(bad, match) -> None:
    with pytest.raises(DataValidationError, match=match):
        augment_frame(bad(_examples(200)), 10, config=AugmentConfig(**CFG))


@pytest.mark.parametrize("segment, match", [("vip_users", "unknown segment"), ("colour=red", "unknown column"),
                                            ("user_tier=platinum", "no training example"), ("attr=99999", "attribute 99999")])
def test_unknown_segment(segment, match) -> None:
    with pytest.raises(DataValidationError, match=match):
        augment_frame(_examples(200), 10, config=AugmentConfig(**CFG, segment=segment))
