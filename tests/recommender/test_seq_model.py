"""The sequence two-tower: history encoding, causality, training, checkpoint and serving parity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recommender.batching import ItemCatalog
from ecaug_feast.histories import Histories
from recommender.seq_model import SeqConfig, SeqTwoTower, SeqUserEncoder, full_softmax_loss, packed_target_batch, pad_batch, target_batch


def _catalog(n_items: int = 30) -> ItemCatalog:
    items = pd.DataFrame({"item_id": np.arange(1, n_items + 1), "attributes": [[i % 5 + 1, 6 + i % 2] for i in range(n_items)]})
    return ItemCatalog.from_frame(items)


def _model(n_items: int = 30, **kw) -> SeqTwoTower:
    cat = _catalog(n_items)
    torch.manual_seed(0)
    return SeqTwoTower(SeqConfig(num_items=n_items, num_attributes=cat.num_attributes, embedding_dim=8, max_len=6, **kw), catalog=cat).eval()


def test_histories_from_recent_items_reverse_truncate_and_drop_unknown():
    # recent_items are most recent first; histories are oldest first, newest max_len kept
    h = Histories.from_recent_items(np.array([1, 2, 3]), [[5, 4, 3, 2, 1], [], [9, 99, 7]], max_len=3, num_items=10)
    assert h.values[h.offsets[0]:h.offsets[1]].tolist() == [3, 4, 5]
    assert h.lengths.tolist() == [3, 0, 2]
    assert h.values[h.offsets[2]:h.offsets[3]].tolist() == [7, 9]  # 99 is not in the catalogue


def test_pad_and_target_batches():
    h = Histories(np.array([1, 2]), np.array([1, 2, 3, 4, 7, 8]), np.array([0, 4, 6]))
    x, ln = pad_batch(h, np.array([1, 0]))
    assert x.tolist() == [[7, 8, 0, 0], [1, 2, 3, 4]] and ln.tolist() == [2, 4]
    x, y, ln = target_batch(h, np.array([0, 1]))
    # position k of the input predicts item k+1: every position is a training example
    assert x.tolist() == [[1, 2, 3], [7, 0, 0]]
    assert y.tolist() == [[2, 3, 4], [8, 0, 0]]
    assert ln.tolist() == [3, 1]


def test_combined_histories_train_on_every_item_under_synthetic_ids():
    """``jobs.finetune.combine_histories``: the real histories first, then the extra ones (newest
    ``max_len`` each) under synthetic user ids; every item is a target."""
    from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE
    from ecaug_feast.jobs.finetune import combine_histories

    real = Histories(np.array([1, 2]), np.array([1, 2, 7]), np.array([0, 2, 3]))
    pool = [np.array([5, 6, 7]), np.array([9, 5, 6, 4])]
    h = combine_histories(real, pool, max_len=3)
    assert h.user_ids.tolist() == [1, 2, SYNTHETIC_USER_ID_BASE, SYNTHETIC_USER_ID_BASE + 1]
    x, y, ln = target_batch(h, np.arange(4))
    assert x.tolist() == [[1, 0], [0, 0], [5, 6], [5, 6]] and ln.tolist() == [1, 0, 2, 2]
    assert y.tolist() == [[2, 0], [0, 0], [6, 7], [6, 4]]


def test_evaluation_reads_the_inputs_it_is_given():
    """``evaluate_seq(..., inputs=)`` scores users from the histories given, not the split's own."""
    from recommender.seq_train import seq_scorer

    m = _model()
    es = type("ES", (), {"users": np.array([1, 2])})()
    data = type("D", (), {"info": {}})()
    a = Histories(np.array([1, 2]), np.array([3, 4, 5]), np.array([0, 2, 3]))
    b = Histories(np.array([1, 2]), np.array([9, 3, 4, 5]), np.array([0, 3, 4]))
    sa, sb = seq_scorer(m, data, es, inputs=a)(np.arange(2)), seq_scorer(m, data, es, inputs=b)(np.arange(2))
    assert torch.allclose(sa[1], sb[1]) and not torch.allclose(sa[0], sb[0])


