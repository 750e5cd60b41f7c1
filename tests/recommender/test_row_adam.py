"""The item table's row-wise sparse optimizer on one process (issue 33, "cost that grows linearly"):
lazy Adam is Adam on the rows it is given, a real TorchRec (DMP) step with it moves only the rows
the batch looked up, a tiny model trained with it learns, and ``auto`` keeps dense Adam wherever
the full softmax runs (every Beauty-sized run)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecaug_feast.histories import Histories
from recommender import distributed as D
from recommender.row_adam import RowAdam
from recommender.seq_model import NegativeSampler, SeqConfig, SeqTwoTower, packed_target_batch
from recommender.seq_train import (ITEM_TABLE, SAMPLED_ABOVE, SeqOptimizer, SeqTrainConfig, config_dict, resolve_table_optimizer,
                                   step_loss, target_counts, wrap_dmp)

from tests.recommender.test_seq_model import _catalog, chain_data  # noqa: F401  (the chain fixture)


def test_row_adam_on_every_row_is_torch_adam_and_leaves_untouched_rows_alone():
    torch.manual_seed(0)
    w0 = torch.randn(12, 4)
    a, b = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    ref = torch.optim.Adam([a], lr=0.01, betas=(0.9, 0.98), weight_decay=0.1)
    lazy = RowAdam(b, lr=0.01, betas=(0.9, 0.98), weight_decay=0.1)
    for _ in range(5):
        g = torch.randn(12, 4)
        a.grad, b.grad = g.clone(), g.clone()
        ref.step()
        lazy.step(None)
    assert torch.allclose(a, b, atol=1e-6)
    # only rows 2 and 7 given: the others (weights and moments) do not move, though their
    # momentum is not zero (dense Adam would move them)
    w, m = b.detach().clone(), lazy.exp_avg.clone()
    b.grad = torch.randn(12, 4)
    lazy.step(torch.tensor([2, 7]))
    moved = (b.detach() != w).any(1)
    assert moved.tolist() == [i in (2, 7) for i in range(12)]
    assert torch.equal(lazy.exp_avg[moved.logical_not()], m[moved.logical_not()])
    st = lazy.state_dict()
    again = RowAdam(torch.nn.Parameter(b.detach().clone()))
    again.load_state_dict(st)
    assert again.steps == 6 and torch.equal(again.exp_avg_sq, lazy.exp_avg_sq)


def test_a_sparse_gradient_steps_the_rows_it_names_as_the_dense_one_given_those_rows():
    """The generator's path (ecaug_feast.synth.seq_gan._Adam): a sparse embedding gradient with
    repeated lookups is coalesced and gives the dense gradient's step on its rows."""
    torch.manual_seed(1)
    w0 = torch.randn(20, 3)
    a, b = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    dense, sparse = RowAdam(a, lr=0.05), RowAdam(b, lr=0.05)
    for ids in (torch.tensor([3, 5, 3, 9]), torch.tensor([5, 11, 11])):
        t = torch.randn(len(ids), 3)
        (torch.nn.functional.embedding(ids, a) * t).sum().backward()
        (torch.nn.functional.embedding(ids, b, sparse=True) * t).sum().backward()
        assert b.grad.is_sparse and not a.grad.is_sparse
        dense.step(torch.unique(ids))
        sparse.step()
        dense.zero_grad()
        sparse.zero_grad()
        torch.testing.assert_close(a.data, b.data)
    assert torch.equal(b.data[[0, 1, 2, 4]], w0[[0, 1, 2, 4]])


def test_auto_is_sparse_only_where_the_sampled_loss_runs_on_one_process():
    assert resolve_table_optimizer("auto", "full") == "dense"
    assert resolve_table_optimizer("auto", "sampled") == "sparse"
    assert resolve_table_optimizer("auto", "sampled", world=2) == "dense"
    assert resolve_table_optimizer("auto", "sampled", item_sharding="table_wise") == "dense"
    assert resolve_table_optimizer("sparse", "full") == "sparse" and resolve_table_optimizer("dense", "sampled") == "dense"
    with pytest.raises(ValueError, match="runs on one process"):
        resolve_table_optimizer("sparse", "sampled", world=2)
    with pytest.raises(ValueError, match="table_optimizer must be one of"):
        resolve_table_optimizer("adagrad", "sampled")
    # the default on a Beauty-sized catalogue (the full softmax): dense Adam, as before the option
    small, large = config_dict(SeqTrainConfig(), num_items=12_101), config_dict(SeqTrainConfig(), num_items=SAMPLED_ABOVE + 1)
    assert (small["loss"], small["table_optimizer"], small["table_optimizer_setting"]) == ("full", "dense", "auto")
    assert (large["loss"], large["table_optimizer"]) == ("sampled", "sparse")


