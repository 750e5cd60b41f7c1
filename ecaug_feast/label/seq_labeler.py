"""Segment labels for generated histories, without supervision on them.

Each history (oldest-first item ids) is embedded as the mean of its items' vectors (any item
embedding fitted on training data, e.g. the sequence generator's token table) plus its log length,
long-tail share and mean log popularity. KMeans on REAL users' embeddings gives the segments (k by
silhouette, as ``ClusterLabeler``); a classifier trained on real embeddings -> cluster gives every
generated history a segment label with a confidence. ``fit`` holds out a share of the real users
and reports how often the classifier reproduces their cluster (label agreement), so the label
quality is measured, not assumed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from ecaug_feast.threads import single_thread


@dataclass
class SeqLabelerConfig:
    k_range: tuple[int, int] = (2, 6)
    threshold: float = 0.6      # minimum confidence to keep a generated history
    holdout: float = 0.2
    silhouette_rows: int = 2000
    seed: int = 0


class HistoryEmbedder:
    """History -> fixed vector from item vectors and item counts learned on training histories."""

    def __init__(self, item_ids: np.ndarray, item_vectors: np.ndarray, item_counts: np.ndarray, tail: np.ndarray) -> None:
        self.ids = np.asarray(item_ids, np.int64)
        order = np.argsort(self.ids)
        self.ids, self.vec = self.ids[order], np.asarray(item_vectors, np.float64)[order]
        self.logpop = np.log1p(np.asarray(item_counts, np.float64)[order])
        self.tail = np.asarray(tail, np.int64)

    def __call__(self, hists: Sequence[np.ndarray]) -> np.ndarray:
        """One row per history: the mean vector of its known items, log length, tail share, mean
        log popularity of its known items. All histories at once (flat arrays, segment sums)."""
        d, n = self.vec.shape[1], len(hists)
        out = np.zeros((n, d + 3))
        if not n:
            return out
        lens = np.array([len(h) for h in hists], np.int64)
        flat = np.concatenate([np.asarray(h, np.int64) for h in hists]) if lens.sum() else np.zeros(0, np.int64)
        rows = np.repeat(np.arange(n), lens)
        pos = np.searchsorted(self.ids, flat).clip(0, max(len(self.ids) - 1, 0))
        ok = self.ids[pos] == flat if len(self.ids) else np.zeros(len(flat), bool)
        cnt = np.bincount(rows[ok], minlength=n)
        has = cnt > 0
        if has.any():  # rows[ok] is sorted: each known row's items are one contiguous segment
            starts = (np.cumsum(cnt) - cnt)[has]
            out[has, :d] = np.add.reduceat(self.vec[pos[ok]], starts, axis=0) / cnt[has, None]
            out[has, d + 2] = np.add.reduceat(self.logpop[pos[ok]], starts) / cnt[has]
        out[:, d] = np.log1p(lens)
        tail = np.bincount(rows, weights=np.isin(flat, self.tail).astype(float), minlength=n)
        out[:, d + 1] = np.divide(tail, lens, out=np.zeros(n), where=lens > 0)
        return out


@dataclass
class SeqLabeler:
    config: SeqLabelerConfig = field(default_factory=SeqLabelerConfig)
    report: dict[str, Any] = field(default_factory=dict)

    def fit(self, real: np.ndarray) -> "SeqLabeler":
        """``real``: embeddings of real training histories."""
        cfg = self.config
        t0 = time.perf_counter()
        if len(real) < 50:
            raise ValueError(f"{len(real)} real histories: too few to fit the segment labeler")
        rng = np.random.default_rng(cfg.seed)
        idx = rng.permutation(len(real))
        n_hold = int(len(real) * cfg.holdout)
        hold, fit_idx = idx[:n_hold], idx[n_hold:]
        with single_thread():
            self.scaler = StandardScaler().fit(real[fit_idx])
            X = self.scaler.transform(real[fit_idx])
            sub = rng.choice(len(X), min(len(X), cfg.silhouette_rows), replace=False)
            best = (-2.0, None, None)
            scores = {}
            for k in range(cfg.k_range[0], cfg.k_range[1] + 1):
                km = KMeans(n_clusters=k, n_init=2, random_state=cfg.seed).fit(X[sub])
                if len(np.unique(km.labels_)) < 2:
                    continue
                s = float(silhouette_score(X[sub], km.labels_))
                scores[k] = round(s, 4)
                if s > best[0]:
                    best = (s, k, km)
            if best[2] is None:
                raise ValueError("real history embeddings do not form two or more clusters")
            self.kmeans = best[2]
            y = self.kmeans.predict(X)
            self.clf = LogisticRegression(max_iter=500).fit(X, y)
            self.report = {"k": best[1], "silhouette": scores, "fit_users": int(len(fit_idx)), "holdout_users": int(n_hold)}
            if n_hold:
                Xh = self.scaler.transform(real[hold])
                yh = self.kmeans.predict(Xh)
                p = self.clf.predict_proba(Xh)
                lab, conf = self.clf.classes_[p.argmax(1)], p.max(1)
                keep = conf >= cfg.threshold
                self.report.update({
                    "agreement": round(float((lab == yh).mean()), 4),
                    "agreement_confident": round(float((lab[keep] == yh[keep]).mean()), 4) if keep.any() else None,
                    "confident_share": round(float(keep.mean()), 4),
                    "majority_baseline": round(float(np.bincount(yh).max() / len(yh)), 4),
                })
        self.report["seconds"] = round(time.perf_counter() - t0, 2)
        return self

    def cluster(self, emb: np.ndarray) -> np.ndarray:
        """KMeans segment of (real) histories: the reference an expansion must stay in."""
        return self.kmeans.predict(self.scaler.transform(emb))

    def predict(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(segment label, confidence) per generated history."""
        with single_thread():
            p = self.clf.predict_proba(self.scaler.transform(emb))
        return self.clf.classes_[p.argmax(1)], p.max(1)
