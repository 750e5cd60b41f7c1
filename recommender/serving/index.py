"""FAISS top-K over item-tower embeddings, with the similarity the model was trained with.

The score used in training is the inner product of the user and item tower outputs (or their
cosine, when the towers were trained on normalised outputs), so the index is an inner-product
index: ``IndexFlatIP`` (exact) for a catalogue the size of Beauty (12k items), ``IndexIVFFlat``
with the inner-product metric for the million-item scale check. (An L2 index, as in TorchRec's
retrieval example, ranks by ``-|u - v|^2 = 2 u.v - |v|^2 - |u|^2`` and so penalises items with a
large norm: a different ranking from the one the model was trained to produce.)

Already-seen items are removed by asking FAISS for ``k + len(seen)`` candidates and filtering:
exact for the flat index, and no worse than the index's own recall for IVF.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from ecaug_feast.errors import EcaugError

log = logging.getLogger(__name__)

Metric = Literal["ip", "cosine"]
Kind = Literal["flat", "ivf"]


def _as_f32(x: np.ndarray, what: str) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if a.ndim != 2:
        raise EcaugError(f"{what}: expected a 2-d array of embeddings, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise EcaugError(f"{what}: embeddings contain NaN or inf")
    return a


def _normalize(a: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.maximum(norms, 1e-12)


@dataclass(frozen=True)
class SearchResult:
    """``item_ids`` and ``scores`` of shape (n_queries, k); rows shorter than k are padded
    with item id -1 and score -inf (only when fewer than k unseen items exist)."""

    item_ids: np.ndarray
    scores: np.ndarray


class ItemIndex:
    """An inner-product FAISS index over item embeddings, keyed by item id."""

    def __init__(self, index, item_ids: np.ndarray, metric: Metric, kind: Kind):
        self._index = index
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        self.metric: Metric = metric
        self.kind: Kind = kind
        # OpenMP threads per search, set in the *calling* thread (omp_set_num_threads is
        # per-thread, so a pool worker would otherwise search with every core). None = leave as is.
        self.search_threads: int | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        item_ids: Sequence[int] | np.ndarray,
        *,
        metric: Metric = "ip",
        kind: Kind = "flat",
        nlist: int | None = None,
        nprobe: int = 16,
        train_size: int | None = None,
        seed: int = 0,
    ) -> "ItemIndex":
        """Build an index. ``kind="ivf"`` trains ``nlist`` inner-product centroids (default
        ``sqrt(n)``) on a sample of ``train_size`` vectors (default ``64*nlist``)."""
        import faiss

        emb = _as_f32(embeddings, "item embeddings")
        ids = np.asarray(item_ids, dtype=np.int64)
        if ids.shape != (emb.shape[0],):
            raise EcaugError(
                f"item embeddings: {emb.shape[0]} rows but {ids.shape[0]} item ids"
            )
        if len(np.unique(ids)) != len(ids):
            raise EcaugError("item embeddings: duplicate item ids")
        if metric == "cosine":
            emb = _normalize(emb)
        elif metric != "ip":
            raise EcaugError(f"unknown similarity {metric!r} (expected 'ip' or 'cosine')")
        n, d = emb.shape
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "ivf":
            nlist = int(nlist or max(1, min(n // 39, int(np.sqrt(n)))))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            m = min(n, int(train_size or 64 * nlist))
            sample = emb[rng.choice(n, size=m, replace=False)] if m < n else emb
            t0 = time.perf_counter()
            index.train(sample)
            log.info("IVF: trained %d centroids on %d vectors in %.1fs", nlist, m, time.perf_counter() - t0)
            index.nprobe = int(min(nprobe, nlist))
        else:
            raise EcaugError(f"unknown index kind {kind!r} (expected 'flat' or 'ivf')")
        index.add(emb)  # positions 0..n-1 map to ids[pos]
        return cls(index, ids, metric, kind)

    # ------------------------------------------------------------------ querying
    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def nprobe(self) -> int | None:
        return int(self._index.nprobe) if self.kind == "ivf" else None

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if self.kind == "ivf":
            self._index.nprobe = int(value)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[np.ndarray | Sequence[int] | None] | None = None,
    ) -> SearchResult:
        """Top-``k`` items per query by the training similarity, skipping ``exclude[i]`` for
        query ``i`` (item ids; unknown ids are ignored)."""
        q = _as_f32(queries, "query embeddings")
        if q.shape[1] != self.dim:
            raise EcaugError(f"query dimension {q.shape[1]} != index dimension {self.dim}")
        if k < 1:
            raise EcaugError(f"k must be >= 1, got {k}")
        if self.metric == "cosine":
            q = _normalize(q)
        nq = q.shape[0]
        if self.search_threads is not None:
            import faiss

            faiss.omp_set_num_threads(self.search_threads)
        excl = [np.asarray(e if e is not None else [], dtype=np.int64) for e in (exclude or [None] * nq)]
        if len(excl) != nq:
            raise EcaugError(f"{len(excl)} exclusion lists for {nq} queries")
        extra = max((len(e) for e in excl), default=0)
        fetch = min(len(self), k + extra)
        scores, pos = self._index.search(q, fetch)
        out_ids = np.full((nq, k), -1, dtype=np.int64)
        out_sc = np.full((nq, k), -np.inf, dtype=np.float32)
        for i in range(nq):
            valid = pos[i] >= 0  # IVF pads with -1 when the probed lists hold fewer than `fetch`
            ids_i = self.item_ids[pos[i][valid]]
            sc_i = scores[i][valid]
            if len(excl[i]):
                keep = ~np.isin(ids_i, excl[i])
                ids_i, sc_i = ids_i[keep], sc_i[keep]
            m = min(k, len(ids_i))
            out_ids[i, :m] = ids_i[:m]
            out_sc[i, :m] = sc_i[:m]
        return SearchResult(out_ids, out_sc)


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean over queries of |approx ∩ exact| / |exact| (ids of -1 are padding and ignored)."""
    if approx_ids.shape[0] != exact_ids.shape[0]:
        raise EcaugError("recall: different numbers of queries")
    hits, total = 0, 0
    for a, e in zip(approx_ids, exact_ids):
        e = e[e >= 0]
        hits += len(np.intersect1d(a[a >= 0], e))
        total += len(e)
    return hits / max(total, 1)
