"""The sequence generator's pools with today's full softmax and full-vocabulary draws against the
linear-cost paths (issue 33 item 2: the sampled loss for its ML and policy-gradient steps, FAISS
candidate sets for its draws), on the same training histories: realism (the pipeline's history
C2ST and its real-vs-real floor), what the gates accepted, held-out NLL, and the time of the fit
and of generation. Training histories only (nothing reads validation or test). A benchmark, not a test.

    python benchmarks/seq_gan_linear.py --fraction 0.25 --threads 1 \
        --paths full sampled+candidates --json docs/results/seq-gan-linear/beauty-25.json

``--one-fit LOSS``: one generator fitted with that loss, every path's generation on it (isolates
the draws from the fit). A path is ``LOSS+GENERATION[@K[/TAIL]]`` (``full`` = ``full+full``): ``sampled+candidates`` fits with the
sampled softmax (``--negatives``) and draws from ``K`` (default ``--candidate-k``) candidates found by the
``--index`` (flat: exact; ivf: approximate, the kind used above ``IVF_ABOVE`` items). Every other
setting is the product's default (``ecaug augment``'s ``SeqAugmentConfig``, no teacher: the
generator's own network draws). ``--max-users`` samples users as the study does (quick checks).

    python benchmarks/seq_gan_linear.py --step-items 12000 48000 192000 [--json FILE]

``--step-items``: instead, the CPU time (one thread) of one maximum-likelihood step (128 random
histories of 8 items, forward + backward + Adam) with the full and the sampled loss, and of one
generation step (512 rows, 10 tokens each, all sampling settings at their defaults but
coherence) with full-vocabulary and candidate draws (IVF index; its build timed apart), on an
untrained generator whose vocabulary has that many items (random histories): how a step's cost
grows with the catalogue, apart from how many steps the data needs.

    python benchmarks/seq_gan_linear.py --step-scales 1 4 16 [--json FILE]

``--step-scales``: the generator's steps on the linear paths at Beauty's 12,101 items times each
scale, each scale in its own process, one thread, CPU seconds, median of ``--step-repeats``
steps after a warm-up: one maximum-likelihood step with the sampled loss (128 random histories of
8 items) under dense Adam and under row-wise Adam (the generator's optimizer with the sampled
loss), split into forward + backward and the optimizer; and ``expand`` on 512 short prompts
with candidate draws (IVF, K = 512, 10 items each; every sampling setting at its default but
coherence) over a CSR of 1.85 random histories per item (Beauty's users per item): its first
call (which builds the FAISS index and the transition table) and later calls of 512 other
prompts, with the parts of a later call that a per-call timer sees (the prompts' preparation over
the whole CSR, the draws).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="beauty")
    ap.add_argument("--fraction", type=float, default=0.25)
    ap.add_argument("--max-users", type=int, default=None)
    ap.add_argument("--paths", nargs="+", default=["full", "sampled+candidates"])
    ap.add_argument("--negatives", type=int, default=256)
    ap.add_argument("--candidate-k", type=int, default=512)
    ap.add_argument("--index", default="ivf", choices=["flat", "ivf", "auto"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tail", type=int, default=0, help="candidate_tail: uniform draws standing for the items outside the top K")
    ap.add_argument("--one-fit", default=None, choices=["full", "sampled"],
                    help="fit one generator with this loss and run every path's generation on it (the paths' loss is ignored)")
    ap.add_argument("--step-items", type=int, nargs="+", default=None, help="time single steps at these vocabulary sizes")
    ap.add_argument("--step-scales", type=float, nargs="+", default=None, help="time the linear paths' steps at Beauty x these")
    ap.add_argument("--step-repeats", type=int, default=5)
    ap.add_argument("--step-one", type=float, default=None, help=argparse.SUPPRESS)  # one scale, in this process
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args()
    if a.step_items:
        return step_costs(a)
    if a.step_one:
        return print(json.dumps(linear_steps(a, a.step_one)), flush=True)
    if a.step_scales:
        return linear_step_table(a)
    from ecaug_feast.noise import quiet_known_noise

    quiet_known_noise()
    import torch

    from ecaug_feast.datasets import load_dataset
    from ecaug_feast.datasets.split import split_interactions
    from ecaug_feast.features.build import item_attributes
    from ecaug_feast.jobs.augment_seq import seq_config_file
    from ecaug_feast.jobs.train_data import build_in_memory
    from ecaug_feast.study.cell import sample_users
    from ecaug_feast.synth.seq_gan import SequenceGAN
    from ecaug_feast.synth.seq_pipeline import augment_histories
    from recommender.data import truncate_history
    from recommender.seq_train import histories_for, seq_config_for

    torch.set_num_threads(a.threads)
    ds = load_dataset(a.dataset)
    sp = split_interactions(ds)
    train, _, _ = sample_users(sp.train, sp.valid, sp.test, a.max_users)
    data = build_in_memory(truncate_history(train, a.fraction), ds.items)
    h = histories_for(data, seq_config_for(data), "valid")
    attrs = item_attributes(ds.items)
    base = seq_config_file(None, seed=a.seed)
    out: dict = {"dataset": a.dataset, "fraction": a.fraction, "users": int(len(h.user_ids)), "events": int(len(h.values)),
                 "threads": a.threads, "seed": a.seed, "command": "python " + " ".join(sys.argv), "paths": {}}
    fitted = None
    for path in a.paths:
        spec, _, k = path.partition("@")
        k, _, tail = k.partition("/")  # LOSS+GEN@K/TAIL
        k = int(k) if k else a.candidate_k
        tail = int(tail) if tail else a.tail
        loss, _, gen = spec.partition("+")
        gen = gen or ("full" if loss == "full" else "candidates")
        gcfg = replace(base.gan, loss=loss, generation=gen, negatives=a.negatives, candidate_k=k,
                       candidate_index=a.index, candidate_tail=tail, threads=a.threads, seed=a.seed)
        cfg = replace(base, gan=gcfg)
        load0 = os.getloadavg()[0]
        t0 = time.time()
        if a.one_fit:
            if fitted is None:
                fitted = SequenceGAN(replace(gcfg, loss=a.one_fit)).fit(h.values, h.offsets)
            fitted.cfg = replace(fitted.cfg, generation=gen, candidate_k=k, candidate_tail=tail)
            fitted._cand_index = None
        res = augment_histories(h.values, h.offsets, cfg, attributes=attrs, gan=fitted if a.one_fit else None)
        m, rep = res.metrics, res.gan.report
        row = {"loss": res.gan.loss, "generation": res.gan.generation, "candidate_k": k if gen == "candidates" else None,
               "index": a.index if gen == "candidates" else None, "tail": tail if gen == "candidates" else None, "negatives": a.negatives if loss == "sampled" else None,
               "c2st_auc_sequences": m["c2st_auc_sequences"], "c2st_real_vs_real": m["c2st_auc_sequences_real_vs_real"],
               "gate": m["gate"], "generated": m["generated"], "accepted": m["accepted"],
               "nll_mle": rep.get("nll_mle"), "nll_after_adversarial": rep.get("nll_after_adversarial"),
               "mle_epochs": rep.get("mle_epochs"), "vocab": rep.get("vocab"),
               "fit_seconds": m["fit_seconds"], "generate_seconds": m["generate_seconds"], "total_seconds": round(time.time() - t0, 1),
               "load_1min_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)]}
        out["paths"][path] = row
        print(json.dumps({path: row}), flush=True)
    print(json.dumps(out))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=1) + "\n")


def step_costs(a: argparse.Namespace) -> None:
    """CPU seconds of one ML step and one generation call per vocabulary size (see the module doc)."""
    import numpy as np
    import torch

    from ecaug_feast.histories import rows_to_csr
    from ecaug_feast.synth.seq_gan import SeqGANConfig, SequenceGAN

    torch.set_num_threads(a.threads)
    out: dict = {"command": "python " + " ".join(sys.argv), "threads": a.threads, "negatives": a.negatives,
                 "candidate_k": a.candidate_k, "index": a.index, "sizes": {}}
    for n in a.step_items:
        rng = np.random.default_rng(a.seed)
        hists = [rng.choice(n, 8, replace=False) + 1 for _ in range(max(n // 4, 2000))]
        hists[0] = np.arange(1, n + 1)  # every item occurs: the vocabulary is n items
        v, o = rows_to_csr(hists)
        g = SequenceGAN(SeqGANConfig(mle_epochs=0, adversarial=False, holdout=0.01, threads=a.threads, seed=a.seed, loss="sampled",
                                     negatives=a.negatives, candidate_k=a.candidate_k, candidate_index=a.index)).fit(v, o)
        sampler = g.gen.sampled_loss
        batch = [g._train[i][:10] for i in rng.choice(len(g._train), 128, replace=False)]
        opt = torch.optim.Adam(g.gen.parameters(), lr=1e-3)
        row: dict = {"vocab": int(len(g.vocab))}
        for loss in ("full", "sampled"):
            g.gen.sampled_loss = sampler if loss == "sampled" else None
            g.gen.train()
            times = []
            for _ in range(4):  # the first is a warm-up
                c = time.process_time()
                lo = g._mle_loss(batch, g.gen)
                opt.zero_grad()
                lo.backward()
                opt.step()
                times.append(time.process_time() - c)
            row[f"ml_step_{loss}_s"] = round(float(np.mean(times[1:])), 4)
        g.gen.eval()
        prompts = (len(g.vocab) + 2 + np.arange(512) % 4)[:, None]
        for gen in ("full", "candidates"):
            g.cfg = replace(g.cfg, generation=gen)
            if gen == "candidates":
                c = time.process_time()
                from ecaug_feast.synth.seq_candidates import network_index

                g._cand_index = None
                network_index(g)
                row["index_build_s"] = round(time.process_time() - c, 3)
            c = time.process_time()
            g._sample_tokens(prompts, 10, False, g._torch_rng(0), mix=g.cfg.transition_mix, min_prob=g.cfg.epsilon / len(g.vocab))
            row[f"generate_512x10_{gen}_s"] = round(time.process_time() - c, 3)
        out["sizes"][str(n)] = row
        print(json.dumps({n: row}), flush=True)
    print(json.dumps(out))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=1) + "\n")


BEAUTY_ITEMS = 12_101


def _median(f: Callable[[], dict], n: int) -> dict:
    """Median per key of ``n`` calls of ``f`` (each returning CPU seconds by part) after a warm-up."""
    import numpy as np

    f()
    runs = [f() for _ in range(n)]
    return {k: round(float(np.median([r[k] for r in runs])), 4) for k in runs[0]}


def linear_steps(a: argparse.Namespace, scale: float) -> dict:
    """The figures of ``--step-scales`` for one scale (see the module doc)."""
    import numpy as np
    import torch

    from ecaug_feast.histories import rows_to_csr
    from ecaug_feast.synth import seq_gan as SG
    from ecaug_feast.synth.seq_candidates import network_index

    torch.set_num_threads(1)
    clock = time.process_time
    n = int(round(BEAUTY_ITEMS * scale))
    rng = np.random.default_rng(a.seed)
    lens = rng.integers(3, 14, int(1.85 * n))  # ~8 items a history, short ones among them (expand's prompts)
    hists = [rng.integers(1, n + 1, int(k)) for k in lens]
    hists[0] = np.arange(1, n + 1)  # every item occurs: the vocabulary is n items
    v, o = rows_to_csr(hists)
    fit_rows = [0] + list(range(1, min(len(hists), max(n // 4, 2000))))
    fv, fo = rows_to_csr([hists[i] for i in fit_rows])
    g = SG.SequenceGAN(SG.SeqGANConfig(mle_epochs=0, adversarial=False, holdout=0.01, threads=1, seed=a.seed, loss="sampled",
                                       generation="candidates", negatives=a.negatives, candidate_k=a.candidate_k,
                                       candidate_index=a.index)).fit(fv, fo)
    row: dict = {"scale": scale, "items": int(len(g.vocab)), "histories": int(len(hists))}
    batch = [g._train[i][:10] for i in rng.choice(len(g._train), 128, replace=False)]
    start = {k: t.clone() for k, t in g.gen.state_dict().items()}
    for name, row_wise in (("dense", False), ("rowwise", True)):
        g.gen.load_state_dict(start)
        opt = SG._Adam(g.gen, 1e-3, row_wise)
        g.gen.train()

        def step() -> dict:
            c = clock()
            loss = g._mle_loss(batch, g.gen)
            opt.zero_grad()
            loss.backward()
            c1 = clock()
            opt.step(g.gen.touched)
            c2 = clock()
            return {"step": c2 - c, "fwd_bwd": c1 - c, "optimizer": c2 - c1}

        row.update({f"ml_{name}_{k}_s": t for k, t in _median(step, a.step_repeats).items()})
    g.gen.load_state_dict(start)
    g.gen.eval()
    short = np.flatnonzero(np.diff(o) < 8)
    picks = iter(np.split(rng.permutation(short)[: 512 * (a.step_repeats + 2)], a.step_repeats + 2))
    c = clock()
    g.expand(v, o, np.sort(next(picks)), 10, seed=0)
    row["expand_first_call_s"] = round(clock() - c, 3)
    c = clock()
    g._cand_index = None
    network_index(g)
    row["index_build_s"] = round(clock() - c, 3)

    def chunk() -> dict:
        rows = np.sort(next(picks))
        c = clock()
        batches = list(g._expansion_batches(v, o, rows, 10, 512))
        c1 = clock()
        g.expand(v, o, rows, 10, seed=0)
        c2 = clock()
        return {"call": c2 - c1, "prompts": c1 - c, "draws": (c2 - c1) - (c1 - c)}

    row.update({f"expand_512_{k}_s": t for k, t in _median(chunk, a.step_repeats).items()})
    return row


def linear_step_table(a: argparse.Namespace) -> None:
    """Run :func:`linear_steps` per scale in its own process; print a table (and ``--json``)."""
    import subprocess

    out: dict = {"command": "python " + " ".join(sys.argv), "threads": 1, "negatives": a.negatives, "candidate_k": a.candidate_k,
                 "index": a.index, "clock": "process CPU seconds", "scales": {}}
    for s in a.step_scales:
        cmd = [sys.executable, __file__, "--step-one", str(s), "--step-repeats", str(a.step_repeats), "--negatives", str(a.negatives),
               "--candidate-k", str(a.candidate_k), "--index", a.index, "--seed", str(a.seed)]
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if res.returncode:
            raise SystemExit(f"scale {s}: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}")
        out["scales"][str(s)] = json.loads(res.stdout.strip().splitlines()[-1])
        print(json.dumps(out["scales"][str(s)]), flush=True)
    cols = ["items", "ml_dense_step_s", "ml_dense_optimizer_s", "ml_rowwise_step_s", "ml_rowwise_optimizer_s",
            "expand_first_call_s", "index_build_s", "expand_512_call_s", "expand_512_prompts_s", "expand_512_draws_s"]
    print("| scale | " + " | ".join(cols) + " |")
    for s, r in out["scales"].items():
        print(f"| {s}x | " + " | ".join(str(r[c]) for c in cols) + " |")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
