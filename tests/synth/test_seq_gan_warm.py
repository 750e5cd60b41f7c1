"""A generator warm-started from a saved one (a refresh): the saved weights are what training
continues from, items matched by id when the vocabulary changed, and it starts where the saved
fit ended (held-out likelihood), not where a random start does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecaug_feast.histories import rows_to_csr
from ecaug_feast.synth.seq_gan import SeqGANConfig, SequenceGAN, WarmStart

CFG = dict(embedding_dim=16, num_layers=1, num_heads=1, max_len=12, batch_size=64, gen_max_len=6, threads=1, device="cpu",
           adversarial=False, seed=0)


def _walks(n: int, items: int, seed: int) -> list[np.ndarray]:
    """Histories that walk the catalogue (next item = previous + 1..3): a pattern a few epochs learn."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = int(rng.integers(1, items + 1))
        h = []
        for _ in range(int(rng.integers(3, 10))):
            h.append(x)
            x = (x + int(rng.integers(1, 4)) - 1) % items + 1
        out.append(np.array(h, np.int64))
    return out


def test_warm_start_loads_the_saved_weights_and_starts_where_the_fit_ended():
    v, o = rows_to_csr(_walks(600, 60, 0))
    first = SequenceGAN(SeqGANConfig(**CFG, mle_epochs=8, patience=8, lr=5e-3)).fit(v, o)
    saved = first.state()
    # the catalogue changed: item 60 is gone, items 61..64 are new, ids shifted by one (sorted keys)
    rows = [np.where(h == 60, 61, h) + 1 for h in _walks(600, 60, 1)] + [np.array([62, 63, 64, 65])] * 3
    v2, o2 = rows_to_csr(rows)
    old_as_new = np.where(first.vocab == 60, -1, first.vocab + 1)  # the saved vocabulary in the new ids
    warm = WarmStart(saved["gen"], old_as_new, saved["disc"], source="run-1")
    g = SequenceGAN(SeqGANConfig(**CFG, mle_epochs=0)).fit(v2, o2, warm=warm)  # nothing trained after loading
    now = g.gen.state_dict()
    for k, w in saved["gen"].items():
        if k != "tok.weight":
            assert torch.equal(now[k], w), k
    V0, V = len(first.vocab), len(g.vocab)
    for j, item in enumerate(first.vocab):  # token j + 1 of the saved layout
        if item == 60:
            continue
        assert torch.equal(now["tok.weight"][int(np.searchsorted(g.vocab, item + 1)) + 1], saved["gen"]["tok.weight"][j + 1])
    assert torch.equal(now["tok.weight"][V + 1 :], saved["gen"]["tok.weight"][V0 + 1 :])  # EOS and the segment tokens
    assert all(torch.equal(g.disc.state_dict()[k], w) for k, w in saved["disc"].items() if k != "tok.weight")
    assert g.report["warm_start"] == {"source": "run-1", "items_kept": V0 - 1, "items_new": V - (V0 - 1),
                                      "items_gone": 1, "discriminator": True}
    cold = SequenceGAN(SeqGANConfig(**CFG, mle_epochs=0)).fit(v2, o2)
    assert g.report["nll_start"] < cold.report["nll_start"] - 0.5, (g.report["nll_start"], cold.report["nll_start"])
    # a short continued fit never ends worse than where the warm start began
    cont = SequenceGAN(SeqGANConfig(**CFG, mle_epochs=1, patience=1)).fit(v2, o2, warm=warm)
    assert cont.report["nll_mle"] <= cont.report["nll_start"]


def test_warm_start_of_another_shape_is_refused():
    v, o = rows_to_csr(_walks(100, 30, 0))
    saved = SequenceGAN(SeqGANConfig(**CFG, mle_epochs=1)).fit(v, o).state()
    other = {**CFG, "embedding_dim": 8}
    with pytest.raises(ValueError, match="warm start: the saved generator"):
        SequenceGAN(SeqGANConfig(**other, mle_epochs=0)).fit(v, o, warm=WarmStart(saved["gen"], np.unique(v)))
