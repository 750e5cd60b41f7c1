"""The GPU check of issue 33: the training step and the sequence generator on CUDA, in one script.

It carries only what the lent GPU machine has: PyTorch (and numpy). TorchRec, fbgemm and Feast are
not there, so the training step is a pure-PyTorch stand-in of the recommender's (the same shape as
``recommender.seq_model.SeqTwoTower``: item embeddings, causal transformer blocks, the next item
scored against the catalogue), trained with the product's own losses from
``ecaug_feast.sampled_softmax`` (the full softmax, and the sampled softmax with logQ correction
and ``SeqTrainConfig.negatives`` drawn items); the generator is the product's
``ecaug_feast.synth.seq_gan.SequenceGAN`` (pure PyTorch; it needs scikit-learn and pyarrow too,
and says so when they are missing). Histories are random: this times steps, it measures no
accuracy. On a machine without CUDA it runs on the CPU (``--device cpu``), as a smoke test.

    python benchmarks/gpu_check.py [--device auto|cuda|cpu] [--items 12101 48404 193616] [--steps 20]
                                   [--negatives 4096] [--gen-users 5000] [--out FILE.json]

Prints one line per measurement and a final ``RESULT {json}``; with ``$OUT`` set (the device
tool's folder) it also writes ``$OUT/gpu_check.json``. Nothing in the product needs this script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import numpy as np
import torch
from torch import nn


class _Stand(nn.Module):
    """SASRec-shaped next-item model: item + position embeddings, causal transformer blocks; the
    item table doubles as the output projection (as SeqTwoTower's item tower at id-only)."""

    def __init__(self, items: int, dim: int = 64, blocks: int = 2, max_len: int = 50) -> None:
        super().__init__()
        self.item = nn.Embedding(items + 1, dim, padding_idx=0)
        self.pos = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, 2, dim, dropout=0.2, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L = x.shape[1]
        h = self.item(x) + self.pos(torch.arange(L, device=x.device))[None]
        mask = nn.Transformer.generate_square_subsequent_mask(L, device=x.device)
        return self.enc(h, mask=mask, is_causal=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_steps(items: int, loss: str, a: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Median seconds of a training step (forward, loss, backward, Adam) and the peak GPU memory."""
    from ecaug_feast.sampled_softmax import NegativeSampler, sampled_softmax_loss

    rng = np.random.default_rng(0)
    model = _Stand(items).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = NegativeSampler(np.r_[0, rng.integers(1, 100, items)], negatives=a.negatives)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(a.steps + 2):
        x = torch.as_tensor(rng.integers(1, items + 1, (a.batch, a.length)), device=device)
        y = torch.as_tensor(rng.integers(1, items + 1, (a.batch, a.length)), device=device)
        _sync(device)
        t0 = time.perf_counter()
        H = model(x)
        R = model.item.weight
        if loss == "full":
            logits = H.reshape(-1, H.shape[-1]) @ R.T
            logits[:, 0] = -float("inf")
            lo = nn.functional.cross_entropy(logits, y.reshape(-1))
        else:
            cand, log_q = sampler.candidates(y.reshape(-1).cpu().numpy(), rng)
            log_q_all = torch.zeros(items + 1, device=device)
            log_q_all[torch.as_tensor(cand, device=device)] = torch.as_tensor(log_q, dtype=torch.float32, device=device)
            lo = sampled_softmax_loss(H, R, y, torch.as_tensor(cand, device=device), log_q_all)
        opt.zero_grad()
        lo.backward()
        opt.step()
        _sync(device)
        if step >= 2:  # the first steps warm the kernels and the allocator
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return {"part": "train_step", "items": items, "loss": loss, "s_per_step": float(np.median(times)),
            "peak_mib": None if peak is None else round(peak, 1)}


def generator(a: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """The product's sequence generator: fit (ML epochs + adversarial steps) and expansions, timed."""
    try:
        from ecaug_feast.synth.seq_gan import SeqGANConfig, SequenceGAN
    except ImportError as e:  # the lent machine may lack scikit-learn or pyarrow
        return {"part": "generator", "ran": False, "why": f"import failed: {e}"}
    rng = np.random.default_rng(0)
    lens = rng.integers(2, 30, a.gen_users)
    values = rng.integers(1, a.gen_items + 1, int(lens.sum())).astype(np.int64)
    offsets = np.r_[0, np.cumsum(lens)].astype(np.int64)
    cfg = SeqGANConfig(reverse=False, mle_epochs=2, adv_steps=10, device=device.type, threads=os.cpu_count() or 1)
    _sync(device)
    t0 = time.perf_counter()
    gan = SequenceGAN(cfg).fit(values, offsets)
    _sync(device)
    fit_s = time.perf_counter() - t0
    rows = np.flatnonzero(lens < 8)
    t0 = time.perf_counter()
    out = gan.expand(values, offsets, rows, 2, seed=0)
    _sync(device)
    return {"part": "generator", "ran": True, "device": device.type, "users": a.gen_users, "items": a.gen_items,
            "fit_s": round(fit_s, 2), "expand_s": round(time.perf_counter() - t0, 2), "expanded": len(out)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    p.add_argument("--items", type=int, nargs="+", default=[12101, 48404, 193616], help="catalogue sizes (1x, 4x, 16x Beauty)")
    p.add_argument("--losses", nargs="+", default=["full", "sampled"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--length", type=int, default=50)
    p.add_argument("--negatives", type=int, default=4096, help="the sampled loss's drawn items (SeqTrainConfig.negatives)")
    p.add_argument("--gen-users", type=int, default=5000)
    p.add_argument("--gen-items", type=int, default=12101)
    p.add_argument("--skip-generator", action="store_true")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    dev = torch.device("cuda" if a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available()) else "cpu")
    info = {"device": dev.type, "name": torch.cuda.get_device_name(0) if dev.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__}
    print(json.dumps(info), flush=True)
    rows = []
    for items in a.items:
        for loss in a.losses:
            r = train_steps(items, loss, a, dev)
            print(json.dumps(r), flush=True)
            rows.append(r)
    if not a.skip_generator:
        r = generator(a, dev)
        print(json.dumps(r), flush=True)
        rows.append(r)
    result = {**info, "rows": rows}
    for path in filter(None, [a.out, os.path.join(os.environ["OUT"], "gpu_check.json") if os.environ.get("OUT") else None]):
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
