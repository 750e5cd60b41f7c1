"""Label synthetic examples without supervision on them: clustering + a classifier, both fitted on
real labelled training examples.

Features (``LabelFeatures``) are built from the flat example table (``ecaug_feast.synth.examples``):
the user scalars plus item-side statistics learned on the real rows — the item's log frequency
among positives and among all rows, whether the item is in the user's recent items, and the log
count of the transition ``recent_item_1 -> item`` among real positives (the sequential signal).

* **Clustering**: KMeans on the standardized user-side features (user segments); k in ``k_range`` chosen by the best
  silhouette score on a subsample (the stated criterion); each cluster keeps its label
  distribution (Laplace-smoothed).
* **Classifier**: a histogram gradient-boosted tree on the same features.
* A row's posterior is ``w * p_classifier + (1 - w) * p_cluster``; label = argmax, confidence =
  its probability; rows under ``threshold`` are dropped by the pipeline. The cluster prior shrinks
  the classifier's confident mistakes in regions where labels are mixed.

``fit`` holds out ``holdout`` of the real rows and reports how often each part reproduces the true
label there (``report``), so the label quality is measured, not assumed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from ecaug_feast.errors import DataValidationError
from ecaug_feast.schema import USER_SCALAR_COLUMNS
from ecaug_feast.threads import single_thread


@dataclass
class LabelerConfig:
    k_range: tuple[int, int] = (2, 6)
    weight: float = 0.7          # classifier share of the posterior
    threshold: float = 0.55      # minimum confidence to keep a synthetic row
    holdout: float = 0.2
    silhouette_rows: int = 2000
    seed: int = 0


class LabelFeatures:
    """Item statistics learned from real rows -> numeric features for any (real or synthetic) row."""

    def fit(self, flat: pd.DataFrame, y: np.ndarray) -> "LabelFeatures":
        pos = flat[y == 1]
        self.pos_freq = pos["item_id"].value_counts()
        self.all_freq = flat["item_id"].value_counts()
        if "recent_item_1" in flat:
            tr = pos.loc[pos["recent_item_1"] != 0, ["recent_item_1", "item_id"]]
            self.trans = tr.value_counts()
        else:
            self.trans = pd.Series(dtype=float)
        return self

    def transform(self, flat: pd.DataFrame, own_labels: np.ndarray | None = None) -> np.ndarray:
        """Features of ``flat``. For the rows the statistics were fitted on, pass their labels as
        ``own_labels``: counts are then leave-one-out (a row must not see itself, or the classifier
        learns "count > 0 means positive", which never holds for new rows)."""
        item = flat["item_id"]
        own_pos = np.zeros(len(flat)) if own_labels is None else (np.asarray(own_labels) == 1).astype(np.float64)
        own_all = np.zeros(len(flat)) if own_labels is None else np.ones(len(flat))
        cols = [flat[c].to_numpy(dtype=np.float64) for c in USER_SCALAR_COLUMNS if c in flat]
        self.n_user = len(cols)  # leading user-side columns: what the clustering sees
        cols.append(np.log1p(item.map(self.pos_freq).fillna(0).to_numpy(dtype=np.float64) - own_pos))
        cols.append(np.log1p(item.map(self.all_freq).fillna(0).to_numpy(dtype=np.float64) - own_all))
        recent = [c for c in flat.columns if c.startswith("recent_item_")]
        if recent:
            cols.append(np.any(flat[recent].to_numpy() == item.to_numpy()[:, None], axis=1).astype(np.float64))
            key = pd.MultiIndex.from_arrays([flat["recent_item_1"].to_numpy(), item.to_numpy()])
            own_tr = own_pos * (flat["recent_item_1"].to_numpy() != 0)
            cols.append(np.log1p(self.trans.reindex(key).fillna(0).to_numpy(dtype=np.float64) - own_tr))
        X = np.column_stack(cols)
        return np.nan_to_num(X)


@dataclass
class ClusterLabeler:
    """Fit on real (flat) examples and their labels; ``predict`` labels + confidences."""

    config: LabelerConfig = field(default_factory=LabelerConfig)
    report: dict[str, Any] = field(default_factory=dict)

    def fit(self, flat: pd.DataFrame, labels: np.ndarray | pd.Series) -> "ClusterLabeler":
        with single_thread():
            return self._fit(flat, labels)

    def _fit(self, flat: pd.DataFrame, labels: np.ndarray | pd.Series) -> "ClusterLabeler":
        cfg = self.config
        t0 = time.perf_counter()
        y = np.asarray(labels)
        if len(y) != len(flat) or len(y) == 0:
            raise DataValidationError(None, "label", "labels missing or not aligned with the examples")
        if pd.isna(y).any():
            raise DataValidationError(None, "label", "has missing values")
        y = y.astype(np.int64)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise DataValidationError(None, "label", f"has a single class ({self.classes_[0]}); a labeler needs at least two")
        rng = np.random.default_rng(cfg.seed)
        idx = rng.permutation(len(y))
        n_hold = int(len(y) * cfg.holdout) if len(y) >= 50 else 0
        hold, fit_idx = idx[:n_hold], idx[n_hold:]
        flat_fit = flat.iloc[fit_idx].reset_index(drop=True)
        y_fit = y[fit_idx]
        self.features = LabelFeatures().fit(flat_fit, y_fit)
        X = self.features.transform(flat_fit, own_labels=y_fit)
        self.scaler = StandardScaler().fit(X[:, : self.features.n_user])
        Xs = self.scaler.transform(X[:, : self.features.n_user])

        # k by silhouette (higher = tighter, better separated clusters) on a subsample.
        sub = rng.choice(len(Xs), min(len(Xs), cfg.silhouette_rows), replace=False)
        scores: dict[int, float] = {}
        best_k, best_s, best_km = None, -2.0, None
        for k in range(cfg.k_range[0], min(cfg.k_range[1], len(sub) - 1) + 1):
            km = KMeans(n_clusters=k, n_init=1, random_state=cfg.seed).fit(Xs[sub])
            if len(np.unique(km.labels_)) < 2:
                continue
            s = float(silhouette_score(Xs[sub], km.labels_))
            scores[k] = round(s, 4)
            if s > best_s:
                best_k, best_s, best_km = k, s, km
        if best_km is None:
            raise DataValidationError(None, None, "the examples do not form two or more clusters (constant features?)")
        self.kmeans = best_km  # centres fitted on the subsample; every row is assigned to them
        cl = self.kmeans.predict(Xs)
        counts = np.zeros((best_k, len(self.classes_)))
        np.add.at(counts, (cl, np.searchsorted(self.classes_, y_fit)), 1)
        self.cluster_dist = (counts + 1) / (counts.sum(1, keepdims=True) + len(self.classes_))
        self.clf = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, random_state=cfg.seed).fit(X, y_fit)

        self.report = {"k": best_k, "silhouette": scores, "fit_rows": int(len(y_fit)), "holdout_rows": int(n_hold),
                       "cluster_label_dist": {int(i): [round(float(p), 3) for p in row] for i, row in enumerate(self.cluster_dist)},
                       "classes": [int(c) for c in self.classes_]}
        if n_hold:
            hflat = flat.iloc[hold].reset_index(drop=True)
            yh = y[hold]
            lab, conf, parts = self._predict(hflat)
            keep = conf >= cfg.threshold
            self.report.update({
                "agreement": round(float((lab == yh).mean()), 4),
                "agreement_classifier": round(float((self.classes_[parts["clf"].argmax(1)] == yh).mean()), 4),
                "agreement_cluster": round(float((self.classes_[parts["cluster"].argmax(1)] == yh).mean()), 4),
                "agreement_confident": round(float((lab[keep] == yh[keep]).mean()), 4) if keep.any() else None,
                "confident_share": round(float(keep.mean()), 4),
                "majority_baseline": round(float(max((yh == c).mean() for c in self.classes_)), 4),
            })
        self.report["seconds"] = round(time.perf_counter() - t0, 2)
        return self

    def _predict(self, flat: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        X = self.features.transform(flat)
        p_clf = self.clf.predict_proba(X)
        p_cl = self.cluster_dist[self.kmeans.predict(self.scaler.transform(X[:, : self.features.n_user]))]
        p = self.config.weight * p_clf + (1 - self.config.weight) * p_cl
        k = p.argmax(1)
        return self.classes_[k], p[np.arange(len(p)), k], {"clf": p_clf, "cluster": p_cl, "posterior": p}

    def predict(self, flat: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(labels, confidence)`` for flat example rows."""
        with single_thread():
            lab, conf, _ = self._predict(flat)
        return lab, conf
