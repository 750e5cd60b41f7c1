"""Gates: a fresh sample from the real process passes; pure noise and a copy of the training set fail."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecaug_feast.quality import metrics as M
from ecaug_feast.quality.gates import GateConfig, evaluate

DISCRETE = ["cat", "item"]


def _real(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    return pd.DataFrame({"a": a, "b": 2 * a + rng.normal(scale=0.5, size=n), "k": rng.poisson(4, n),
                         "cat": np.where(a > 0, "x", rng.choice(["y", "z"], n)),
                         "item": rng.zipf(1.5, n) % 300})


def test_fresh_real_sample_passes() -> None:
    train, hold, fresh = _real(3000, 0), _real(600, 1), _real(3000, 2)
    res = evaluate(train, hold, fresh, DISCRETE, GateConfig())
    assert res.passed, res.reasons
    assert res.metrics["c2st_auc"] < 0.6 and res.metrics["column_shapes"] > 0.9 and res.metrics["pair_trends"] > 0.9


def test_pure_noise_is_rejected() -> None:
    train, hold = _real(3000, 0), _real(600, 1)
    rng = np.random.default_rng(3)
    noise = pd.DataFrame({c: rng.uniform(train[c].min(), train[c].max(), 3000) for c in ("a", "b")})
    noise["k"] = rng.integers(train["k"].min(), train["k"].max() + 1, 3000)
    noise["cat"] = rng.choice(["x", "y", "z"], 3000)
    noise["item"] = rng.choice(train["item"].unique(), 3000)
    res = evaluate(train, hold, noise[train.columns], DISCRETE, GateConfig())
    assert not res.passed
    assert res.metrics["c2st_auc"] > 0.9
    assert any("C2ST" in r for r in res.reasons) and any("shapes" in r or "trends" in r for r in res.reasons)


def test_copy_of_training_set_is_rejected() -> None:
    train, hold = _real(3000, 0), _real(600, 1)
    res = evaluate(train, hold, train.sample(frac=1.0, random_state=0), DISCRETE, GateConfig())
    assert not res.passed
    assert res.metrics["exact_copies"] == 3000 and res.metrics["rows_accepted"] == 0
    assert any("privacy" in r for r in res.reasons)


def test_near_copies_dropped_by_distance_to_closest_record() -> None:
    train, hold = _real(2000, 0), _real(500, 1)
    near = train.iloc[:500].copy()
    near["a"] = near["a"] + 1e-4                       # not exact copies, but closer than real neighbours
    keep_rows = _real(1500, 5)
    res = evaluate(train, hold, pd.concat([near, keep_rows], ignore_index=True), DISCRETE, GateConfig())
    assert res.metrics["exact_copies"] == 0
    assert not res.keep[:500].any()                    # every near copy dropped
    assert res.keep[500:].mean() > 0.85                # fresh rows mostly kept (5th-percentile rule)


def test_metrics_bounds_and_dcr() -> None:
    a, b = _real(1000, 0), _real(1000, 1)
    assert M.column_shapes(a, a, DISCRETE)["score"] == 1.0
    assert M.pair_trends(a, a, DISCRETE)["score"] == 1.0
    d = M.distance_to_closest_record(a, a.iloc[:10], DISCRETE)
    assert np.allclose(d, 0, atol=1e-3)
    assert (M.distance_to_closest_record(a, b.iloc[:50], DISCRETE) > 0).all()
