"""FAISS index: exact search agrees with brute force, seen items are removed, IVF recall."""

from __future__ import annotations

import numpy as np
import pytest

from ecaug_feast.errors import EcaugError
from recommender.serving.index import ItemIndex, recall_at_k


def _brute(q: np.ndarray, emb: np.ndarray, ids: np.ndarray, k: int, exclude=()) -> np.ndarray:
    s = np.asarray(q).reshape(-1) @ emb.T
    order = np.argsort(-s, kind="stable")
    ranked = ids[order]
    ranked = ranked[~np.isin(ranked, np.asarray(exclude, dtype=np.int64))]
    return ranked[:k]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(500, 12)).astype(np.float32)
    emb *= rng.uniform(0.2, 3.0, size=(500, 1)).astype(np.float32)  # varied norms matter for IP
    ids = rng.permutation(np.arange(1000, 1500)).astype(np.int64)  # ids != positions
    q = rng.normal(size=(20, 12)).astype(np.float32)
    return emb, ids, q


def test_flat_ip_matches_brute_force(data):
    emb, ids, q = data
    idx = ItemIndex.build(emb, ids)
    res = idx.search(q, 10)
    for i in range(len(q)):
        np.testing.assert_array_equal(res.item_ids[i], _brute(q[i : i + 1], emb, ids, 10))
        np.testing.assert_allclose(res.scores[i], np.sort(q[i] @ emb.T)[::-1][:10], rtol=1e-5)


def test_cosine_normalises_items_and_queries(data):
    emb, ids, q = data
    idx = ItemIndex.build(emb, ids, metric="cosine")
    res = idx.search(q * 7.0, 5)  # query scale must not matter for cosine
    en = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    for i in range(len(q)):
        np.testing.assert_array_equal(res.item_ids[i], _brute(qn[i : i + 1], en, ids, 5))
    assert res.scores.max() <= 1.0 + 1e-5


def test_ip_ranking_differs_from_l2_on_varied_norms(data):
    # Why the index is IP: an L2 index would rank another list for the same trained score.
    emb, ids, q = data
    ip = ItemIndex.build(emb, ids).search(q, 10).item_ids
    d2 = ((q[:, None, :] - emb[None, :, :]) ** 2).sum(-1)
    l2 = ids[np.argsort(d2, axis=1)[:, :10]]
    assert recall_at_k(l2, ip) < 0.9


def test_excluded_items_are_skipped_and_backfilled(data):
    emb, ids, q = data
    idx = ItemIndex.build(emb, ids)
    top = idx.search(q[:1], 10).item_ids[0]
    seen = np.concatenate([top[:4], [999_999]])  # unknown ids are ignored
    res = idx.search(q[:1], 10, exclude=[seen])
    assert not np.isin(res.item_ids[0], seen).any()
    assert len(set(res.item_ids[0].tolist())) == 10
    np.testing.assert_array_equal(res.item_ids[0], _brute(q[:1], emb, ids, 10, exclude=seen))


def test_k_larger_than_catalogue_pads(data):
    emb, ids, q = data
    idx = ItemIndex.build(emb[:5], ids[:5])
    res = idx.search(q[:2], 8, exclude=[ids[:1], None])
    assert (res.item_ids[0] >= 0).sum() == 4 and (res.item_ids[1] >= 0).sum() == 5
    assert (res.item_ids[0][4:] == -1).all() and np.isneginf(res.scores[0][4:]).all()


def test_ivf_recall_against_exact():
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(50, 16)).astype(np.float32)
    emb = centers[rng.integers(0, 50, 20_000)] + 0.3 * rng.normal(size=(20_000, 16)).astype(np.float32)
    ids = np.arange(1, 20_001)
    q = centers[rng.integers(0, 50, 50)] + 0.3 * rng.normal(size=(50, 16)).astype(np.float32)
    exact = ItemIndex.build(emb, ids).search(q, 100).item_ids
    ivf = ItemIndex.build(emb, ids, kind="ivf", nlist=64, nprobe=8)
    r8 = recall_at_k(ivf.search(q, 100).item_ids, exact)
    ivf.nprobe = 64  # every list probed: IVF-Flat becomes exact
    r_all = recall_at_k(ivf.search(q, 100).item_ids, exact)
    assert r8 >= 0.9, r8
    assert r_all == pytest.approx(1.0)
    ivf.nprobe = 1
    assert recall_at_k(ivf.search(q, 100).item_ids, exact) <= r8


@pytest.mark.parametrize(
    "emb, ids, match",
    [
        (np.array([[1.0, np.nan]]), [1], "NaN"),
        (np.ones((2, 3)), [1, 1], "duplicate"),
        (np.ones((2, 3)), [1], "2 rows but 1"),
        (np.ones(3), [1, 2, 3], "2-d"),
    ],
)
def test_bad_embeddings_are_rejected(emb, ids, match):
    with pytest.raises(EcaugError, match=match):
        ItemIndex.build(emb, ids)


def test_query_dimension_checked(data):
    emb, ids, _ = data
    with pytest.raises(EcaugError, match="dimension"):
        ItemIndex.build(emb, ids).search(np.ones((1, 3)), 5)
