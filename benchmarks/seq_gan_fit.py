"""Sequence GAN fit + generation time on Beauty's TRAINING histories (no timed test: a benchmark).

    python benchmarks/seq_gan_fit.py --fraction 0.25 [--max-users N] [--mle-epochs 5 --adv-steps 40]
    torchrun --nproc_per_node 2 benchmarks/seq_gan_fit.py ...   # data-parallel fit (DDP; rank 0 prints)

Prints one JSON line: users, vocabulary, fit seconds (MLE / adversarial), generation seconds for
the pipeline's two uses (expand every history shorter than 8 by 10 items; synthetic users for 25%
of the histories), the load average while it ran, and the threads used.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fraction", type=float, default=0.25)
    ap.add_argument("--max-users", type=int, default=None)
    ap.add_argument("--mle-epochs", type=int, default=5)
    ap.add_argument("--adv-steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    from recommender.data import build_in_memory, truncate_history
    from ecaug_feast.datasets import load_dataset
    from ecaug_feast.features.split import split_interactions
    from recommender.seq_train import histories_for, seq_config_for
    from recommender.study_methods import sample_users
    from ecaug_feast.synth.seq_gan import SeqGANConfig, SequenceGAN, init_distributed

    init_distributed()  # under torchrun: join the process group (gloo on CPU, nccl on CUDA)

    ds = load_dataset("beauty")
    sp = split_interactions(ds)
    train, _, _ = sample_users(sp.train, sp.valid, sp.test, a.max_users)  # the study's user sample
    data = build_in_memory(truncate_history(train, a.fraction), ds.items)
    h = histories_for(data, seq_config_for(data), "valid")
    load0 = os.getloadavg()[0]
    t0 = time.time()
    g = SequenceGAN(SeqGANConfig(mle_epochs=a.mle_epochs, adv_steps=a.adv_steps, threads=a.threads)).fit(h.values, h.offsets)
    fit = time.time() - t0
    if not g.is_writer:
        return  # generation and the report: rank 0 only
    torch.set_num_threads(a.threads)
    t1 = time.time()
    short = np.flatnonzero(h.lengths < 8)
    g.expand(h.values, h.offsets, short, 10, seed=0)
    t_exp = time.time() - t1
    t2 = time.time()
    g.sample_users(int(0.25 * len(h.user_ids)), seed=1)
    t_syn = time.time() - t2
    print(json.dumps({"fraction": a.fraction, "users": int(len(h.user_ids)), "events": int(len(h.values)), "vocab": int(len(g.vocab)),
                      "mle_epochs": g.report["mle_epochs"], "adv_steps": g.report.get("adversarial", {}).get("steps"),
                      "fit_s": round(fit, 1), "expand_s": round(t_exp, 1), "expanded": int(len(short)),
                      "synthetic_s": round(t_syn, 1), "synthetic": int(0.25 * len(h.user_ids)),
                      "total_s": round(time.time() - t0, 1), "threads": a.threads, "device": g.report["device"], "ddp": g.report.get("ddp"),
                      "loadavg_start": round(load0, 2), "loadavg_end": round(os.getloadavg()[0], 2),
                      "nll": [g.report.get("nll_mle"), g.report.get("nll_after_adversarial")]}))


if __name__ == "__main__":
    main()
