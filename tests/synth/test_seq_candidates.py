"""The generator's linear-cost paths (issue 33 item 2, ``synth/seq_candidates.py``): candidate
sets that cover the vocabulary give the full path's draws, a FAISS index finds the exact top-K
(planted catalogue), a teacher's candidates give its softmax, and the sampled loss trains."""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from ecaug_feast.histories import rows_to_csr
from ecaug_feast.sampled_softmax import SAMPLED_ABOVE
from ecaug_feast.synth import seq_candidates as SC
from ecaug_feast.synth.seq_gan import SEGMENTS, SeqGANConfig, SequenceGAN

TINY = dict(embedding_dim=16, num_layers=1, num_heads=1, max_len=20, mle_epochs=2, adv_steps=3, adv_batch=16,
            batch_size=32, gen_max_len=8, threads=1, device="cpu")


@pytest.fixture(autouse=True)
def _quiet():
    logging.getLogger("torchrec").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def _histories(seed: int = 0, n: int = 300, items: int = 150) -> list[np.ndarray]:
    """Short chains with noise: enough structure for the net to have preferences and for the
    training transitions to matter."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = int(rng.integers(1, items - 8))
        h = np.arange(s, s + int(rng.integers(2, 8)))
        h[rng.random(len(h)) < 0.3] = rng.integers(1, items + 1)
        out.append(np.unique(h)[rng.permutation(len(np.unique(h)))])
    return out


@pytest.fixture(scope="module")
def fitted():
    hists = _histories()
    v, o = rows_to_csr(hists)
    g = SequenceGAN(SeqGANConfig(**{**TINY, "adversarial": False, "candidate_index": "flat"})).fit(v, o)
    g.set_item_attributes({i: [0, 1 + i % 5, 7 + i % 3] for i in range(1, 151)})
    return g, v, o


def _toggle(g: SequenceGAN, generation: str, k: int | None = None) -> None:
    g.cfg = replace(g.cfg, generation=generation, **({"candidate_k": k} if k else {}))


@pytest.mark.parametrize("mix,eps,coh", [(0.0, 0.0, 0.0), (0.08, 0.24, 2.0)])
def test_candidates_covering_the_vocabulary_draw_what_the_full_path_draws(fitted, mix, eps, coh):
    """K >= the vocabulary: every item is a candidate, so each step's law is the full path's
    (first-step log-probabilities equal) and, drawing the same uniform numbers, the same tokens
    come out, with every sampling setting on or off; a small K changes them (the check can fail)."""
    g, v, o = fitted
    g.cfg = replace(g.cfg, transition_mix=mix, epsilon=eps, attr_coherence=coh)
    V = len(g.vocab)
    rows = np.arange(60)
    prompts = g._pad(g._encode_rows(v, o, np.zeros(len(o) - 1, np.int64), eos=False))[rows][:, :3]
    seg_prompts = (V + 2 + np.arange(64) % len(SEGMENTS))[:, None]
    kw = g._sampling()
    try:
        for p, n, eos in ((prompts, 6, False), (seg_prompts, TINY["gen_max_len"], True)):
            _toggle(g, "full")
            full = g._sample_tokens(p, n, eos, g._torch_rng(5), **kw).numpy()
            lp_full = g._sample_tokens(p, n, eos, g._torch_rng(5), first_log_probs=True, **kw)
            _toggle(g, "candidates", V + 10)
            g._cand_index = None
            cand = g._sample_tokens(p, n, eos, g._torch_rng(5), **kw).numpy()
            lp_cand = g._sample_tokens(p, n, eos, g._torch_rng(5), first_log_probs=True, **kw)
            assert torch.equal(torch.isinf(lp_full), torch.isinf(lp_cand))
            fin = torch.isfinite(lp_full)
            assert torch.allclose(lp_full[fin], lp_cand[fin], atol=1e-4)
            assert full.shape == cand.shape and np.array_equal(full, cand)
            assert len(np.unique(full[:, p.shape[1]:])) > 5  # it sampled, not a constant
        _toggle(g, "candidates", 3)
        small = g._sample_tokens(seg_prompts, TINY["gen_max_len"], True, g._torch_rng(5), **kw).numpy()
        assert not np.array_equal(small, cand)
        if coh:  # new attributes: the candidate path's per-token lists follow them
            g.set_item_attributes({i: [0, 1 + i % 3, 4 + i % 7] for i in range(1, 151)})
            _toggle(g, "full")
            lp_full = g._sample_tokens(prompts, 1, False, g._torch_rng(5), first_log_probs=True, **kw)
            _toggle(g, "candidates", V + 10)
            lp_cand = g._sample_tokens(prompts, 1, False, g._torch_rng(5), first_log_probs=True, **kw)
            fin = torch.isfinite(lp_full)
            assert torch.equal(fin, torch.isfinite(lp_cand)) and torch.allclose(lp_full[fin], lp_cand[fin], atol=1e-4)
    finally:
        _toggle(g, "full")


def test_candidates_keep_the_bans_and_the_top_k(fitted):
    """Small K, no tail draws: a row never repeats an item, never draws PAD, and (no transitions
    mixed in) every drawn item is among the exact top-K of the network's scores at that step."""
    g, v, o = fitted
    g.cfg = replace(g.cfg, transition_mix=0.0, epsilon=0.0, attr_coherence=0.0, temperature=1.0, candidate_tail=0)
    V = len(g.vocab)
    _toggle(g, "candidates", 5)
    try:
        seg = (V + 2 + np.arange(32) % len(SEGMENTS))[:, None]
        tok = g._sample_tokens(seg, 6, True, g._torch_rng(1))
        for r in tok[:, 1:].numpy():
            items = r[(r >= 1) & (r <= V)]
            assert len(items) == len(set(items.tolist()))
        # the first draw: among the exact top-5 of the full logits (EOS is banned at step 0)
        with torch.no_grad():
            logits = g.gen(torch.from_numpy(seg))[:, -1, 1 : V + 1]
        top5 = torch.topk(logits, 5, -1).indices + 1
        assert all(int(t) in set(top5[i].tolist()) for i, t in enumerate(tok[:, 1]))
    finally:
        _toggle(g, "full")
        g.cfg = replace(g.cfg, candidate_tail=256)


