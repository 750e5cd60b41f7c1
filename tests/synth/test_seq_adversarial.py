"""The adversarial stage (``synth.seq_refine``) on a planted flaw: real histories never hold the
"junk" items 25..30, the reference policy puts most of its mass on them. A discriminator can tell;
refinement must lower the junk rate and the discriminator's held-out AUC while the KL to the
start stays under the bound beta sets (2 x reward_clip / beta), and grow past it when beta = 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ecaug_feast.histories import rows_to_csr
from ecaug_feast.synth.seq_refine import RefineConfig, discriminator_auc, episodes_from, item_counts, refine, sample, sequence_kl

N_ITEMS, CLEAN = 30, 24  # items 1..24 occur in real histories; 25..30 never do


class Unigram(nn.Module):
    """A next-item policy that ignores the history: one logit per item."""

    def __init__(self, logits: np.ndarray) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(logits, dtype=torch.float32))

    def forward(self, hist: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.w.expand(len(hist), -1)


def _real(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = [rng.choice(np.arange(1, CLEAN + 1), int(rng.integers(3, 8)), replace=False) for _ in range(n)]
    return rows_to_csr(rows)


def _reference() -> Unigram:
    w = np.zeros(N_ITEMS + 1)
    w[CLEAN + 1 :] = np.log(0.7 / 6) - np.log(0.3 / CLEAN)  # 70 % of the mass on the 6 junk items
    return Unigram(w)


def _junk_rate(policy: nn.Module, prompts: list[np.ndarray]) -> float:
    y = sample(policy, prompts, 2, torch.Generator().manual_seed(99))
    return float((y > CLEAN).mean())


CFG = dict(steps=80, prompts=32, samples=4, lr=0.05, d_warmup=40, d_batch=128, reward_clip=1.0, seed=0)


@pytest.fixture(scope="module")
def runs():
    v, o = _real()
    ref = _reference()
    out = {b: refine(ref, v, o, N_ITEMS, RefineConfig(beta=b, **CFG), n_new=2, prompt_below=6) for b in (1.0, 0.0)}
    return v, o, ref, out


def test_refinement_removes_the_planted_flaw_and_fools_a_fresh_discriminator(runs):
    v, o, ref, out = runs
    eps = episodes_from(v, o, 2, 6)
    prompts = eps.prompts[:400]
    j_ref, j_b1, j_b0 = _junk_rate(ref, prompts), _junk_rate(out[1.0].policy, prompts), _junk_rate(out[0.0].policy, prompts)
    assert j_ref > 0.6
    assert j_b0 < 0.1 < j_b1 < j_ref - 0.1  # unpenalised: the flaw goes; penalised: it shrinks
    cfg = RefineConfig(**CFG)
    counts = item_counts(v, N_ITEMS)
    auc_ref = discriminator_auc(ref, eps, N_ITEMS, cfg, steps=60, counts=counts)
    auc_b0 = discriminator_auc(out[0.0].policy, eps, N_ITEMS, cfg, steps=60, counts=counts)
    assert auc_ref > 0.85 and auc_b0 < auc_ref - 0.2
    rep = out[0.0].report
    assert rep["d_heldout_acc_end"] < rep["d_heldout_acc_start"]
    # the reference policy itself is untouched (refine works on a copy)
    assert np.allclose(ref.w.detach().numpy(), _reference().w.detach().numpy())


def test_kl_stays_under_the_bound_beta_sets_and_grows_without_it(runs):
    v, o, ref, out = runs
    prompts = episodes_from(v, o, 2, 6).prompts[:400]
    cfg = RefineConfig(**CFG)
    kl_b1 = sequence_kl(out[1.0].policy, ref, prompts, 2, cfg)
    kl_b0 = sequence_kl(out[0.0].policy, ref, prompts, 2, cfg)
    bound = out[1.0].report["kl_bound"]
    assert bound == pytest.approx(2 * CFG["reward_clip"] / 1.0)
    assert 0.0 < kl_b1 < bound < kl_b0
    assert out[0.0].report["kl_bound"] is None


def test_same_seed_same_policy_other_seed_other_policy():
    v, o = _real(200)
    cfg = dict(CFG, steps=10, d_warmup=5)
    a = refine(_reference(), v, o, N_ITEMS, RefineConfig(beta=0.5, **cfg))
    b = refine(_reference(), v, o, N_ITEMS, RefineConfig(beta=0.5, **cfg))
    c = refine(_reference(), v, o, N_ITEMS, RefineConfig(beta=0.5, **{**cfg, "seed": 1}))
    assert torch.equal(a.policy.w, b.policy.w) and a.report["reward_last10"] == b.report["reward_last10"]
    assert not torch.equal(a.policy.w, c.policy.w)


def test_too_few_episodes_and_bad_settings_are_refused():
    v, o = rows_to_csr([np.array([1, 2, 3])] * 5)
    with pytest.raises(ValueError, match="too few episodes"):
        refine(_reference(), v, o, N_ITEMS, RefineConfig())
    with pytest.raises(ValueError, match="samples"):
        RefineConfig(samples=1)
    with pytest.raises(ValueError, match="beta"):
        RefineConfig(beta=-1)


def test_lr_zero_keeps_the_policy_and_still_trains_the_discriminator():
    """The study's ``gan_disc_select_no_adversarial`` runs the stage at lr 0: the policy must come
    back exactly as it went in, and the discriminator must still learn the planted flaw (its
    held-out accuracy well above chance), so the selector alone is what that ablation keeps."""
    v, o = _real(300)
    out = refine(_reference(), v, o, N_ITEMS, RefineConfig(beta=0.1, **{**CFG, "lr": 0.0, "steps": 20}), n_new=2, prompt_below=6)
    assert torch.equal(out.policy.w, _reference().w)
    assert out.report["d_heldout_acc_end"] > 0.7
