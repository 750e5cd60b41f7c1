"""Per-step cost of the sequence GAN's sampling and loss pieces against the versions they replaced,
side by side in one run, at the sizes of all of Beauty (512 rows x 12,068 tokens a sampling step;
1,100 target positions a training batch). Milliseconds per call, median of ``--repeat``. A
benchmark, not a test: no data, no fit, random tensors of the right shapes.

    python benchmarks/seq_sampling_ops.py [--threads 2] [--repeat 30]

Rows (each ``{"new_ms", "old_ms", "old_over_new"}``):
- ``draw``: one token per row, ``seq_gan._categorical`` (inverse CDF, one uniform number a row)
  vs the Gumbel-max draw it replaced (one uniform number per token).
- ``transition_mix``: ``SequenceGAN._mix_transitions`` on the stored transitions (~40 a row) vs
  the dense [rows, vocabulary] mixture it replaced.
- ``coherence_update``: ``SequenceGAN._coherence_update`` (sparse ``addmm_``; 4 new attributes a
  row, each new item's) vs ``index_add_`` of the same gathered weight rows; and
  ``coherence_recompute``: the dense product ``seen @ weights`` per step that neither does.
- ``linear_ce``: the chunked loss forward + backward at its default 4 MB chunks vs 16 MB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(fn, repeat: int) -> float:
    """Median milliseconds of ``fn()`` over ``repeat`` calls, after 3 warm-up calls."""
    for _ in range(3):
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out)


def pair(new, old, repeat: int) -> dict:
    n, o = timed(new, repeat), timed(old, repeat)
    return {"new_ms": round(n, 2), "old_ms": round(o, 2), "old_over_new": round(o / n, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=12068)
    a = ap.parse_args()
    import numpy as np
    import torch

    from ecaug_feast.synth.linear_ce import linear_cross_entropy
    from ecaug_feast.synth.seq_gan import SequenceGAN, _categorical

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    B, V, R = a.rows, a.vocab, a.repeat
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, V) * 3
    noise = torch.empty(B, V)

    def gumbel():
        torch.rand(logits.shape, generator=g, out=noise)
        noise.clamp_(1e-10, 1.0).log_().neg_().log_()
        return logits.sub(noise).argmax(-1)

    res = {"draw": pair(lambda: _categorical(logits, g), gumbel, R)}

    # transitions: ~40 stored next items per row, ~5 % of the row's items already seen
    k = 40
    row = torch.arange(B).repeat_interleave(k)
    col = torch.randint(1, V - 1, (B * k,))
    val = torch.rand(B * k)
    seen = torch.rand(B, V) < 0.005
    mix = 0.08

    def dense_mix():
        tb = torch.zeros(B, V)
        tb[row, col] = val
        tb.masked_fill_(seen, 0.0)
        tot = tb.sum(1, keepdim=True)
        pg = torch.softmax(logits, -1)
        return torch.where(tot > 0, (1 - mix) * pg + mix * tb / tot.clamp(min=1e-12), pg).log_()

    res["transition_mix"] = pair(lambda: SequenceGAN._mix_transitions(logits, (row, col, val), seen, mix), dense_mix, R)

    # attribute coherence: Beauty's 638 attributes, ~4 an item; ~2 new to each row per step
    n_attr = 638
    gan = SequenceGAN()
    gan.n_out = V
    attrs = {i: list(np.random.default_rng(i).choice(n_attr, 4, replace=False)) for i in range(1, V - 1)}
    gan.vocab = np.arange(1, V - 1)
    gan.device = torch.device("cpu")
    gan.set_item_attributes(attrs)
    seen_attr = torch.zeros(B, n_attr, dtype=torch.bool)
    coh = torch.zeros(B, V)
    nxt = torch.randint(1, V - 1, (B,))
    new_rows, new_attr = gan._attr_has[nxt].nonzero(as_tuple=True)  # every attribute of the new items is new

    def update_new():
        seen_attr.zero_()
        gan._coherence_update(seen_attr, coh, nxt, 2.0)

    def update_old():
        coh.index_add_(0, new_rows, gan._attr_w[new_attr], alpha=2.0)

    res["coherence_update"] = pair(update_new, update_old, R)
    sa = (torch.rand(B, n_attr) < 0.02).float()
    res["coherence_recompute"] = {"ms": round(timed(lambda: sa @ gan._attr_w, R), 2)}

    # the loss: one training batch's target positions, forward + backward
    h = torch.randn(1100, 64, requires_grad=True)
    w = (torch.randn(V, 64) * 0.1).requires_grad_()
    y = torch.randint(0, V, (1100,))

    def loss(chunk):
        def f():
            linear_cross_entropy(h, w, y, chunk_bytes=chunk).backward()
        return f

    res["linear_ce"] = pair(loss(4 << 20), loss(16 << 20), R)
    res["linear_ce"]["note"] = "new: 4 MB chunks, old: 16 MB chunks (both with this tree's one-exp loss)"
    print(json.dumps({"rows": B, "vocab": V, "threads": a.threads, "repeat": R, **res}))


if __name__ == "__main__":
    main()
