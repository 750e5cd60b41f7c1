"""How the sequence generator's sampling settings move the realism gates, on one fitted generator.

    ECAUG_HOME=STATE python benchmarks/seq_realism.py --temperatures 1.0 0.9 0.8 0.7
    ECAUG_HOME=STATE python benchmarks/seq_realism.py --settings '{}' '{"gan": {"transition_mix": 0.08}}' \
        '{"gan": {"epsilon": 0}}' [--config FILE] [--threads 2]

``STATE`` is a state folder where ``ecaug ingest`` and ``ecaug apply`` ran (the histories are read
through Feast as ``ecaug augment --generator sequence`` reads them). The generator is fitted once
(``--config``: ``SeqAugmentConfig`` JSON as ``ecaug augment --config`` takes it); then, for each
setting, the rest of the pipeline runs on it as the job does (expand + synthetic users, labeler,
gates) and the features follow by the same builders. A setting is a JSON object of
``SeqAugmentConfig`` fields that act after the fit (``n_new``, ``expansions``, ...) with
``"gan"``: the generator's sampling fields (``temperature``, ``transition_mix``, ``epsilon``,
``attr_coherence``); without ``--settings``, every temperature. Prints one JSON line per setting
(history C2ST and its real-vs-real floor, feature-row C2ST, tail share, coverage, copies, accepted,
and what each detector reads one statistic at a time) and a last line with all of them. Nothing is
written to the state folder. (The settings that lost -- ``top_p``, ``popularity_bias``, the time
prior, discriminator rejection and its ``--probe`` -- were measured with this script as of commit
df6b276.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


SAMPLING = ("temperature", "transition_mix", "epsilon", "attr_coherence")  # generator fields that act after the fit


def _setting(text: str) -> dict:
    from ecaug_feast.errors import EcaugError

    try:
        st = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EcaugError(f"--settings {text!r}: not JSON ({exc})") from None
    if not isinstance(st, dict) or not isinstance(st.get("gan", {}), dict):
        raise EcaugError(f"--settings {text!r}: expected a JSON object (with \"gan\" an object)")
    bad = sorted(set(st.get("gan", {})) - set(SAMPLING))
    if bad:
        raise EcaugError(f"--settings {text!r}: gan field(s) {', '.join(bad)} act at the fit, not here (sampling: {', '.join(SAMPLING)})")
    return st


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.9, 0.8])
    ap.add_argument("--settings", nargs="+", default=None, help="JSON objects, one per setting (see above)")
    ap.add_argument("--config", type=Path, default=None, help="SeqAugmentConfig JSON (as ecaug augment --config)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    from ecaug_feast.noise import quiet_known_noise

    quiet_known_noise()  # known library noise only (Feast's imports re-enable DeprecationWarnings)
    import pandas as pd
    import torch

    from ecaug_feast import schema as S
    from ecaug_feast.jobs.augment_seq import load_training_histories, seq_config, seq_config_file
    from ecaug_feast.jobs.workspace import Workspace
    from ecaug_feast.synth.seq_gan import SequenceGAN
    from ecaug_feast.quality.metrics import column_aucs
    from ecaug_feast.synth.seq_pipeline import augment_histories, feature_c2st, feature_rows, matched_feature_rows

    torch.set_num_threads(a.threads)
    cfg = seq_config_file(a.config, seed=a.seed)
    settings = [_setting(x) for x in a.settings] if a.settings else [{"gan": {"temperature": t}} for t in a.temperatures]

    def run_config(st: dict, gan_cfg: dict):
        over = {k: v for k, v in st.items() if k != "gan"}
        return seq_config({**asdict(cfg), **over, "gan": {**gan_cfg, **st.get("gan", {})}}, seed=a.seed, source="--settings")

    for st in settings:  # an unknown field: one line now, not after the fit
        run_config(st, asdict(cfg.gan))
    ws = Workspace.from_env()
    th = load_training_histories(ws, cfg.gan.max_len)
    real_rows = pd.read_parquet(ws.feast_dir / "user_features.parquet", columns=[S.USER_ID, *S.USER_SCALAR_COLUMNS])
    t0 = time.time()
    gan = SequenceGAN(cfg.gan).fit(th.histories.values, th.histories.offsets)
    fit_s = round(time.time() - t0, 1)
    out = []
    fitted = {k: getattr(gan.cfg, k) for k in SAMPLING}
    for st in settings:
        for k, v in {**fitted, **st.get("gan", {})}.items():
            setattr(gan.cfg, k, v)
        run_cfg = run_config(st, asdict(gan.cfg))
        t1 = time.time()
        res = augment_histories(th.histories.values, th.histories.offsets, run_cfg, gan=gan, times=th.times, attributes=th.attributes)
        m = res.metrics
        fr = feature_rows(res.histories, res.end_ns, th.train, th.attributes, seed=a.seed)
        auc = feature_c2st(fr, real_rows, seed=a.seed)
        pair = matched_feature_rows(fr, real_rows, seed=a.seed)
        row = {"setting": st, "c2st_auc_sequences": m.get("c2st_auc_sequences"),
               "c2st_auc_sequences_real_vs_real": m.get("c2st_auc_sequences_real_vs_real"),
               "c2st_auc_features": round(float(auc), 4) if auc == auc else None,
               **{k: m.get(k) for k in ("tail_share", "real_tail_share",
                                        "catalogue_coverage", "exact_copy_share", "near_copy_share",
                                        "trigram_copy_share", "generated", "accepted")},
               "seconds": round(time.time() - t1, 1),
               # what each detector reads, one statistic / column at a time
               "sequences_by_statistic": m.get("c2st_sequences_by_statistic"),
               "features_by_column": column_aucs(*pair) if pair is not None else None}
        print(json.dumps(row), flush=True)
        out.append(row)
    print(json.dumps({"users": len(th.histories), "vocab": int(len(gan.vocab)), "fit_seconds": fit_s,
                      "mle_epochs": gan.report.get("mle_epochs"), "threads": a.threads, "load_1m": round(os.getloadavg()[0], 2),
                      "rows": out, "seed": a.seed}))


if __name__ == "__main__":
    from ecaug_feast.errors import EcaugError

    try:
        main()
    except EcaugError as exc:  # a bad --config or state folder: one line, exit 2 (as the CLI)
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