def test_next_item_scorer_scores_as_evaluation_does_reading_the_newest_max_len():
    """The teacher's scores (``next_item_scorer``) equal the evaluation scorer's for the same
    histories; a history longer than ``max_len`` (6) scores as its newest 6 items; the padding
    column is -inf."""
    from recommender.seq_train import next_item_scorer, seq_scorer

    m = _model()
    v, o = np.array([3, 4, 5, 1, 2, 3, 4, 5, 6, 7, 8]), np.array([0, 3, 11])
    got = next_item_scorer(m)(v, o)
    es = type("ES", (), {"users": np.array([10, 11])})()
    data = type("D", (), {"info": {}})()
    want = seq_scorer(m, data, es, inputs=Histories(np.array([10, 11]), np.array([3, 4, 5, 3, 4, 5, 6, 7, 8]), np.array([0, 3, 9])))(np.arange(2))
    assert got.shape == (2, 31) and torch.isinf(got[:, 0]).all()
    assert torch.allclose(got[:, 1:], want[:, 1:], atol=1e-5)


def test_packed_chunks_give_the_same_loss_and_gradients_as_one_padded_block():
    """Cutting a batch into chunks of similar length only removes padding: the same users, the
    same positions, the same loss value and the same gradients (dropout off)."""
    rng = np.random.default_rng(0)
    lens = rng.integers(1, 7, size=24)
    vals = rng.integers(1, 31, size=int(lens.sum()))
    h = Histories(np.arange(24), vals, np.concatenate([[0], np.cumsum(lens)]))
    rows = rng.permutation(24)
    m = _model()

    def loss_and_grads(chunks: int):
        m.zero_grad()
        parts = packed_target_batch(h, rows, chunks)
        xs, ys, ls = ([torch.from_numpy(p[i]) for p in parts] for i in range(3))
        H, R = m(xs, ls)
        loss = full_softmax_loss(H, R, ys)
        loss.backward()
        return loss.detach(), {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}, parts

    one, g1, p1 = loss_and_grads(1)
    four, g4, p4 = loss_and_grads(4)
    assert len(p1) == 1 and len(p4) == 4
    assert sum(p[0].size for p in p4) < p1[0][0].size  # less padding
    assert sum(int((p[1] > 0).sum()) for p in p4) == int((p1[0][1] > 0).sum())  # same targets
    assert torch.allclose(one, four, atol=1e-6)
    assert g1.keys() == g4.keys() and all(torch.allclose(g1[k], g4[k], atol=1e-6) for k in g1)


def test_user_state_is_causal():
    """A position's state depends on earlier items only: changing later items changes nothing."""
    m = _model()
    R = m.item_matrix()
    a = torch.tensor([[3, 4, 5, 6]])
    b = torch.tensor([[3, 4, 9, 1]])
    ln = torch.tensor([4])
    Ha, Hb = m.encode(R, a, ln), m.encode(R, b, ln)
    assert torch.allclose(Ha[:, :2], Hb[:, :2], atol=1e-6)
    assert not torch.allclose(Ha[:, 2:], Hb[:, 2:], atol=1e-4)


def test_padding_does_not_change_a_users_state():
    m = _model()
    R = m.item_matrix()
    one = m.last_state(R, torch.tensor([[3, 4, 5]]), torch.tensor([3]))
    padded = m.last_state(R, torch.tensor([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5]]), torch.tensor([3, 5]))[:1]
    assert torch.allclose(one, padded, atol=1e-5)


def test_full_softmax_loss_ignores_padding_and_the_pad_item():
    torch.manual_seed(0)
    H, R = torch.randn(2, 3, 4), torch.randn(6, 4)
    y = torch.tensor([[1, 2, 0], [3, 0, 0]])
    got = full_softmax_loss(H, R, y)
    logits = H[y > 0] @ R.T
    logits[:, 0] = float("-inf")
    assert torch.allclose(got, torch.nn.functional.cross_entropy(logits, y[y > 0]))