def test_faiss_candidates_contain_the_exact_top_k_of_a_planted_catalogue():
    """A planted catalogue (5,000 random item vectors, 64 queries): the exact (flat) index returns
    each query's true top-50 by inner product (recall 1); IVF is approximate but close."""
    rng = np.random.default_rng(0)
    items = rng.standard_normal((5000, 16)).astype(np.float32)
    q = rng.standard_normal((64, 16)).astype(np.float32)
    exact = np.argsort(-(q @ items.T), 1)[:, :50]
    got = SC.TokenIndex(items, "flat").search(q, 50)
    assert all(set(a.tolist()) == set(b.tolist()) for a, b in zip(got, exact))
    ivf = SC.TokenIndex(items, "ivf", nprobe=16).search(q, 50)
    recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / 50 for a, b in zip(ivf, exact)])
    assert 0.7 < recall < 1.0 + 1e-9
    assert SC.TokenIndex(items, "auto").kind == "flat" and SC.IVF_ABOVE > 5000


def test_a_teachers_candidates_give_its_softmax_and_its_certain_choices():
    """A teacher with user and item vectors (``next_item_scorer``'s parts): with K >= the vocabulary
    the candidate path's first-step law equals the full path's on the teacher's logits; with a
    small K a certain teacher (newest item + 1) still continues every row exactly."""
    hists = [np.array([s, s + 1]) for s in range(1, 201)]
    v, o = rows_to_csr(hists)
    g = SequenceGAN(SeqGANConfig(**{**TINY, "mle_epochs": 1, "adversarial": False, "reverse": False,
                                    "transition_mix": 0.0, "epsilon": 0.0, "candidate_index": "flat"})).fit(v, o)
    R = torch.eye(402)[:, :402] * 1.0  # item i -> e_i

    def user_vectors(values, offsets):
        last = values[offsets[1:] - 1]
        return torch.eye(402)[torch.from_numpy(last + 1)] * 30.0

    def teacher(values, offsets):
        return user_vectors(values, offsets) @ R.T

    teacher.user_vectors, teacher.item_vectors = user_vectors, R
    rows = np.arange(10, 20)
    n_new = np.array([3] * 5 + [1] * 5)
    full = g.expand(v, o, rows, n_new, seed=0, teacher=teacher)
    g.cfg = replace(g.cfg, generation="candidates", candidate_k=4)
    cand = g.expand(v, o, rows, n_new, seed=0, teacher=teacher)
    for r, k, a, b in zip(rows, n_new, full, cand):
        s0 = int(hists[r][0])
        assert a.tolist() == b.tolist() == list(range(s0, s0 + 2 + k))
    # the law: random teacher vectors, K covering the vocabulary, against next_log_probs on the logits
    torch.manual_seed(0)
    R2 = torch.randn(402, 8)
    U2 = torch.randn(len(rows), 8)
    g.cfg = replace(g.cfg, candidate_k=len(g.vocab) + 5, transition_mix=0.3, epsilon=0.1)
    base = (U2 @ R2.T)[:, torch.from_numpy(g.vocab)]
    g.cfg = replace(g.cfg, generation="full")
    want = g.next_log_probs(v, o, rows, base_logits=base)
    M = torch.zeros(g.n_out, 8)
    M[1 : len(g.vocab) + 1] = R2[torch.from_numpy(g.vocab)]
    index = SC.TokenIndex(M[1 : len(g.vocab) + 1].numpy(), "flat")
    for ii, _, prompts, _ in g._expansion_batches(v, o, rows, 1, 512):
        def scorer(x, k, Ui=U2[torch.from_numpy(ii)]):
            return Ui, torch.from_numpy(index.search(Ui.numpy(), k) + 1), M
        from ecaug_feast.synth.seq_gan import _categorical, _epsilon
        lp = SC.sample_tokens(g, prompts, 1, False, g._torch_rng(0), categorical=_categorical, epsilon=_epsilon, scorer=scorer,
                              first_log_probs=True, **g._sampling())[:, 1 : g.n_out - 1]
        w = want[torch.from_numpy(ii)]
        assert torch.equal(torch.isinf(lp), torch.isinf(w))
        assert torch.allclose(lp[torch.isfinite(w)], w[torch.isfinite(w)], atol=1e-4)


