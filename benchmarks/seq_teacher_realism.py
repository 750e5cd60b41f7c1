"""How the sampling settings move the realism of the TEACHER's pools, as the study builds them.

The study's ``gan_augmented --seq-teacher recommender`` draws continuations from real-only's
sequence model under the generator's sampling settings. This benchmark builds that pool exactly as
one study cell does (the fraction's truncated training histories, real-only trained with the full
preset's budget and the seed, ``recommender.study_methods.seq_pool``), once per setting, and prints
per setting: the history C2ST (the gate's 5-item windows) and its real-vs-real floor, the feature
C2ST, the pool size, and the statistics the history detector reads best, one at a time.

    ECAUG_HOME=<state with the dataset ingested> python benchmarks/seq_teacher_realism.py \\
        --dataset beauty --fraction 0.25 --seed 0 \\
        --aug '{"n_new": 2, "synthetic_share": 0, "expansions": 3}' \\
        --settings '{}' '{"transition_mix": 0}' '{"popularity_bias": -0.2}' [--out FILE.json]

A setting is a JSON object of ``SeqGANConfig`` fields over the full preset's (``--seq-gan`` of
``ecaug experiment``). Training the student is not part of it: the study measures the lift.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="beauty")
    p.add_argument("--fraction", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--aug", default='{"n_new": 2, "synthetic_share": 0, "expansions": 3}', help="--seq-aug of the study (JSON)")
    p.add_argument("--settings", nargs="+", default=["{}"], help="SeqGANConfig overrides per pool (JSON objects)")
    p.add_argument("--out", default=None, help="write the rows here (JSON)")
    a = p.parse_args()

    from ecaug_feast.noise import quiet_known_noise

    quiet_known_noise()
    import torch

    from ecaug_feast.jobs.presets import make_config
    from ecaug_feast.jobs.study import cell_data, dataset_path
    from ecaug_feast.paths import state_dir
    from recommender.seq_train import SeqTrainConfig, histories_for, next_item_scorer, seq_config_for, train_seq
    from recommender.study_methods import seq_pool

    torch.set_num_threads(1)
    settings = [json.loads(s) for s in a.settings]
    aug = json.loads(a.aug)
    cfg = make_config("full", dataset=a.dataset, fractions=[a.fraction], seeds=1, source="memory", seq_aug=aug)
    data, valid, _ = cell_data(cfg, a.fraction, dataset_path(cfg, state_dir()))
    scfg = seq_config_for(data, **cfg.seq_model)
    t = time.time()
    res = train_seq(data, valid, scfg, SeqTrainConfig(seed=a.seed, **cfg.seq_train))
    print(f"real-only (the teacher): {time.time() - t:.0f} s, valid NDCG@10 {res.best_valid['ndcg@10']:.4f}", flush=True)
    hist = histories_for(data, scfg, "valid")  # training events only
    rows = []
    for st in settings:
        t = time.time()
        made = seq_pool("gan_augmented", data, hist, scfg, a.seed, {**cfg.seq_gan, **st}, aug, teacher=next_item_scorer(res.model))
        info = made.info
        by = info.get("c2st_sequences_by_statistic") or {}
        row = {"setting": st, "c2st_auc_sequences": info.get("c2st_auc_sequences"),
               "real_vs_real": info.get("c2st_auc_sequences_real_vs_real"), "c2st_auc_features": info.get("c2st_auc_features"),
               "histories": len(made.histories), "seconds": round(time.time() - t),
               "detector_reads": dict(sorted(by.items(), key=lambda kv: -kv[1]["auc"])[:6])}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps({"dataset": a.dataset, "fraction": a.fraction, "seed": a.seed, "aug": aug,
                                           "teacher_valid_ndcg@10": res.best_valid["ndcg@10"], "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
