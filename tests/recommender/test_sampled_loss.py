"""The sequence model's sampled softmax with logQ correction (issue 33, item 1): exact when the
sample is the catalogue, the correction's shift, accidental hits, gradients only on the rows a
step touches, ``auto``'s choice, and a tiny model that learns next-item chains with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecaug_feast.histories import Histories
from recommender.seq_model import (NegativeSampler, full_softmax_loss, packed_target_batch, sampled_batch, sampled_logits,
                                   sampled_softmax_loss)
from recommender.seq_train import SAMPLED_ABOVE, SeqTrainConfig, config_dict, resolve_loss, target_counts

from tests.recommender.test_seq_model import _model, chain_data  # noqa: F401  (the chain fixture)


def test_sampled_loss_is_the_full_softmax_when_the_sample_is_the_catalogue():
    torch.manual_seed(0)
    H, R = torch.randn(3, 4, 8), torch.randn(21, 8)
    y = torch.tensor([[1, 5, 0, 0], [7, 7, 20, 3], [2, 0, 0, 0]])
    full = full_softmax_loss(H, R, y)
    got = sampled_softmax_loss(H, R, y, candidates=torch.arange(1, 21))  # the target is masked among them, kept at column 0
    assert torch.allclose(got, full, atol=1e-6)
    # a real sample is not the full softmax
    assert not torch.allclose(sampled_softmax_loss(H, R, y, candidates=torch.arange(1, 6)), full, atol=1e-3)


def test_logq_correction_shifts_every_logit_by_minus_log_q():
    torch.manual_seed(1)
    h, R = torch.randn(5, 8), torch.randn(12, 8)
    y, cand = torch.tensor([1, 2, 3, 4, 5]), torch.tensor([6, 7, 8, 9, 10, 11])
    log_q = torch.randn(12)
    plain, corrected = sampled_logits(h, R, y, cand), sampled_logits(h, R, y, cand, log_q)
    assert torch.allclose(corrected[:, 0] - plain[:, 0], -log_q[y], atol=1e-6)
    assert torch.allclose(corrected[:, 1:] - plain[:, 1:], -log_q[cand].expand(5, -1), atol=1e-6)


def test_accidental_hits_of_the_target_among_candidates_are_masked():
    torch.manual_seed(2)
    h, R = torch.randn(3, 8), torch.randn(10, 8)
    y, cand = torch.tensor([4, 6, 9]), torch.tensor([1, 4, 6, 8])
    lg = sampled_logits(h, R, y, cand)
    assert torch.isinf(lg[0, 2]) and torch.isinf(lg[1, 3])  # row 0's target 4, row 1's target 6
    assert torch.isfinite(lg[2]).all() and torch.isfinite(lg[:, 0]).all()
    assert int(torch.isinf(lg).sum()) == 2


def test_sampler_draws_its_mixture_and_logq_is_the_inclusion_probability():
    counts = np.array([0, 100, 10, 1, 0, 0, 0, 0, 0, 0, 0])  # 10 items
    s = NegativeSampler(counts, negatives=4000, mix=1.0, alpha=1.0)
    d = np.bincount(s.sample(np.random.default_rng(0)), minlength=11)
    assert d[4:].sum() == 0 and d[0] == 0 and d[1] > 8 * d[2] > 0  # all popularity: only counted items
    u = NegativeSampler(counts, negatives=4000, mix=0.0)
    du = np.bincount(u.sample(np.random.default_rng(0)), minlength=11)[1:]
    assert du.min() > 300  # uniform over the 10 items
    # inclusion probability 1 - exp(-E), E = N * count/total + S * Q_mix
    s2 = NegativeSampler(counts, negatives=8, mix=0.5, alpha=1.0)
    e = 3 * 10 / 111 + 8 * (0.5 / 10 + 0.5 * 10 / 111)
    assert s2.log_q(np.array([2]), n_targets=3)[0] == pytest.approx(np.log(1 - np.exp(-e)))


def test_sampled_batch_maps_a_batch_onto_the_rows_it_touches():
    h = Histories(np.arange(3), np.array([3, 9, 4, 12, 12, 5, 7]), np.array([0, 3, 5, 7]))
    parts = packed_target_batch(h, np.arange(3), 2)
    s = NegativeSampler(np.ones(41), negatives=5)
    ids, xs, ys, cand, log_q = sampled_batch(parts, s, np.random.default_rng(0))
    assert ids[0] == 0 and (np.diff(ids) > 0).all()
    for p, x, y in zip(parts, xs, ys):
        assert (ids[x] == p[0]).all() and (ids[y] == p[1]).all()  # the pad stays row 0
    assert {9, 4, 12, 7} <= set(ids[cand].tolist()) and 0 not in ids[cand]
    assert len(cand) <= 4 + 5 and log_q[0] == 0 and (log_q[1:] < 0).all()


def test_gradients_reach_only_the_rows_a_sampled_step_touches():
    m = _model(200).train()
    h = Histories(np.arange(2), np.array([3, 4, 5, 6, 10, 11, 12]), np.array([0, 4, 7]))
    parts = packed_target_batch(h, np.arange(2), 1)
    s = NegativeSampler(target_counts(h, 200), negatives=8)
    ids, xs, ys, cand, log_q = sampled_batch(parts, s, np.random.default_rng(0))
    H, R = m([torch.from_numpy(x) for x in xs], [torch.from_numpy(p[2]) for p in parts], torch.from_numpy(ids))
    assert R.shape[0] == len(ids) < 30  # the item tower of the touched rows only
    sampled_softmax_loss(H, R, [torch.from_numpy(y) for y in ys], torch.from_numpy(cand), torch.from_numpy(log_q).float()).backward()
    g = m.ec.embeddings["t_item"].weight.grad
    touched = np.zeros(201, dtype=bool)
    touched[ids] = True
    touched[0] = False  # the pad row is looked up, but masked out of every input
    assert (g[torch.from_numpy(~touched)] == 0).all()
    assert (g[torch.from_numpy(ids[1:])].abs().sum(1) > 0).all()


def test_auto_takes_the_full_softmax_up_to_the_threshold_and_the_checkpoint_records_the_loss():
    assert resolve_loss("auto", SAMPLED_ABOVE) == "full" and resolve_loss("auto", SAMPLED_ABOVE + 1) == "sampled"
    assert resolve_loss("sampled", 10) == "sampled" and resolve_loss("full", 10**7) == "full"
    with pytest.raises(ValueError, match="loss must be one of"):
        resolve_loss("gbce", 10)
    d = config_dict(SeqTrainConfig(), num_items=SAMPLED_ABOVE * 2)
    assert d["loss"] == "sampled" and d["loss_setting"] == "auto" and d["negatives"] == 4096


def test_target_counts_skip_first_items_and_non_targets():
    h = Histories(np.arange(2), np.array([1, 2, 2, 3, 1]), np.array([0, 3, 5]), targets=np.array([1, 1, 0, 1, 1], bool))
    assert target_counts(h, 3).tolist() == [0, 1, 1, 0]


@pytest.mark.slow
def test_a_tiny_model_trained_with_the_sampled_loss_learns_chains(chain_data):  # noqa: F811
    from recommender.seq_train import evaluate_seq, seq_config_for, train_seq

    data, valid, test = chain_data
    cfg = seq_config_for(data, embedding_dim=16, num_blocks=1, max_len=10, dropout=0.1)
    res = train_seq(data, valid, cfg, SeqTrainConfig(epochs=25, batch_size=32, lr=5e-3, patience=25, threads=1,
                                                     loss="sampled", negatives=8, neg_mix=0.5))
    m = evaluate_seq(res.model, data, test, "test")
    assert m["recall@10"] > 0.9  # popularity would score about 10/40
    assert res.history[-1]["loss"] < res.history[0]["loss"]


def test_the_train_job_passes_the_loss_through_and_records_the_one_that_ran(beauty_small, small_data):
    """``ecaug train --loss`` reaches the trainer: a sampled run's checkpoint config says
    ``sampled``; ``auto`` on a small catalogue records ``full`` (with the setting kept)."""
    from ecaug_feast.jobs.train import TrainOptions, fit_sequence
    from recommender.evaluate import make_eval_set

    _, sp = beauty_small
    valid = make_eval_set(sp.valid, [sp.train])
    lines: list[str] = []
    for loss, ran in (("sampled", "sampled"), (None, "full")):
        opts = TrainOptions("beauty", {"epochs": 1, "batch_size": 64, "threads": 1}, embedding_dim=8, loss=loss, log=lines.append)
        fitted = fit_sequence(small_data, valid, opts)
        assert fitted.train_cfg["loss"] == ran and fitted.train_cfg["loss_setting"] == (loss or "auto")
        assert f"{ran} softmax" in lines[-1]


def test_a_bad_loss_is_a_one_line_error_before_any_data_is_read():
    from typer.testing import CliRunner

    from ecaug_feast.cli.main import app
    from ecaug_feast.errors import EcaugError

    r = CliRunner().invoke(app, ["train", "--loss", "gbce"])
    assert isinstance(r.exception, EcaugError) and r.exception.exit_code == 2
    assert "--loss must be one of full, sampled, auto" in str(r.exception)
