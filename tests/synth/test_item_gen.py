"""Item-side generators (``synth.item_gen``): the base's checks, ``attr_mean`` exactly, ``gar`` on a
planted problem where attributes determine the warm vectors."""

from __future__ import annotations

import numpy as np
import pytest

from ecaug_feast.errors import EcaugError
from ecaug_feast.histories import rows_to_csr
from ecaug_feast.synth.item_gen import (ITEM_GENERATORS, WEIGHTINGS, AttrMean, AttrMeanConfig, GARConfig, GARGenerator,
                                        ItemGenerator)

FAST_GAR = GARConfig(epochs=25, batch_size=64, hidden=64, attr_dim=32, seed=0)


def planted(seed: int = 0, n_items: int = 300, n_cat: int = 6, n_brand: int = 30, d: int = 16, m: int = 200):
    """Items 1..n with a category and a brand; an item's true vector = category + brand vector +
    noise; 20 % of the items held out (cold). Returns (attrs, V, users, warm, cold)."""
    rng = np.random.default_rng(seed)
    C, B = rng.normal(size=(n_cat, d)), rng.normal(size=(n_brand, d))
    cat, brand = rng.integers(0, n_cat, n_items + 1), rng.integers(0, n_brand, n_items + 1)
    V = (C[cat] + B[brand] + 0.3 * rng.normal(size=(n_items + 1, d))).astype(np.float32)
    V[0] = 0.0
    attrs = rows_to_csr([[]] + [[int(cat[i]), n_cat + int(brand[i])] for i in range(1, n_items + 1)])
    users = rng.normal(size=(m, d)).astype(np.float32)
    items = rng.permutation(np.arange(1, n_items + 1))
    return attrs, V, users, np.sort(items[n_items // 5 :]), np.sort(items[: n_items // 5])


def true_user_auc(V: np.ndarray, users: np.ndarray, cold: np.ndarray, G: np.ndarray, k: int = 10) -> float:
    """Mean over cold items of the AUC of the generated vector's scores: the item's true users (its
    top-k under the true vector) against the other users."""
    out = []
    for j, i in enumerate(cold):
        true = np.argsort(-(users @ V[i]))[:k]
        ranks = (users @ G[j]).argsort().argsort()
        out.append((ranks[true].mean() - (k - 1) / 2) / (len(users) - k))
    return float(np.mean(out))


def test_registry_names_the_two_generators():
    assert ITEM_GENERATORS == {"attr_mean": AttrMean, "gar": GARGenerator}
    for cls in ITEM_GENERATORS.values():
        assert issubclass(cls, ItemGenerator)


@pytest.mark.parametrize("name", sorted(ITEM_GENERATORS))
def test_base_rejects_bad_shapes_and_types_with_one_line(name):
    attrs, V, users, warm, cold = planted(n_items=40)
    gen = ITEM_GENERATORS[name]()
    cases = [
        (lambda: gen.fit(attrs, warm, V[warm[:-1]]), "warm_vecs has"),                       # rows != len(warm_idx)
        (lambda: gen.fit(attrs, warm, V[warm][:, 0]), "warm_vecs must be a 2-D float"),      # 1-D
        (lambda: gen.fit(attrs, warm, V[warm].astype(np.int64)), "warm_vecs must be a 2-D float"),
        (lambda: gen.fit(attrs, warm.astype(float), V[warm]), "warm_idx must be a 1-D integer"),
        (lambda: gen.fit(attrs, np.array([1, 1]), V[[1, 1]]), "more than once"),
        (lambda: gen.fit(attrs, np.array([41]), V[[1]]), "must index the 41 rows"),
        (lambda: gen.fit(attrs, warm, V[warm], users[:, :3]), "user_vecs has dimension 3"),
        (lambda: gen.fit(attrs, warm, np.where(np.isin(np.arange(len(warm)), [0])[:, None], np.nan, V[warm])), "NaN"),
        (lambda: gen.fit((attrs[0], attrs[1][:-1]), warm, V[warm]), "offsets must"),
        (lambda: gen.fit("attrs", warm, V[warm]), "ItemCatalog or a (values, offsets) pair"),
        (lambda: gen.generate(attrs, cold), "generate before fit"),
    ]
    for call, msg in cases:
        with pytest.raises(EcaugError) as err:
            call()
        assert msg in str(err.value) and "\n" not in str(err.value), str(err.value)
    gen.fit(attrs, warm, V[warm], users)
    with pytest.raises(EcaugError, match="must index"):
        gen.generate(attrs, np.array([-1]))
    out = gen.generate(attrs, cold)
    assert out.dtype == np.float32 and out.shape == (len(cold), V.shape[1])
    assert gen.generate(attrs, np.zeros(0, np.int64)).shape == (0, V.shape[1])


def test_config_of_another_generator_is_refused():
    with pytest.raises(EcaugError, match="AttrMeanConfig"):
        AttrMean(GARConfig())
    with pytest.raises(ValueError, match="weighting"):
        AttrMeanConfig(weighting="median")
    with pytest.raises(ValueError, match="alpha"):
        GARConfig(alpha=2.0)


def test_attr_mean_is_exact_on_a_toy_catalog():
    # items 1..4 warm, 5..7 to generate; attribute 0 on items 1, 2; attribute 1 on items 2, 3; 2 on 4
    attrs = rows_to_csr([[], [0], [0, 1], [1, 1], [2], [0, 1], [2, 9], [9]])  # item 3 lists 1 twice; 9 unseen
    warm = np.array([1, 2, 3, 4])
    V = np.array([[1, 0], [3, 0], [0, 2], [5, 5]], np.float32)
    m0, m1, m2 = np.array([2, 0]), np.array([1.5, 1]), np.array([5, 5])
    w = lambda n: np.log(5 / (1 + n)) + 1  # idf with 4 warm items
    for weighting, expect5 in (("uniform", (m0 + m1) / 2), ("count", (2 * m0 + 2 * m1) / 4),
                               ("idf", (w(2) * m0 + w(2) * m1) / (2 * w(2)))):
        gen = AttrMean(AttrMeanConfig(weighting=weighting)).fit(attrs, warm, V)
        out = gen.generate(attrs, np.array([5, 6, 7, 1]))
        np.testing.assert_allclose(out[0], expect5, rtol=1e-6)
        np.testing.assert_allclose(out[1], m2, rtol=1e-6)             # the unseen attribute 9 is ignored
        np.testing.assert_allclose(out[2], V.mean(0), rtol=1e-6)      # no known attribute: the warm mean
        np.testing.assert_allclose(out[3], m0, rtol=1e-6)
    # idf weighs a rare attribute more: attribute 0 on three warm items, attribute 1 on one
    attrs = rows_to_csr([[], [0], [0], [0, 1], [0, 1]])
    V = np.array([[0, 0], [0, 0], [4, 4]], np.float32)
    by = {w: AttrMean(AttrMeanConfig(weighting=w)).fit(attrs, np.array([1, 2, 3]), V).generate(attrs, np.array([4]))[0]
          for w in WEIGHTINGS}
    m0, m1 = V.mean(0), V[2]
    np.testing.assert_allclose(by["uniform"], (m0 + m1) / 2, rtol=1e-6)
    assert by["count"][0] < by["uniform"][0] < by["idf"][0] < m1[0]

def test_attr_mean_leave_one_out_equals_a_fit_without_the_item():
    """What gar trains its correction on: each warm item's attr_mean vector as if it were cold.
    With uniform weights it must equal a fit on the other warm items, generating that item."""
    attrs, V, users, warm, _ = planted(n_items=60, n_brand=12)
    gen = AttrMean(AttrMeanConfig(weighting="uniform")).fit(attrs, warm, V[warm])
    loo = gen.leave_one_out(*attrs, warm, V[warm])
    for j in (0, 5, len(warm) - 1):
        rest = np.delete(warm, j)
        alone = AttrMean(AttrMeanConfig(weighting="uniform")).fit(attrs, rest, V[rest]).generate(attrs, warm[j : j + 1])[0]
        np.testing.assert_allclose(loo[j], alone, rtol=1e-5, atol=1e-5)
    assert not np.allclose(loo, gen.generate(attrs, warm))  # the item's own vector did count in the plain fit


def test_gar_ranks_held_out_items_true_users_above_random_and_beats_random_vectors():
    attrs, V, users, warm, cold = planted(seed=0)
    gen = GARGenerator(FAST_GAR).fit(attrs, warm, V[warm], users)
    G = gen.generate(attrs, cold)
    auc = true_user_auc(V, users, cold, G)
    floor = true_user_auc(V, users, cold, np.random.default_rng(1).normal(size=G.shape).astype(np.float32))
    assert auc > 0.85, auc
    assert auc > floor + 0.25, (auc, floor)
    assert gen.report["steps"] > 0 and np.isfinite(gen.report["d_loss_last_epoch"])


def test_gar_without_user_vectors_still_learns_the_map():
    attrs, V, users, warm, cold = planted(seed=1)
    G = GARGenerator(FAST_GAR).fit(attrs, warm, V[warm]).generate(attrs, cold)
    assert true_user_auc(V, users, cold, G) > 0.8


def test_gar_is_deterministic_by_seed_and_leaves_the_global_rng_alone():
    attrs, V, users, warm, cold = planted(seed=2, n_items=120)
    torch = pytest.importorskip("torch")
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = GARGenerator(FAST_GAR).fit(attrs, warm, V[warm], users).generate(attrs, cold)
    after = torch.rand(3)
    b = GARGenerator(FAST_GAR).fit(attrs, warm, V[warm], users).generate(attrs, cold)
    c = GARGenerator(GARConfig(**{**FAST_GAR.__dict__, "seed": 1})).fit(attrs, warm, V[warm], users).generate(attrs, cold)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert torch.equal(before, after)  # fit ran in a forked RNG


# ---------------------------------------------------------------------------------------------
# synthetic interactions for cold items: the ``cold_items`` pool of ``ecaug augment``

TINY_GAN = dict(embedding_dim=16, num_layers=1, num_heads=1, max_len=20, mle_epochs=2, adv_steps=3, adv_batch=16,
                batch_size=32, gen_max_len=8, threads=1, device="cpu")


def cold_catalogue(seed: int = 0, n_items: int = 200, n_cat: int = 8, n_users: int = 400, n_cold: int = 30):
    """Items with a category (0..n_cat-1) and a brand; users who buy mostly in one category;
    ``n_cold`` items never bought (every interaction with them removed, as the cold split does).
    Returns (TrainingHistories, cold items, category of each item)."""
    import pandas as pd

    from ecaug_feast.histories import Histories
    from ecaug_feast.jobs.augment_seq import TrainingHistories
    from ecaug_feast.synth.seq_pipeline import HistoryTimes

    rng = np.random.default_rng(seed)
    cat = np.concatenate([[-1], rng.integers(0, n_cat, n_items)])
    brand = np.concatenate([[-1], rng.integers(n_cat, n_cat + 25, n_items)])
    cold = np.sort(rng.choice(np.arange(1, n_items + 1), n_cold, replace=False))
    warm = np.setdiff1d(np.arange(1, n_items + 1), cold)
    rows, users, times = [], [], []
    t0 = pd.Timestamp("2014-01-01", tz="UTC")
    for u in range(n_users):
        pref = warm[cat[warm] == u % n_cat]
        n = int(rng.integers(3, 10))
        h = np.where(rng.random(n) < 0.85, rng.choice(pref, n), rng.choice(warm, n))
        rows.append(h)
        users += [u + 1] * n
        times += list(t0 + pd.to_timedelta(np.sort(rng.integers(0, 300, n)), unit="D"))
    hist = Histories.from_lists(np.arange(1, n_users + 1), rows)
    train = pd.DataFrame({"user_id": users, "item_id": np.concatenate(rows), "event_timestamp": times})
    attributes = {i: [int(cat[i]), int(brand[i])] for i in range(1, n_items + 1)}
    th = TrainingHistories(hist, HistoryTimes.of(train, hist.user_ids), train, attributes, {}, n_items)
    return th, cold, cat


def test_cold_item_pool_ends_in_cold_items_from_matching_users_and_passes_the_labeler(tmp_path):
    from ecaug_feast.jobs.augment_seq import POOLS, seq_config

    th, cold, cat = cold_catalogue()
    assert POOLS["cold_items"].publishable  # it runs the product's labeler and gates
    cfg = seq_config({"gan": dict(TINY_GAN), "expansions": 2}, seed=0)
    res = POOLS["cold_items"].build(th, cfg, None, tmp_path, False)
    m = res.metrics
    assert m["cold_items"] == len(cold) and m["generated"] == 2 * len(cold)
    assert m["labeler"] and m["accepted"] == len(res.histories) > 0
    assert m["accepted"] + m["dropped_low_confidence"] + m["dropped_off_segment"] + m["dropped_privacy"] == m["generated"]
    assert m["gate"] in ("pass", "fail") and "c2st_auc_sequences" in m  # the realism gate read them
    real = th.histories.to_lists()
    same_cat = []
    for h, src in zip(res.histories, res.source):
        assert h[-1] in cold and len(h) <= 5                      # ends in a cold item, short
        assert not np.isin(h[:-1], cold).any()
        np.testing.assert_array_equal(h[:-1], real[src][-(len(h) - 1):])  # the user's last items
        assert {th.attributes[int(i)][0] for i in h[:-1]} | {th.attributes[int(i)][1] for i in h[:-1]} & set(th.attributes[int(h[-1])])
        same_cat.append(np.mean(cat[h[:-1]] == cat[h[-1]]))
    # users are matched to the cold item: their recent items share its category far above chance (1/8)
    assert np.mean(same_cat) > 0.5, np.mean(same_cat)
    assert res.end_ns is not None and len(res.end_ns) == len(res.histories)


def test_cold_item_pool_is_refused_by_the_labeler_it_runs(tmp_path):
    """The same pool with a labeler threshold no history can reach: all dropped, the gate fails."""
    from ecaug_feast.jobs.augment_seq import POOLS, seq_config

    th, cold, _ = cold_catalogue(seed=1)
    cfg = seq_config({"gan": dict(TINY_GAN), "labeler": {"threshold": 1.01}}, seed=0)
    res = POOLS["cold_items"].build(th, cfg, None, tmp_path, False)
    assert res.histories == [] and res.metrics["dropped_low_confidence"] == res.metrics["generated"] == len(cold)
    assert res.metrics["gate"] == "fail" and "no history accepted" in res.metrics["gate_reasons"]


def test_no_cold_item_gives_an_empty_failed_pool(tmp_path):
    from ecaug_feast.jobs.augment_seq import POOLS, seq_config

    th, _, _ = cold_catalogue(n_cold=0)
    res = POOLS["cold_items"].build(th, seq_config({"gan": dict(TINY_GAN)}, seed=0), None, tmp_path, False)
    assert res.histories == [] and res.metrics["gate"] == "fail" and "no cold item" in res.metrics["gate_reasons"][0]
