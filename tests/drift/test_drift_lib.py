"""ecaug_feast.drift: a planted shift is detected, a same-distribution control stays quiet."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecaug_feast.drift import DriftThresholds, compare, js_divergence, psi, topk_overlap, unknown_share
from ecaug_feast.errors import DataValidationError


def _rows(n: int, rng: np.random.Generator, item_offset: int = 0, day_scale: float = 3.0, n_items: int = 2000) -> pd.DataFrame:
    """Examples with a Zipf item popularity (``item_offset`` rotates which items are popular)."""
    w = 1.0 / np.arange(1, n_items + 1) ** 1.1
    items = (rng.choice(n_items, n, p=w / w.sum()) + item_offset) % n_items + 1
    return pd.DataFrame({
        "user_id": rng.integers(1, 5 * n, n), "item_id": items,
        "n_interactions": rng.poisson(2, n), "days_since_last": rng.exponential(day_scale, n),
        "attr_diversity": rng.gamma(2, 0.3, n), "label": rng.integers(0, 2, n)})


def test_planted_shift_is_detected():
    rng = np.random.default_rng(0)
    ref = _rows(4000, rng)
    shifted = _rows(800, rng, item_offset=300, day_scale=6.0)  # other items in fashion, slower returns
    res = compare(ref, shifted)
    assert res.drifted
    assert {"item_js", "item_topk_overlap"} <= set(res.crossed)
    assert any(c.startswith(("psi:days_since_last", "ks:days_since_last")) for c in res.crossed)


def test_only_item_popularity_shift_is_detected():
    rng = np.random.default_rng(1)
    res = compare(_rows(4000, rng), _rows(800, rng, item_offset=50))
    assert res.drifted and "item_js" in res.crossed
    assert not any(c.startswith(("psi:", "ks:")) for c in res.crossed)


def test_same_distribution_control_stays_quiet():
    """20 controls of different sizes: the permutation null keeps sparse-item scores from firing."""
    alarms = []
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        res = compare(_rows(int(rng.integers(1000, 5000)), rng), _rows(int(rng.integers(150, 1200)), rng),
                      DriftThresholds(seed=seed, permutations=10))
        alarms.append(res.crossed)
        # the raw JS divergence is large under the null: thresholding it directly would always fire
        assert res.scores["item_js"] > 0.2 and abs(res.excess["item_js"]) < 0.05
    assert sum(bool(a) for a in alarms) == 0, alarms


def test_single_statistics():
    a = np.array([1, 1, 2, 3])
    assert js_divergence(a, a) == pytest.approx(0.0)
    assert js_divergence(np.array([1, 1]), np.array([2, 2])) == pytest.approx(1.0)
    assert topk_overlap(np.array([1, 1, 2, 3]), np.array([1, 4, 4]), k=2) == pytest.approx(0.5)
    assert unknown_share(np.array([1, 2]), np.array([1, 3, 3, 2])) == pytest.approx(0.5)
    x = np.random.default_rng(0).normal(size=5000)
    assert psi(x, x) < 1e-6 and psi(x, x + 1) > 0.5


def test_thresholds_from_mapping_rejects_unknown_keys_and_bad_values():
    th = DriftThresholds.from_mapping({"psi": 0.3, "new_user_share": None, "features": ["n_interactions"]})
    assert th.psi == 0.3 and th.features == ("n_interactions",)
    with pytest.raises(DataValidationError, match="psii"):
        DriftThresholds.from_mapping({"psii": 1}, "drift.yaml")
    with pytest.raises(DataValidationError, match="number"):
        DriftThresholds.from_mapping({"psi": "high"})


def test_too_few_rows_is_an_input_error():
    rng = np.random.default_rng(0)
    with pytest.raises(DataValidationError, match="too few rows"):
        compare(_rows(1000, rng), _rows(20, rng))
