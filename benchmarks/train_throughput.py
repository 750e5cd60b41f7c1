"""Training throughput, TorchRec against plain PyTorch, side by side in one run.

``--model bag``: our TorchRec step (DMP, fused RowWiseAdagrad tables + Adam MLPs) against a plain
PyTorch two-tower of the same shape (``nn.EmbeddingBag`` tables, Adam on everything); same batches
of real Beauty examples, same loss (in-batch softmax with logQ), batch assembly included.

``--model sequence``: the sequence two-tower step as ``recommender.seq_train`` runs it (DMP with
data-parallel dense tables, full-softmax cross-entropy at every position, Adam) against the same
model on plain ``nn.Embedding``/``nn.EmbeddingBag`` tables, each in fp32 and with bfloat16
autocast on the catalogue logits; batches of users of similar history length as in training.
Unit: training positions (next-item examples) per second.

Implementations are timed in alternating blocks so a noisy, shared machine slows all alike.

    python benchmarks/train_throughput.py [--json] [--model bag|sequence] [--batch-size N] [--steps 40] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import warnings

import numpy as np


def _plain_model(cfg):
    import torch
    from torch import nn

    from recommender.batching import ITEM_DENSE, USER_DENSE

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            d = cfg.embedding_dim
            self.t_user = nn.EmbeddingBag(cfg.user_buckets, d, mode="mean")
            self.t_item = nn.EmbeddingBag(cfg.num_items + 1, d, mode="mean")
            self.t_attr = nn.EmbeddingBag(cfg.num_attributes + 1, d, mode="mean")
            self.user_mlp = nn.Sequential(nn.Linear(5 * d + len(USER_DENSE), cfg.hidden_dim), nn.ReLU(), nn.Linear(cfg.hidden_dim, cfg.out_dim))
            self.item_mlp = nn.Sequential(nn.Linear(2 * d + len(ITEM_DENSE), cfg.hidden_dim), nn.ReLU(), nn.Linear(cfg.hidden_dim, cfg.out_dim))

        def bag(self, table, vals, lens):
            offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64))
            return table(torch.from_numpy(vals), offsets)

        def forward(self, us, ud, its, idn):
            b = [self.bag(self.t_user, *us["user_id"]), self.bag(self.t_item, *us["last_item"]), self.bag(self.t_item, *us["recent_items"]),
                 self.bag(self.t_attr, *us["recent_attributes"]), self.bag(self.t_attr, *us["top_attributes"])]
            u = self.user_mlp(torch.cat(b + [torch.from_numpy(ud)], 1))
            v = self.item_mlp(torch.cat([self.bag(self.t_item, *its["item_id"]), self.bag(self.t_attr, *its["attributes"]), torch.from_numpy(idn)], 1))
            return nn.functional.normalize(u, dim=1), nn.functional.normalize(v, dim=1)

    return Plain()


def sequence_throughput(a) -> dict:
    """Positions/s of the sequence model: TorchRec (DMP) vs plain PyTorch, fp32 vs bf16 logits."""
    import torch
    from torch import nn

    from ecaug_feast.datasets import load_dataset
    from ecaug_feast.datasets.split import split_interactions
    from recommender import distributed as D
    from ecaug_feast.jobs.train_data import build_in_memory
    from recommender.seq_model import SeqTwoTower, full_softmax_loss, packed_target_batch
    from recommender.seq_train import catalog_of, histories_for, length_buckets, seq_config_for, wrap_dmp

    ds = load_dataset(a.dataset)
    sp = split_interactions(ds)
    data = build_in_memory(sp.train, ds.items)
    cfg = seq_config_for(data, embedding_dim=a.dim)
    cat = catalog_of(data)
    hist = histories_for(data, cfg)
    trainable = np.flatnonzero(hist.lengths >= 2)

    class Plain(SeqTwoTower):
        """Same model, tables as plain ``nn.Embedding`` / ``nn.EmbeddingBag`` (no TorchRec)."""

        def __init__(self):
            super().__init__(cfg, catalog=cat)
            self.t_item = nn.Embedding(cfg.num_items + 1, cfg.embedding_dim)
            self.t_attr = nn.EmbeddingBag(cfg.num_attributes + 1, cfg.embedding_dim, mode="mean")
            av, alen = cat.attributes_of(np.arange(cfg.num_items + 1))
            self._av = torch.from_numpy(av)
            self._ao = torch.from_numpy(np.concatenate([[0], np.cumsum(alen)[:-1]]).astype(np.int64))

        def item_matrix(self, ec=None, ebc=None):
            return self.t_item.weight + self.t_attr(self._av, self._ao)

    info = D.init_distributed()
    torch.manual_seed(0)
    dmp = wrap_dmp(SeqTwoTower(cfg, device="meta", catalog=cat), info)
    D.load_into_dmp(dmp, SeqTwoTower(cfg, catalog=cat).state_dict())
    plain = Plain()
    opts = {"torchrec": torch.optim.Adam(dmp.parameters(), lr=1e-3), "plain_torch": torch.optim.Adam(plain.parameters(), lr=1e-3)}
    # the trainer's batches: shuffled users, each batch cut into chunks of similar length
    batches = length_buckets(trainable, hist.lengths, a.batch_size, np.random.default_rng(0), window=0)
    it = iter(range(10**9))
    counted = {}

    def make_step(name, module, bf16, chunks=8):
        def step():
            rows = batches[next(it) % len(batches)]
            parts = packed_target_batch(hist, rows, chunks)
            x, y, ln = ([torch.from_numpy(p[i]) for p in parts] for i in range(3))
            H, R = module(x, ln)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = full_softmax_loss(H, R, y)
            opts[name.split("/")[0]].zero_grad()
            loss.backward()
            opts[name.split("/")[0]].step()
            counted[name] = counted.get(name, 0) + sum(int((t > 0).sum()) for t in y)
        return step

    impls = {"torchrec/fp32": make_step("torchrec/fp32", dmp, False), "plain_torch/fp32": make_step("plain_torch/fp32", plain, False),
             "torchrec/bf16": make_step("torchrec/bf16", dmp, True), "plain_torch/bf16": make_step("plain_torch/bf16", plain, True),
             # one block padded to the batch's longest history (the trainer before chunking)
             "torchrec/fp32/unpacked": make_step("torchrec/fp32/unpacked", dmp, False, chunks=1)}
    for f in impls.values():
        for _ in range(2):
            f()
    counted.clear()
    t = {k: 0.0 for k in impls}
    block = 10
    for _ in range(max(1, a.steps // block)):
        for name, f in impls.items():
            t0 = time.perf_counter()
            for _ in range(block):
                f()
            t[name] += time.perf_counter() - t0
    D.shutdown(info)
    per_s = {k: round(counted[k] / t[k]) for k in impls}
    positions = int((hist.lengths[trainable] - 1).sum())
    return {
        "model": "sequence",
        **per_s,
        "unit": "training positions/s (step incl. batch assembly)",
        "torchrec_vs_plain_fp32": round(per_s["torchrec/fp32"] / per_s["plain_torch/fp32"], 2),
        "bf16_vs_fp32_torchrec": round(per_s["torchrec/bf16"] / per_s["torchrec/fp32"], 2),
        "packed_vs_unpacked_torchrec": round(per_s["torchrec/fp32"] / per_s["torchrec/fp32/unpacked"], 2),
        "positions_per_epoch": positions,
        "epoch_seconds_torchrec_fp32": round(positions / per_s["torchrec/fp32"], 1),
        "epoch_seconds_torchrec_bf16": round(positions / per_s["torchrec/bf16"], 1),
        "batch_size": a.batch_size,
        "steps": max(1, a.steps // block) * block,
        "threads": a.threads,
        "embedding_dim": a.dim,
        "dataset": a.dataset,
        "cpu": platform.processor() or platform.machine(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="beauty")
    p.add_argument("--model", default="bag", choices=["bag", "sequence"])
    p.add_argument("--batch-size", type=int, default=None, help="default 1024 (bag) / 128 users (sequence)")
    p.add_argument("--steps", type=int, default=40, help="timed steps per implementation (in blocks of 10)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import torch

    torch.set_num_threads(a.threads)
    if a.model == "sequence":
        a.batch_size = a.batch_size or 128
        res = sequence_throughput(a)
        if a.json:
            print(json.dumps(res))
        else:
            for k in ("torchrec/fp32", "plain_torch/fp32", "torchrec/bf16", "plain_torch/bf16"):
                print(f"{k:<17} {res[k]:>8,} positions/s")
            print(f"torchrec/plain x{res['torchrec_vs_plain_fp32']} (fp32), bf16/fp32 x{res['bf16_vs_fp32_torchrec']}; "
                  f"epoch of {res['positions_per_epoch']:,} positions: {res['epoch_seconds_torchrec_fp32']} s fp32, "
                  f"{res['epoch_seconds_torchrec_bf16']} s bf16 (load avg {res['load_avg_1m']})")
        return
    a.batch_size = a.batch_size or 1024
    from ecaug_feast.datasets import load_dataset
    from ecaug_feast.datasets.split import split_interactions
    from recommender import distributed as D
    from recommender.batching import make_kjt
    from ecaug_feast.jobs.train_data import build_in_memory
    from recommender.model import TwoTower, in_batch_softmax_loss
    from recommender.train import _encode_examples, catalog_for, model_config_for

    ds = load_dataset(a.dataset)
    sp = split_interactions(ds)
    data = build_in_memory(sp.train, ds.items)
    cfg = model_config_for(data, embedding_dim=a.dim, out_dim=a.dim, hidden_dim=256, dropout=0.0)
    ue, ie = _encode_examples(data, cfg)
    n = ue.n
    counts = np.bincount(ie.ids, minlength=cfg.num_items + 1).astype(np.float64)
    log_q = torch.from_numpy(np.log(np.maximum(counts, 1) / n * a.batch_size)).float()
    rng = np.random.default_rng(0)

    info = D.init_distributed()
    torch.manual_seed(0)
    init = TwoTower(cfg).state_dict()
    dmp = D.wrap_dmp(TwoTower(cfg, device="meta", catalog=catalog_for(data)), info, lr_sparse=0.02)
    D.load_into_dmp(dmp, init)
    opt_tr = D.dense_optimizer(dmp, 1e-3)
    plain = _plain_model(cfg)
    opt_pl = torch.optim.Adam(plain.parameters(), lr=1e-3)

    def step_torchrec():
        rows = rng.integers(0, n, a.batch_size)
        us, ud = ue.take(rows)
        its, idn = ie.take(rows)
        ids = torch.from_numpy(ie.ids[rows])
        u, v = dmp(make_kjt(us, its, a.batch_size), torch.from_numpy(ud), torch.from_numpy(idn))
        loss = in_batch_softmax_loss(u, v, ids, log_q[ids], cfg.temperature)
        opt_tr.zero_grad()
        loss.backward()
        opt_tr.step()

    def step_plain():
        rows = rng.integers(0, n, a.batch_size)
        us, ud = ue.take(rows)
        its, idn = ie.take(rows)
        ids = torch.from_numpy(ie.ids[rows])
        u, v = plain(us, ud, its, idn)
        loss = in_batch_softmax_loss(u, v, ids, log_q[ids], cfg.temperature)
        opt_pl.zero_grad()
        loss.backward()
        opt_pl.step()

    for f in (step_torchrec, step_plain):  # warm-up
        for _ in range(3):
            f()
    t = {"torchrec": 0.0, "plain_torch": 0.0}
    block = 10
    for _ in range(max(1, a.steps // block)):
        for name, f in (("torchrec", step_torchrec), ("plain_torch", step_plain)):
            t0 = time.perf_counter()
            for _ in range(block):
                f()
            t[name] += time.perf_counter() - t0
    total = max(1, a.steps // block) * block * a.batch_size
    res = {
        "torchrec": round(total / t["torchrec"]),
        "plain_torch": round(total / t["plain_torch"]),
        "unit": "examples/s (training step incl. batch assembly)",
        "speedup": round(t["plain_torch"] / t["torchrec"], 2),
        "batch_size": a.batch_size,
        "steps": max(1, a.steps // block) * block,
        "threads": a.threads,
        "embedding_dim": a.dim,
        "tables": {"t_user": cfg.user_buckets, "t_item": cfg.num_items + 1, "t_attr": cfg.num_attributes + 1},
        "dataset": a.dataset,
        "cpu": platform.processor() or platform.machine(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    D.shutdown(info)
    if a.json:
        print(json.dumps(res))
    else:
        print(f"torchrec    {res['torchrec']:>8,} examples/s")
        print(f"plain_torch {res['plain_torch']:>8,} examples/s   (torchrec speed-up x{res['speedup']}, load avg {res['load_avg_1m']})")


if __name__ == "__main__":
    sys.exit(main())
