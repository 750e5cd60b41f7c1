"""The sequence generator's pools with today's full softmax and full-vocabulary draws against the
linear-cost paths (issue 33 item 2: the sampled loss for its ML and policy-gradient steps, FAISS
candidate sets for its draws), on the same training histories: realism (the pipeline's history
C2ST and its real-vs-real floor), what the gates accepted, held-out NLL, and the time of the fit
and of generation. Training histories only (nothing reads validation or test). A benchmark, not a test.

    python benchmarks/seq_gan_linear.py --fraction 0.25 --threads 1 \
        --paths full sampled+candidates --json docs/results/seq-gan-linear/beauty-25.json

A path is ``LOSS+GENERATION[@K]`` (``full`` = ``full+full``): ``sampled+candidates`` fits with the
sampled softmax (``--negatives``) and draws from ``K`` (default ``--candidate-k``) candidates found by the
``--index`` (flat: exact; ivf: approximate, the kind used above ``IVF_ABOVE`` items). Every other
setting is the product's default (``ecaug augment``'s ``SeqAugmentConfig``, no teacher: the
generator's own network draws). ``--max-users`` samples users as the study does (quick checks).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

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
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args()
    from ecaug_feast.noise import quiet_known_noise

    quiet_known_noise()
    import torch

    from ecaug_feast.datasets import load_dataset
    from ecaug_feast.datasets.split import split_interactions
    from ecaug_feast.features.build import item_attributes
    from ecaug_feast.jobs.augment_seq import seq_config_file
    from ecaug_feast.jobs.train_data import build_in_memory
    from ecaug_feast.study.cell import sample_users
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
    for path in a.paths:
        spec, _, k = path.partition("@")
        k = int(k) if k else a.candidate_k
        loss, _, gen = spec.partition("+")
        gen = gen or ("full" if loss == "full" else "candidates")
        gcfg = replace(base.gan, loss=loss, generation=gen, negatives=a.negatives, candidate_k=k,
                       candidate_index=a.index, threads=a.threads, seed=a.seed)
        cfg = replace(base, gan=gcfg)
        load0 = os.getloadavg()[0]
        t0 = time.time()
        res = augment_histories(h.values, h.offsets, cfg, attributes=attrs)
        m, rep = res.metrics, res.gan.report
        row = {"loss": res.gan.loss, "generation": res.gan.generation, "candidate_k": k if gen == "candidates" else None,
               "index": a.index if gen == "candidates" else None, "negatives": a.negatives if loss == "sampled" else None,
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


if __name__ == "__main__":
    main()
