"""Full softmax vs the sampled softmax with logQ correction for the sequence model (issue 33).

Part 1, accuracy: both losses trained on Beauty with the same seed, epochs and users; test
NDCG@10 / Recall@10 side by side and seconds per epoch. Part 2, step cost: one training step of
each loss on synthetic random histories at 1x / 4x / 16x a catalogue size (seconds per step and
the step's peak extra memory, each in its own process), to show whether the step still grows
with the catalogue. A step-cost variant ``LOSS+sparse`` (e.g. ``sampled+sparse``) optimises the
item table with the row-wise sparse optimizer (``SeqTrainConfig.table_optimizer="sparse"``,
lazy Adam on the rows the step looked up); plain ``LOSS`` with dense Adam over every row. Each
step is the trainer's own (one process through TorchRec's DMP, ``seq_train.step_loss`` and
``seq_train.SeqOptimizer``); before 2026-12-05 it was the plain module with dense Adam.

    python benchmarks/sampled_loss.py [--seeds 3] [--first-seed 0] [--losses full,sampled] [--users 0 (all)]
                                      [--epochs 60] [--negatives 256] [--neg-mix 0.0] [--step-items 12101]
                                      [--scales 1,4,16] [--step-losses full,sampled,sampled+sparse] [--clock wall|cpu] [--out FILE.json]

Issue 33's check runs it at full size (all users, 3 seeds, early stopping within 60 epochs);
that takes hours on CPU; ``--first-seed`` and ``--losses`` split it into runs that fit side by
side (one process per core), each writing its rows with ``--out``. ``--users 2000 --epochs 3
--seeds 1`` is a smoke run of a few minutes.
Prints one line per run, a summary table and a final ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from typing import Any

import numpy as np

from ecaug_feast.noise import quiet_known_noise

LOSSES = ("full", "sampled")  # the accuracy part trains both; --step-losses picks the step-cost ones


def _beauty(users: int, seed: int):
    """TrainData, valid and test eval sets of Beauty, or of ``users`` random users of it."""
    from ecaug_feast.datasets import load_dataset
    from ecaug_feast.datasets.split import split_interactions
    from ecaug_feast.jobs.train_data import build_in_memory
    from recommender.evaluate import make_eval_set

    ds = load_dataset("beauty")
    sp = split_interactions(ds)
    train, valid, test = sp.train, sp.valid, sp.test
    if users:
        all_users = np.unique(train["user_id"].to_numpy())
        keep = np.random.default_rng(seed).choice(all_users, size=min(users, len(all_users)), replace=False)
        train, valid, test = (df[df["user_id"].isin(keep)] for df in (train, valid, test))
    return build_in_memory(train, ds.items, valid), make_eval_set(valid, [train]), make_eval_set(test, [train, valid])


def accuracy(a: argparse.Namespace) -> list[dict[str, Any]]:
    """Train both losses per seed; one row per (seed, loss)."""
    from recommender.seq_train import SeqTrainConfig, evaluate_seq, seq_config_for, train_seq

    data, valid, test = _beauty(a.users, 0)
    rows = []
    for seed in range(a.first_seed, a.first_seed + a.seeds):
        for loss in a.losses.split(","):
            cfg = seq_config_for(data)
            tcfg = SeqTrainConfig(seed=seed, epochs=a.epochs, loss=loss, negatives=a.negatives, neg_mix=a.neg_mix)
            res = train_seq(data, valid, cfg, tcfg)
            v = evaluate_seq(res.model, data, valid, "valid", seed=seed)  # a setting is chosen on this, not on test
            m = evaluate_seq(res.model, data, test, "test", seed=seed)
            row = {"seed": seed, "loss": loss, "negatives": a.negatives, "neg_mix": a.neg_mix, "valid_ndcg@10": v["ndcg@10"],
                   "ndcg@10": m["ndcg@10"], "recall@10": m["recall@10"], "best_epoch": res.best_epoch,
                   "s_per_epoch": float(np.mean([h["train_s"] for h in res.history]))}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def _step_child(num_items: int, variant: str, a: dict[str, Any], out: Any) -> None:
    """In its own process (so its peak memory is its own): median seconds of a training step and
    of its optimizer step, and the peak resident memory the steps add over the model's.
    ``variant``: ``LOSS`` or ``LOSS+sparse`` (the item table's optimizer)."""
    import pandas as pd
    import torch

    from ecaug_feast.histories import Histories
    from recommender import distributed as D
    from recommender.batching import ItemCatalog
    from recommender.seq_model import NegativeSampler, SeqConfig, SeqTwoTower, packed_target_batch
    from recommender.seq_train import SeqOptimizer, resolve_table_optimizer, step_loss, target_counts, wrap_dmp

    loss, _, table = variant.partition("+")
    table = resolve_table_optimizer(table or "dense", loss)
    torch.set_num_threads(a["threads"])
    rng = np.random.default_rng(0)
    items = pd.DataFrame({"item_id": np.arange(1, num_items + 1), "attributes": [[1 + i % 20] for i in range(num_items)]})
    cat = ItemCatalog.from_frame(items)
    B, L = a["batch"], a["length"]
    hist = Histories(np.arange(B), rng.integers(1, num_items + 1, size=B * L), np.arange(0, B * L + 1, L))
    cfg = SeqConfig(num_items=num_items, num_attributes=cat.num_attributes, max_len=L)
    info = D.init_distributed()
    torch.manual_seed(0)
    model = wrap_dmp(SeqTwoTower(cfg, device="meta", catalog=cat), info)
    D.load_into_dmp(model, SeqTwoTower(cfg, catalog=cat).state_dict())
    model.train()
    opt = SeqOptimizer(model, table, lr=1e-3)
    sampler = NegativeSampler(target_counts(hist, num_items), a["negatives"]) if loss == "sampled" else None
    parts = packed_target_batch(hist, np.arange(B), 8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, t_opt, cpu, cpu_opt = [], [], [], []
    for _ in range(a["steps"]):
        t, c = time.perf_counter(), time.process_time()
        lv, rows = step_loss(model, parts, sampler, rng, torch.device("cpu"), False)
        opt.zero_grad()
        lv.backward()
        t2, c2 = time.perf_counter(), time.process_time()
        opt.step(rows)  # dense: Adam over every table row, the part that grew with the catalogue; sparse: the rows looked up
        times.append(time.perf_counter() - t)
        t_opt.append(time.perf_counter() - t2)
        cpu.append(time.process_time() - c)
        cpu_opt.append(time.process_time() - c2)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    D.shutdown(info)

    def med(x: list[float]) -> float:
        return float(np.median(x[1:] or x))

    # CPU seconds as well: on a shared machine the wall clock measures the load (one thread: CPU = work)
    out.put({"items": num_items, "loss": variant, "s_per_step": med(times), "s_optimizer": med(t_opt),
             "cpu_s_per_step": med(cpu), "cpu_s_optimizer": med(cpu_opt), "step_mb": (peak - before) / 1024})


def step_cost(a: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per (catalogue scale, loss)."""
    ctx = mp.get_context("spawn")
    args = {"batch": a.step_batch, "length": a.step_length, "negatives": a.negatives, "steps": a.steps, "threads": a.threads}
    rows = []
    for k in (int(x) for x in a.scales.split(",")):
        for loss in a.step_losses.split(","):
            q = ctx.Queue()
            p = ctx.Process(target=_step_child, args=(a.step_items * k, loss, args, q))
            p.start()
            row = {"scale": k, **q.get()}
            p.join()
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def _ratio_lines(steps: list[dict[str, Any]], clock: str = "wall") -> list[str]:
    by = {(r["scale"], r["loss"]): r for r in steps}
    losses = list(dict.fromkeys(r["loss"] for r in steps))
    base = {loss: by[(min(s for s, _ in by), loss)] for loss in losses}
    step, opt = ("s_per_step", "s_optimizer") if clock == "wall" else ("cpu_s_per_step", "cpu_s_optimizer")
    out = []
    for k in sorted({s for s, _ in by}):
        cells = [f"{loss} {by[(k, loss)][step]:.3f}s ({by[(k, loss)][step] / base[loss][step]:.1f}x), "
                 f"{by[(k, loss)]['step_mb']:.0f} MB, Adam {by[(k, loss)][opt]:.3f}s" for loss in losses]
        out.append(f"  {k:>3}x ({by[(k, losses[0])]['items']:,} items): " + " | ".join(cells))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first_seed .. first_seed + seeds - 1")
    p.add_argument("--losses", default="full,sampled", help="losses the accuracy part trains")
    p.add_argument("--out", default="", help="also write the RESULT json to this file")
    p.add_argument("--users", type=int, default=0, help="random Beauty users to train on (0 = all)")
    p.add_argument("--epochs", type=int, default=60, help="at most this many epochs (early stopping, patience 5)")
    p.add_argument("--negatives", type=int, default=256)
    p.add_argument("--neg-mix", type=float, default=0.0, help="share of sampled negatives drawn by popularity")
    p.add_argument("--step-items", type=int, default=12101, help="catalogue size of the 1x step-cost run (Beauty's)")
    p.add_argument("--scales", default="1,4,16", help="step-cost catalogue multiples ('' = skip)")
    p.add_argument("--step-losses", default="full,sampled",
                   help="losses timed in the step-cost part (sampled alone for huge catalogues); LOSS+sparse: the item table "
                        "by the row-wise sparse optimizer")
    p.add_argument("--step-batch", type=int, default=128)
    p.add_argument("--step-length", type=int, default=20)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="the step-cost table's seconds: wall clock, or CPU seconds (a loaded machine; both are in RESULT)")
    a = p.parse_args()
    for v in a.step_losses.split(","):  # checked here: a child that fails would leave the parent waiting
        loss, _, table = v.partition("+")
        if loss not in LOSSES or table not in ("", "dense", "sparse"):
            p.error(f"--step-losses: {v!r} is not LOSS or LOSS+sparse with LOSS one of {', '.join(LOSSES)}")
    quiet_known_noise()
    acc = [] if a.skip_accuracy else accuracy(a)
    steps = step_cost(a) if a.scales else []
    print("\nloss      NDCG@10  Recall@10  s/epoch  (mean over seeds)")
    for loss in LOSSES:
        r = [x for x in acc if x["loss"] == loss]
        if r:
            print(f"{loss:<9} {np.mean([x['ndcg@10'] for x in r]):.4f}   {np.mean([x['recall@10'] for x in r]):.4f}    "
                  f"{np.mean([x['s_per_epoch'] for x in r]):.1f}")
    if steps:
        print(f"one training step (median s, {a.clock} clock, and its growth from the smallest catalogue; peak extra memory):")
        print("\n".join(_ratio_lines(steps, a.clock)))
    result = json.dumps({"settings": vars(a), "accuracy": acc, "step_cost": steps})
    if a.out:
        with open(a.out, "w") as f:
            f.write(result + "\n")
    print("RESULT", result, flush=True)


if __name__ == "__main__":
    main()
