"""The item tower option (issue 34): the attribute tower (DropoutNet-style) ranks an item it never
trained on from its attributes; the id tower is unchanged; generated rows stand in through
``set_item_vectors``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recommender.batching import ItemCatalog
from recommender.seq_model import SeqConfig, SeqTwoTower

N_GROUPS, PER_GROUP = 10, 20  # 200 items; item i belongs to group (i - 1) // PER_GROUP


def _cfg(**kw) -> tuple[SeqConfig, ItemCatalog]:
    items = pd.DataFrame({"item_id": np.arange(1, 31), "attributes": [[i % 5 + 1, 6 + i % 2] for i in range(30)]})
    cat = ItemCatalog.from_frame(items)
    return SeqConfig(num_items=30, num_attributes=cat.num_attributes, embedding_dim=8, max_len=6, **kw), cat


def test_the_id_tower_keeps_its_config_and_weights_and_the_attr_tower_round_trips(tmp_path):
    from recommender.checkpoint import load_checkpoint, save_checkpoint

    cfg, cat = _cfg()
    assert "item_tower" not in cfg.to_dict() and "id_dropout" not in cfg.to_dict()  # config.json as before
    keys = set(SeqTwoTower(cfg, catalog=cat).state_dict())
    assert not any(k.startswith(("attr_mlp", "id_known")) for k in keys)
    acfg, _ = _cfg(item_tower="attr", id_dropout=0.5)
    assert SeqConfig.from_dict(acfg.to_dict()) == acfg
    torch.manual_seed(0)
    m = SeqTwoTower(acfg, catalog=cat)
    m.id_known[[3, 7]] = False
    path = save_checkpoint(tmp_path / "attr", m.state_dict(), acfg, cat)
    loaded, _ = load_checkpoint(path)
    assert not loaded.id_known[[3, 7]].any() and loaded.id_known.sum() == 29
    with torch.no_grad():
        assert torch.allclose(loaded.item_vectors(), m.eval().item_vectors())
        # an item without a trained id is its attribute vector alone: the id row does not matter
        before = loaded.item_vectors()[3].clone()
        loaded.ec.embeddings["t_item"].weight[3] += 5.0
        assert torch.equal(loaded.item_vectors()[3], before)
    with pytest.raises(ValueError, match="item_tower must be one of"):
        _cfg(item_tower="text")
    with pytest.raises(ValueError, match="use_attributes must be true"):
        _cfg(item_tower="attr", use_attributes=False)


def test_set_item_vectors_replaces_the_scored_rows_only():
    cfg, cat = _cfg()
    torch.manual_seed(0)
    m = SeqTwoTower(cfg, catalog=cat).eval()
    with torch.no_grad():
        R0 = m.item_vectors().clone()
        v = np.full((2, 8), 0.25, np.float32)
        m.set_item_vectors(np.array([4, 9]), v)
        R = m.item_vectors()
        assert torch.allclose(R[[4, 9]], torch.from_numpy(v)) and torch.equal(R[[1, 2, 3]], R0[[1, 2, 3]])
        m.set_item_vectors(np.array([9]), np.zeros((1, 8), np.float32))  # a later call replaces the row again
        assert torch.equal(m.item_vectors()[9], torch.zeros(8)) and torch.allclose(m.item_vectors()[4], torch.from_numpy(v[0]))
        assert torch.equal(m.item_matrix(), R0)  # the tower itself is untouched
    for idx, vecs, msg in ((np.array([0]), np.zeros((1, 8)), "1..30"), (np.array([1]), np.zeros((1, 3)), r"\[n, 8\]"),
                           (np.array([1]), np.full((1, 8), np.nan), "finite")):
        with pytest.raises(ValueError, match=msg):
            m.set_item_vectors(idx, vecs)


@pytest.fixture(scope="module")
def group_data():
    """300 users, each consuming items of one of 10 groups (the item's attribute is its group);
    2 items per group are cold (never in training). Test targets: a cold item of the user's group
    for even users, a warm one for odd users."""
    from ecaug_feast.jobs.train_data import build_in_memory
    from recommender.evaluate import make_eval_set

    rng = np.random.default_rng(0)
    n_items = N_GROUPS * PER_GROUP
    group = (np.arange(1, n_items + 1) - 1) // PER_GROUP
    cold = np.array([g * PER_GROUP + 1 + k for g in range(N_GROUPS) for k in (0, 1)])
    warm_of = {g: np.setdiff1d(np.flatnonzero(group == g) + 1, cold) for g in range(N_GROUPS)}
    t0 = pd.Timestamp("2014-01-01", tz="UTC")
    rows = []
    for u in range(1, 301):
        g = u % N_GROUPS
        hist = list(rng.choice(warm_of[g], size=8, replace=False))
        target = int(rng.choice(cold[group[cold - 1] == g])) if u % 2 == 0 else hist.pop()
        for k, it in enumerate([*hist, target]):
            rows.append((u, int(it), t0 + pd.Timedelta(days=k)))
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "event_timestamp"])
    # the attribute is the group, plus a second attribute shared by all (a bag of two)
    items = pd.DataFrame({"item_id": np.arange(1, n_items + 1), "attributes": [[int(g) + 1, N_GROUPS + 1] for g in group]})
    last = df.groupby("user_id").cumcount(ascending=False)
    train, valid, test = df[last >= 2], df[last == 1], df[last == 0]
    data = build_in_memory(train, items, valid)
    return data, make_eval_set(valid, [train]), make_eval_set(test, [train, valid]), cold


def _fit(group_data, **kw):
    from recommender.seq_train import SeqTrainConfig, seq_config_for, train_seq

    data, valid, _, cold = group_data
    cfg = seq_config_for(data, embedding_dim=16, num_blocks=1, max_len=10, dropout=0.1, **kw)
    init = None
    if cfg.item_tower == "attr":
        init = {"id_known": torch.ones(cfg.num_items + 1, dtype=torch.bool)}
        init["id_known"][torch.from_numpy(cold)] = False
    return train_seq(data, valid, cfg, SeqTrainConfig(epochs=15, batch_size=32, lr=5e-3, patience=15, threads=1),
                     init_state=init, excluded_items=cold).model


@pytest.mark.slow
def test_the_attribute_tower_ranks_an_untrained_item_by_its_attributes(group_data):
    from recommender.evaluate import cold_warm_metrics
    from recommender.seq_train import seq_scorer

    data, _, test, cold = group_data
    attr = _fit(group_data, item_tower="attr", id_dropout=0.5)
    ids = _fit(group_data, item_tower="id", use_attributes=False)
    m_attr = cold_warm_metrics(seq_scorer(attr, data, test, "test"), test, data.num_items, cold)
    m_id = cold_warm_metrics(seq_scorer(ids, data, test, "test"), test, data.num_items, cold)
    assert m_attr["cold"]["users"] == 150 and m_attr["warm"]["users"] == 150
    # random: 10 of the ~190 unexcluded items, about 0.05. The attribute tower places the cold
    # item among its group's 20 items; the id-only model knows nothing of it.
    assert m_attr["cold"]["recall@10"] > 0.3, m_attr["cold"]
    assert m_id["cold"]["recall@10"] < 0.15, m_id["cold"]
    assert m_attr["cold"]["recall@10"] > 2 * m_id["cold"]["recall@10"]
    assert m_attr["warm"]["recall@10"] > 0.3  # and the warm items still rank