def test_serving_encoder_matches_the_evaluation_path():
    """Serving reads ``recent_items`` (most recent first) from Redis; evaluation builds histories
    from the same feature: both must give the same vectors."""
    from recommender.seq_train import user_vectors

    m = _model()
    recent = [[5, 4, 3], [7], [], [30, 2, 1, 9, 8, 7, 6, 5]]
    enc = SeqUserEncoder(m)
    got = enc(recent)
    h = Histories.from_recent_items(np.arange(1, 5), recent, m.cfg.max_len, m.cfg.num_items)
    with torch.no_grad():
        ref = user_vectors(m, m.item_matrix(), h, np.arange(1, 5)).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert not got[2].any()  # no history: zero vector, which the serving policy treats as cold


@pytest.fixture(scope="module")
def chain_data():
    """200 users walking a fixed chain of 40 items (item i is followed by i+1): a pattern a
    sequence model must learn and popularity cannot."""
    from ecaug_feast.jobs.train_data import build_in_memory
    from recommender.evaluate import make_eval_set

    rng = np.random.default_rng(0)
    rows = []
    t0 = pd.Timestamp("2014-01-01", tz="UTC")
    for u in range(1, 201):
        start, n = int(rng.integers(1, 30)), int(rng.integers(5, 10))
        for k in range(n):
            rows.append((u, start + k, t0 + pd.Timedelta(days=k)))
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "event_timestamp"])
    items = pd.DataFrame({"item_id": np.arange(1, 41), "attributes": [[1 + i % 3] for i in range(40)]})
    last = df.groupby("user_id").cumcount(ascending=False)
    train, valid, test = df[last >= 2], df[last == 1], df[last == 0]
    data = build_in_memory(train, items, valid)
    return data, make_eval_set(valid, [train]), make_eval_set(test, [train, valid])


@pytest.mark.slow
def test_training_learns_the_next_item_and_the_checkpoint_round_trips(chain_data, tmp_path):
    from recommender.checkpoint import load_checkpoint, save_checkpoint
    from recommender.seq_train import SeqTrainConfig, evaluate_seq, seq_config_for, train_seq

    data, valid, test = chain_data
    cfg = seq_config_for(data, embedding_dim=16, num_blocks=1, max_len=10, dropout=0.1)
    res = train_seq(data, valid, cfg, SeqTrainConfig(epochs=25, batch_size=32, lr=5e-3, patience=25, threads=1))
    m = evaluate_seq(res.model, data, test, "test", buckets=True)
    assert m["recall@10"] > 0.9  # popularity would score about 10/40
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert set(m["buckets"]) == {"1", "2-3", "4-7", "8+"}
    path = save_checkpoint(tmp_path / "seq", res.state, cfg, res.model.catalog, metrics={"test": m})
    loaded, meta = load_checkpoint(path)
    assert isinstance(loaded, SeqTwoTower) and meta["model"]["kind"] == "sequence"
    assert evaluate_seq(loaded, data, test, "test")["ndcg@10"] == pytest.approx(m["ndcg@10"])


def test_a_dmp_training_step_updates_both_tables():
    """The tables run on TorchRec's data-parallel dense kernel under DMP; torch warns that the
    fbgemm lookup has no autograd kernel of its own, so check that gradients really reach them."""
    from recommender import distributed as D
    from recommender.seq_train import wrap_dmp

    cat = _catalog(30)
    cfg = SeqConfig(num_items=30, num_attributes=cat.num_attributes, embedding_dim=8, max_len=6)
    info = D.init_distributed()
    try:
        torch.manual_seed(0)
        dmp = wrap_dmp(SeqTwoTower(cfg, device="meta", catalog=cat), info)
        D.load_into_dmp(dmp, SeqTwoTower(cfg, catalog=cat).state_dict())
        opt = torch.optim.Adam(dmp.parameters(), lr=1e-2)
        before = D.export_state(dmp, info)
        H, R = dmp(torch.tensor([[1, 2, 3, 0], [5, 6, 7, 8]]), torch.tensor([3, 4]))
        full_softmax_loss(H, R, torch.tensor([[2, 3, 4, 0], [6, 7, 8, 9]])).backward()
        opt.step()
        after = D.export_state(dmp, info)
    finally:
        D.shutdown(info)
    for k in ("ec.embeddings.t_item.weight", "ebc.embedding_bags.t_attr.weight"):
        assert (after[k] - before[k]).abs().sum() > 0, k