def _dmp_steps(table: str, batches: list[np.ndarray], n_items: int = 60) -> tuple[list[dict[str, torch.Tensor]], list[np.ndarray]]:
    """Sampled-loss steps of the real trainer's parts (DMP on one process, TorchRec's dense kernel,
    ``SeqOptimizer``) on ``batches`` of histories; the exported state before and after each step
    and the item ids each step looked up."""
    cat = _catalog(n_items)
    cfg = SeqConfig(num_items=n_items, num_attributes=cat.num_attributes, embedding_dim=8, max_len=6, dropout=0.0)
    info = D.init_distributed()
    try:
        torch.manual_seed(0)
        dmp = wrap_dmp(SeqTwoTower(cfg, device="meta", catalog=cat), info)
        D.load_into_dmp(dmp, SeqTwoTower(cfg, catalog=cat).state_dict())
        opt = SeqOptimizer(dmp, table, lr=0.05)
        states, touched = [D.export_state(dmp, info)], []
        rng = np.random.default_rng(0)
        for values in batches:
            h = Histories(np.arange(len(values)), values.ravel(), np.arange(0, values.size + 1, values.shape[1]))
            sampler = NegativeSampler(target_counts(h, n_items), negatives=4)
            loss, ids = step_loss(dmp, packed_target_batch(h, np.arange(len(values)), 1), sampler, rng, info.device, False)
            opt.zero_grad()
            loss.backward()
            opt.step(ids)
            states.append(D.export_state(dmp, info))
            touched.append(ids.numpy())
    finally:
        D.shutdown(info)
    return states, touched


def test_a_sparse_step_moves_only_the_rows_the_batch_looked_up():
    batches = [np.array([[1, 2, 3, 4], [5, 6, 7, 8]]), np.array([[30, 31, 32], [40, 41, 42]])]
    states, touched = _dmp_steps("sparse", batches)
    for before, after, ids in zip(states, states[1:], touched):
        moved = ((after[ITEM_TABLE] - before[ITEM_TABLE]).abs().sum(1) > 0).numpy()
        looked_up = np.zeros(len(moved), bool)
        looked_up[ids[1:]] = True  # ids[0] is the pad row, looked up but masked out of every input
        assert (moved == looked_up).all()
        assert looked_up.sum() >= 8  # histories, targets and the sampled negatives
        # the rest of the model still trains (dense Adam)
        assert (after["blocks.0.q.weight"] != before["blocks.0.q.weight"]).any()
    # the rows of the first batch that the second did not look up keep their step-1 values
    only_first = np.setdiff1d(touched[0][1:], touched[1])
    assert len(only_first) and torch.equal(states[2][ITEM_TABLE][only_first], states[1][ITEM_TABLE][only_first])
    # dense Adam moves them on their momentum: the property above is the sparse optimizer's
    dense, _ = _dmp_steps("dense", batches)
    assert not torch.equal(dense[2][ITEM_TABLE][only_first], dense[1][ITEM_TABLE][only_first])
    assert torch.equal(dense[1][ITEM_TABLE][touched[0][1:]] != dense[0][ITEM_TABLE][touched[0][1:]],
                       states[1][ITEM_TABLE][touched[0][1:]] != states[0][ITEM_TABLE][touched[0][1:]])


@pytest.mark.slow
def test_a_tiny_model_trained_with_the_sparse_table_optimizer_learns_and_auto_stays_dense(chain_data, tmp_path):  # noqa: F811
    from recommender.checkpoint import load_checkpoint, save_checkpoint
    from recommender.seq_train import evaluate_seq, seq_config_for, train_seq

    data, valid, test = chain_data
    cfg = seq_config_for(data, embedding_dim=16, num_blocks=1, max_len=10, dropout=0.1)
    kw = {"epochs": 25, "batch_size": 32, "lr": 5e-3, "patience": 25, "threads": 1, "loss": "sampled", "negatives": 8, "neg_mix": 0.5}
    res = train_seq(data, valid, cfg, SeqTrainConfig(**kw, table_optimizer="sparse"))
    assert res.history[-1]["loss"] < 0.7 * res.history[0]["loss"]
    m = evaluate_seq(res.model, data, test, "test")
    assert m["recall@10"] > 0.9  # popularity would score about 10/40
    path = save_checkpoint(tmp_path / "seq", res.state, cfg, res.model.catalog, metrics={"test": m},
                           train=config_dict(SeqTrainConfig(**kw, table_optimizer="sparse"), cfg.num_items))
    loaded, meta = load_checkpoint(path)
    assert evaluate_seq(loaded, data, test, "test")["ndcg@10"] == pytest.approx(m["ndcg@10"])
    assert meta["train"]["table_optimizer"] == "sparse"
    # the full softmax under auto: dense Adam, the same run as an explicit dense one
    short = {"epochs": 2, "batch_size": 32, "lr": 5e-3, "threads": 1}
    auto = train_seq(data, None, cfg, SeqTrainConfig(**short))
    dense = train_seq(data, None, cfg, SeqTrainConfig(**short, table_optimizer="dense"))
    assert all(torch.equal(auto.state[k], dense.state[k]) for k in dense.state)
    # with the full softmax every row is a step's row: sparse forced on it is Adam again (to rounding)
    sparse = train_seq(data, None, cfg, SeqTrainConfig(**short, table_optimizer="sparse"))
    assert torch.allclose(sparse.state[ITEM_TABLE], dense.state[ITEM_TABLE], atol=1e-4)


def test_a_row_adam_step_moves_the_tables_version_as_torch_adam_does():
    """The generator's candidate index is rebuilt when its table's version counter moves
    (synth.seq_candidates.network_index): a row-wise step must move it, as dense Adam's does."""
    w = torch.nn.Parameter(torch.randn(6, 2))
    opt = RowAdam(w)
    w.grad = torch.ones(6, 2)
    v0 = w._version
    opt.step(torch.tensor([2]))
    assert w._version != v0