def test_the_sampled_loss_trains_the_generator_and_auto_keeps_todays_pools():
    """``loss="sampled"`` (32 negatives per step, over 150 items): the held-out NLL (exact, full
    softmax) falls well below the uniform one and as far as the full softmax's does, the
    adversarial phase runs on it with candidate draws, and both are reported; ``auto`` at this
    size is the full softmax and full draws."""
    hists = _histories(1)
    v, o = rows_to_csr(hists)
    common = {**TINY, "mle_epochs": 8, "patience": 8, "lr": 5e-3, "negatives": 32}
    g = SequenceGAN(SeqGANConfig(**{**common, "loss": "sampled", "generation": "candidates", "candidate_k": 20,
                                    "candidate_index": "flat"})).fit(v, o)
    full = SequenceGAN(SeqGANConfig(**{**common, "adversarial": False, "loss": "full"})).fit(v, o)
    assert g.report["loss"] == "sampled" and g.report["generation"] == "candidates" and full.report["loss"] == "full"
    best, best_full = min(g.report["mle_heldout_nll"]), min(full.report["mle_heldout_nll"])
    assert best < math.log(len(g.vocab) + 1) - 0.5 and best < best_full + 0.1, (g.report["mle_heldout_nll"], best_full)
    assert g.report["adversarial"]["steps"] == TINY["adv_steps"]
    hs, _ = g.sample_users(20, seed=1)
    assert sum(len(h) for h in hs) > 0 and all(np.isin(h, g.vocab).all() for h in hs)
    auto = SequenceGAN(SeqGANConfig(**{**TINY, "mle_epochs": 1, "adversarial": False})).fit(v, o)
    assert (auto.loss, auto.generation) == ("full", "full") and auto.gen.sampled_loss is None
    assert SC.resolve_generation("auto", SAMPLED_ABOVE + 1) == "candidates"


