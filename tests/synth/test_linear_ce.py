"""The chunked linear cross-entropy equals F.cross_entropy(h @ w.T, y) in value and gradients."""

import pytest
import torch
from torch.nn import functional as F

from ecaug_feast.synth.linear_ce import linear_cross_entropy


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("chunk_bytes", [8 * 8 * 7, 1 << 20])  # 7 rows of 8 float64 logits: uneven chunks; one chunk
def test_matches_plain_cross_entropy(reduction: str, chunk_bytes: int) -> None:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(33, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 8, (33,), generator=g)
    ref = F.cross_entropy(h @ w.T, y, reduction=reduction)
    rh, rw = torch.autograd.grad(ref * 1.7, (h, w))  # an upstream gradient other than 1
    got = linear_cross_entropy(h, w, y, reduction, chunk_bytes=chunk_bytes)
    gh, gw = torch.autograd.grad(got * 1.7, (h, w))
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(gh, rh)
    torch.testing.assert_close(gw, rw)
    with torch.no_grad():  # the evaluation path
        torch.testing.assert_close(linear_cross_entropy(h, w, y, reduction, chunk_bytes=chunk_bytes), ref)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_weighted_rows_match_a_weighted_sum(reduction: str) -> None:
    """A policy-gradient loss: sum of weight x per-row cross-entropy (weights of either sign)."""
    g = torch.Generator().manual_seed(1)
    h = torch.randn(17, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 6, (17,), generator=g)
    a = torch.randn(17, generator=g, dtype=torch.float64)
    ref = (a * F.cross_entropy(h @ w.T, y, reduction="none")).sum()
    ref = ref / 17 if reduction == "mean" else ref
    rh, rw = torch.autograd.grad(ref, (h, w))
    got = linear_cross_entropy(h, w, y, reduction, weight=a, chunk_bytes=8 * 6 * 5)
    gh, gw = torch.autograd.grad(got, (h, w))
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(gh, rh)
    torch.testing.assert_close(gw, rw)
    with torch.no_grad():
        torch.testing.assert_close(linear_cross_entropy(h, w, y, reduction, weight=a, chunk_bytes=8 * 6 * 5), ref)


def test_gradient_reaches_a_slice_of_a_tied_weight() -> None:
    """The generator passes ``tok.weight[:V]`` (tied embeddings): rows past V get no gradient."""
    emb = torch.nn.Embedding(10, 4)
    h = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    linear_cross_entropy(h, emb.weight[:7], y, chunk_bytes=4 * 7 * 2).backward()
    assert emb.weight.grad[7:].abs().sum() == 0 and emb.weight.grad[:7].abs().sum() > 0


def test_rejects_unknown_reduction() -> None:
    with pytest.raises(ValueError, match="reduction"):
        linear_cross_entropy(torch.zeros(2, 3), torch.zeros(4, 3), torch.zeros(2, dtype=torch.long), "none")
