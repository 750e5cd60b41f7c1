"""The labeler recovers a planted cluster structure and reports held-out agreement."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecaug_feast.errors import DataValidationError
from ecaug_feast.label import ClusterLabeler, LabelerConfig


def _planted(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.array([[2, 0, 0, 0], [40, 5, 3, 4], [90, 1, 1, 9]], float)
    c = rng.integers(0, 3, n)
    x = centers[c] + rng.normal(scale=[1.5, 0.3, 0.2, 0.3], size=(n, 4))
    p_pos = np.array([0.95, 0.05, 0.9])[c]            # label distribution planted per cluster
    y = (rng.random(n) < p_pos).astype(int)
    flat = pd.DataFrame({"n_interactions": x[:, 0].round().astype(int), "days_since_last": x[:, 1],
                         "attr_diversity": x[:, 2], "mean_item_popularity": x[:, 3],
                         "item_id": rng.integers(1, 2000, n), "recent_item_1": rng.integers(0, 2000, n)})
    return flat, y, c


def test_labeler_recovers_planted_clusters() -> None:
    flat, y, c = _planted()
    lab = ClusterLabeler(LabelerConfig(seed=0)).fit(flat, y)
    rep = lab.report
    assert rep["k"] == 3, rep["silhouette"]                     # silhouette picks the planted k
    dists = sorted(d[1] for d in rep["cluster_label_dist"].values())   # P(label=1) per cluster
    assert np.allclose(dists, [0.05, 0.9, 0.95], atol=0.06), dists
    # best possible accuracy is ~0.93 (the planted label noise); a majority guess gets ~0.63
    assert rep["agreement"] > 0.88 and rep["agreement"] > rep["majority_baseline"] + 0.2
    assert rep["holdout_rows"] == 600
    labels, conf = lab.predict(flat.iloc[:500])
    assert set(labels) <= {0, 1} and ((conf >= 0.5) & (conf <= 1)).all()


def test_labeler_bad_input() -> None:
    flat, y, _ = _planted(200)
    with pytest.raises(DataValidationError, match="single class"):
        ClusterLabeler().fit(flat, np.ones(len(flat), int))
    with pytest.raises(DataValidationError, match="label"):
        ClusterLabeler().fit(flat, y[:10])