def test_bad_linear_cost_settings_are_refused():
    for bad in ({"loss": "gbce"}, {"generation": "ann"}, {"candidate_index": "hnsw"}, {"candidate_k": 0}, {"candidate_tail": -1}):
        with pytest.raises(ValueError, match="must be"):
            SeqGANConfig(**bad)


def test_tail_draws_give_the_items_outside_the_top_k_their_mass(fitted):
    """``candidate_tail``: uniform draws weighted (V - K) / S stand for the items outside the top K.
    Many first draws from one prompt: without them no item outside the exact top K is ever drawn;
    with them the share drawn from outside is close to the full softmax's."""
    g, v, o = fitted
    g.cfg = replace(g.cfg, transition_mix=0.0, epsilon=0.0, attr_coherence=0.0, temperature=1.0)
    V = len(g.vocab)
    seg = np.full((3000, 1), V + 2)
    with torch.no_grad():
        logits = g.gen(torch.from_numpy(seg[:1]))[0, -1, 1 : V + 1]
    top = set((torch.topk(logits, 10).indices + 1).tolist())
    share = {}
    try:
        for name, gen, tail in (("full", "full", 0), ("top", "candidates", 0), ("tail", "candidates", 64)):
            g.cfg = replace(g.cfg, generation=gen, candidate_k=10, candidate_tail=tail)
            g._cand_index = None
            tok = g._sample_tokens(seg, 1, False, g._torch_rng(3))[:, 1].numpy()
            share[name] = float(np.mean([t not in top for t in tok]))
    finally:
        g.cfg = replace(g.cfg, generation="full", candidate_tail=0)
    assert share["top"] == 0.0 and share["full"] > 0.3, share
    assert abs(share["tail"] - share["full"]) < 0.05, share


def test_the_sampled_loss_updates_only_the_table_rows_a_step_read():
    """Row-wise Adam (issue 33): with the sampled loss on one process, a generator step moves only
    the token rows it read (the batch's tokens and the loss's candidates), also on a second step
    whose untouched rows kept momentum from the first (dense Adam moves those: shown), while the
    rest of the net is updated as before; the full softmax keeps dense Adam."""
    from ecaug_feast.synth.seq_gan import _Adam

    v, o = rows_to_csr(_histories(2))
    g = SequenceGAN(SeqGANConfig(**{**TINY, "mle_epochs": 0, "adversarial": False, "loss": "sampled", "negatives": 8})).fit(v, o)
    assert g._row_wise and not SequenceGAN(SeqGANConfig(**{**TINY, "mle_epochs": 0, "adversarial": False, "loss": "full"})).fit(v, o)._row_wise
    batches = [g._train[:8], g._train[8:16]]
    start = {k: t.clone() for k, t in g.gen.state_dict().items()}
    for row_wise in (True, False):
        g.gen.load_state_dict(start)
        opt = _Adam(g.gen, 1e-2, row_wise)
        g.gen.train()
        seen = []
        for b in batches:
            W0 = g.gen.tok.weight.detach().clone()
            rest0 = g.gen.enc.layers[0].linear1.weight.detach().clone()
            loss = g._mle_loss(b, g.gen)
            opt.zero_grad()
            loss.backward()
            assert g.gen.tok.weight.grad.is_sparse == row_wise  # row-wise: no dense [tokens, d] gradient
            opt.step(g.gen.touched)
            seen.append(set(g.gen.touched.tolist()))
            moved = set((g.gen.tok.weight.detach() != W0).any(1).nonzero().flatten().tolist())
            assert not torch.equal(g.gen.enc.layers[0].linear1.weight, rest0)  # the dense part still learns
        stale = seen[0] - seen[1]  # read by the first step only
        assert len(stale) > 5 and len(moved) > 5
        if row_wise:
            assert moved <= seen[1] and g.gen.tok.weight.shape[0] - len(seen[1]) > 100
        else:
            assert stale & moved  # dense Adam keeps moving them on their first-step momentum
