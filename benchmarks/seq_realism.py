"""How the sequence generator's sampling settings move the realism gates, on one fitted generator.

    ECAUG_HOME=STATE python benchmarks/seq_realism.py --temperatures 1.0 0.9 0.8 0.7 [--config FILE] [--threads 2]

``STATE`` is a state folder where ``ecaug ingest`` and ``ecaug apply`` ran (the histories are read
through Feast as ``ecaug augment --generator sequence`` reads them). The generator is fitted once
(``--config``: ``SeqAugmentConfig`` JSON as ``ecaug augment --config`` takes it); then, for each
sampling temperature, the rest of the pipeline runs on it as the job does (expand + synthetic
users, labeler, gates) and the features follow by the same builders. Prints one JSON line per
temperature (history C2ST and its real-vs-real floor, feature-row C2ST, tail share, coverage,
copies, accepted) and a last line with all of them. Nothing is written to the state folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.9, 0.8])
    ap.add_argument("--config", type=Path, default=None, help="SeqAugmentConfig JSON (as ecaug augment --config)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    import pandas as pd
    import torch

    from ecaug_feast import schema as S
    from ecaug_feast.jobs.augment_seq import load_training_histories, seq_config_file
    from ecaug_feast.jobs.workspace import Workspace
    from ecaug_feast.synth.seq_gan import SequenceGAN
    from ecaug_feast.synth.seq_pipeline import augment_histories, feature_c2st, feature_rows, history_end_times

    torch.set_num_threads(a.threads)
    cfg = seq_config_file(a.config, seed=a.seed)
    ws = Workspace.from_env()
    th = load_training_histories(ws, cfg.gan.max_len)
    real_rows = pd.read_parquet(ws.feast_dir / "user_features.parquet", columns=[S.USER_ID, *S.USER_SCALAR_COLUMNS])
    t0 = time.time()
    gan = SequenceGAN(cfg.gan).fit(th.values, th.offsets)
    fit_s = round(time.time() - t0, 1)
    out = []
    for t in a.temperatures:
        gan.cfg.temperature = t
        t1 = time.time()
        res = augment_histories(th.values, th.offsets, cfg, gan=gan)
        m = res.metrics
        fr = feature_rows(res.histories, history_end_times(res.source, th.last_ns, a.seed), th.train, th.attributes, seed=a.seed)
        auc = feature_c2st(fr, real_rows, seed=a.seed)
        row = {"temperature": t, "c2st_auc_sequences": m.get("c2st_auc_sequences"),
               "c2st_auc_sequences_real_vs_real": m.get("c2st_auc_sequences_real_vs_real"),
               "c2st_auc_features": round(float(auc), 4) if auc == auc else None,
               **{k: m.get(k) for k in ("tail_share", "real_tail_share", "catalogue_coverage", "exact_copy_share",
                                        "near_copy_share", "trigram_copy_share", "generated", "accepted")},
               "seconds": round(time.time() - t1, 1)}
        print(json.dumps(row), flush=True)
        out.append(row)
    print(json.dumps({"users": int(len(th.offsets) - 1), "vocab": int(len(gan.vocab)), "fit_seconds": fit_s,
                      "mle_epochs": gan.report.get("mle_epochs"), "threads": a.threads, "load_1m": round(os.getloadavg()[0], 2),
                      "rows": out, "seed": a.seed}))


if __name__ == "__main__":
    from ecaug_feast.errors import EcaugError

    try:
        main()
    except EcaugError as exc:  # a bad --config or state folder: one line, exit 2 (as the CLI)
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
