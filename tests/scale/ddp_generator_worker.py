"""Worker for tests/scale/test_ddp_generator.py: fits the sequence generator on a small synthetic
Markov-chain catalog, alone or under ``torchrun`` (DDP, gloo), and writes what the test compares.

    python tests/scale/ddp_generator_worker.py OUT                                  # one process
    python -m torch.distributed.run --nproc_per_node 2 tests/scale/ddp_generator_worker.py OUT

Rank 0 writes ``OUT/metrics.json`` (held-out NLL and next-item accuracy on histories the generator
never saw); every rank writes ``OUT/rank{r}.pt`` (its generator weights: the test checks that the
ranks agree, which is the only reason a non-writer rank writes anything).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

# dropout 0: the MLE phase then has no randomness besides the (shared) batch order, so 1 and 2
# processes must agree closely on it; the adversarial phase samples different fakes per rank
CONFIG = dict(embedding_dim=32, num_layers=1, num_heads=2, max_len=16, dropout=0.0, mle_epochs=5, patience=5,
              batch_size=32, adv_steps=6, adv_batch=32, gen_max_len=8, threads=1, device="cpu", seed=0)


def histories(n_users: int, seed: int, n_items: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Oldest-first CSR: each next item is the last +1 (70 %), +2 (20 %) or any item (10 %)."""
    rng = np.random.default_rng(seed)
    vals: list[int] = []
    offs = [0]
    for _ in range(n_users):
        h = [int(rng.integers(0, n_items))]
        for _ in range(int(rng.integers(3, 14)) - 1):
            u = rng.random()
            h.append((h[-1] + 1) % n_items if u < 0.7 else (h[-1] + 2) % n_items if u < 0.9 else int(rng.integers(0, n_items)))
        vals += h
        offs.append(len(vals))
    return np.asarray(vals, np.int64) + 100, np.asarray(offs, np.int64)


def quality(g, values: np.ndarray, offsets: np.ndarray) -> dict[str, float]:
    """Mean per-token NLL and next-item accuracy (argmax, item targets only) of the fitted generator."""
    import torch

    from ecaug_feast.synth.seq_gan import history_segments

    rows = g._encode_rows(values, offsets, history_segments(values, offsets, g.tail))
    x = torch.from_numpy(g._pad(rows))
    g.gen.eval()
    with torch.no_grad():
        logits = g.gen(x[:, :-1])
    y = x[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, g.n_out), y.reshape(-1), ignore_index=0)
    item = (y >= 1) & (y <= len(g.vocab))
    acc = ((logits.argmax(-1) == y) & item).sum() / item.sum()
    return {"nll": float(nll), "acc": float(acc)}


def run(out: Path) -> dict:
    import torch

    from ecaug_feast.synth.seq_gan import SeqGANConfig, SequenceGAN, init_distributed

    rank, world = init_distributed("cpu")
    g = SequenceGAN(SeqGANConfig(**CONFIG)).fit(*histories(600, seed=1))
    torch.save(g.gen.state_dict(), out / f"rank{rank}.pt")
    res = {"world": world, **quality(g, *histories(200, seed=2)), "nll_mle": g.report["nll_mle"],
           "nll_after_adversarial": g.report["nll_after_adversarial"], "report": g.report}
    if g.is_writer:
        (out / "metrics.json").write_text(json.dumps(res, default=str), encoding="utf-8")
    if world > 1:
        torch.distributed.destroy_process_group()
    return res


if __name__ == "__main__":
    run(Path(sys.argv[1]))
