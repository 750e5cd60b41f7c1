"""Cross-entropy of ``softmax(h @ w.T)`` computed chunk by chunk, without the full logit matrix.

Why: the sequence generator's maximum-likelihood loss projects every target position onto the
whole item vocabulary. On all of Beauty a batch holds up to ~6,400 positions x 12,068 tokens, so
the logits, their log-softmax and their gradient are each ~300 MB. Tensors that large bypass
glibc's heap (``mmap`` above its 32 MB ceiling) and are returned to the kernel on free, so every
step page-faulted ~1 GB back in: half the fit's time was system time (85M page faults per fit).

Here the rows go through in chunks of at most ``chunk_bytes`` of logits (4 MB by default: under
that ceiling, so the buffers are reused from the heap, and about the size of the cache the passes
over a chunk run in; 16 MB chunks: ~10 % slower, ``benchmarks/seq_sampling_ops.py``). The gradient is taken
in the same pass (``softmax - onehot``), as in Liger-Kernel's fused linear cross-entropy (Hsu et al., 2024) and
Apple's Cut Cross-Entropy (Wijmans et al., ICLR 2025): forward keeps ``dL/dh`` ([n, d]) and
``dL/dw`` ([V, d]) and backward scales them. Same FLOPs as the plain path, a fraction of its
memory; the results agree with ``F.cross_entropy(h @ w.T, y)`` to float rounding (the chunked sum
of ``dL/dw`` adds in another order), tested in ``tests/synth/test_linear_ce.py``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F


class _LinearCE(torch.autograd.Function):
    """Forward computes the loss and keeps dL/dh and dL/dw (chunk by chunk); backward scales them."""

    @staticmethod
    def forward(ctx, h, w, y, weight, rows: int):  # type: ignore[override]
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dh = torch.empty_like(h) if need_h else None
        dw = torch.zeros_like(w) if need_w else None
        total = h.new_zeros(())
        for s in range(0, h.shape[0], rows):
            hc, yc = h[s : s + rows], y[s : s + rows]
            z = hc @ w.T
            zy = z.gather(1, yc[:, None]).squeeze(1)
            # z becomes dL/dz = weight * (softmax(z) - onehot(y)), in place, with one exp per
            # logit (logsumexp and then exp(z - lse) took two: the exps were the cost)
            m = z.amax(1, keepdim=True)
            z.sub_(m).exp_()
            tot = z.sum(1, keepdim=True)
            z.div_(tot)
            ce = m.squeeze(1) + tot.squeeze(1).log() - zy
            z[torch.arange(len(yc), device=z.device), yc] -= 1
            if weight is None:
                total += ce.sum()
            else:
                wc = weight[s : s + rows]
                total += (wc * ce).sum()
                z.mul_(wc[:, None])
            if need_h:
                torch.mm(z, w, out=dh[s : s + rows])
            if need_w:
                dw.addmm_(z.T, hc)
        ctx.save_for_backward(dh, dw)
        return total

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        dh, dw = ctx.saved_tensors
        return (None if dh is None else dh * g, None if dw is None else dw * g, None, None, None)


def linear_cross_entropy(h: Any, w: Any, y: Any, reduction: str = "mean", weight: Any = None,
                         chunk_bytes: int = 4 << 20) -> Any:
    """``F.cross_entropy(h @ w.T, y, reduction=reduction)`` for ``h`` [n, d], ``w`` [V, d] and
    targets ``y`` [n] in ``0..V-1``, with at most ``chunk_bytes`` of logits alive at a time.
    ``weight`` [n] (no gradient): each row's loss times its weight (``(weight * ce).sum()`` for
    ``"sum"``, divided by n for ``"mean"``): a policy-gradient loss is ``-advantage x log p``.
    ``reduction``: ``"mean"`` or ``"sum"``. Differentiable in ``h`` and ``w``."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', not {reduction!r}")
    if weight is not None:
        weight = weight.detach().to(h.dtype)
    rows = max(1, int(chunk_bytes) // (h.element_size() * max(1, w.shape[0])))
    if torch.is_grad_enabled() and (h.requires_grad or w.requires_grad):
        total = _LinearCE.apply(h, w, y, weight, rows)
    else:  # evaluation: chunks, no gradient buffers
        total = h.new_zeros(())
        for s in range(0, h.shape[0], rows):
            ce = F.cross_entropy(h[s : s + rows] @ w.T, y[s : s + rows], reduction="none")
            total = total + (ce if weight is None else ce * weight[s : s + rows]).sum()
    return total / max(1, h.shape[0]) if reduction == "mean" else total
