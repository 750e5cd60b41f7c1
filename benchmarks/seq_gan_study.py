"""The sequence-augmentation study at a size 2 shared CPU cores allow, with progress logged.

    ecaug ingest --dataset beauty   # the study reads the processed dataset
    python benchmarks/seq_gan_study.py --max-users 2000 --out /tmp/exp9 [--fraction 0.25]

Same code path as ``ecaug experiment --model sequence`` (``ecaug_feast.jobs.study.run_study``),
with smaller training budgets than the full preset (stated in the output's config) so that one cell
finishes in minutes. Prints the JSON summary's results and verdict.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-users", type=int, default=5000)
    ap.add_argument("--fraction", type=float, default=0.25)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--methods", default="popularity,real_only,seq_ops,pseudo_prior,gan_augmented")
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    for n in ("torchrec", "fbgemm_gpu"):
        logging.getLogger(n).setLevel(logging.ERROR)
    import torch

    torch.set_num_threads(1)
    from ecaug_feast.jobs.presets import make_config
    from ecaug_feast.jobs.study import run_study

    cfg = make_config("full", fractions=[a.fraction], seeds=a.seeds, max_users=a.max_users, workers=1,
                      methods=a.methods.split(","), model_type="sequence",
                      seq_train=dict(epochs=40, patience=6, batch_size=128, lr=1e-3, threads=1),
                      seq_finetune=dict(epochs=8, patience=2),
                      seq_ratios=[1.0],
                      seq_gan=dict(mle_epochs=10, adv_steps=40, threads=1))
    s = run_study(None, cfg, a.out)
    print(json.dumps({k: s[k] for k in ("results", "verdict", "seconds", "out_dir")}, default=str))


if __name__ == "__main__":
    main()
