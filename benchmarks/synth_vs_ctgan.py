"""Side-by-side tabular synthesizers on the project's Beauty interaction table.

Methods (one run, same train/holdout split, same metrics):
  ecaug            ecaug_feast.synth.gan.ConditionalGAN (defaults)
  ctgan            CTGAN 0.12.1 (benchmark-only extra). Its default is 300 epochs; we train
                   ``--ctgan-epochs`` epochs, report seconds per epoch and the extrapolated 300-epoch
                   fit time, and score the model we trained (marked ``epochs`` in the output)
  ctgan_equal_time CTGAN trained for the wall time our GAN took (whole epochs, at least one)
  gaussian_copula  SDV 2.0 GaussianCopulaSynthesizer
  smote            ecaug_feast.synth.smote.SmoteSynthesizer (interpolation baseline)
  real             a disjoint real sample (the ceiling the metrics can reach)

Table (9 columns, one row per training example = user state at event time + item + label):
  n_interactions, days_since_last, attr_diversity, mean_item_popularity, top_attr_1 (user's top
  attribute), item_popularity (item's count in the training split), item_brand (the item's first
  attribute), n_item_attributes, label.

Metrics: column shapes and pair trends (SDMetrics QualityReport, as the issue's figures), C2ST AUC
(5-fold gradient boosting, ecaug_feast.quality.metrics.c2st_auc), share of rows the privacy gate
drops (exact copies + distance to closest record below the 5th percentile of holdout distances),
fit seconds, sampling rows/s. Torch and OpenMP run with one thread for every method (on this
shared 2-core machine one thread was 5x faster than two for the GAN step).

    python benchmarks/synth_vs_ctgan.py [--quick] [--json] [--rows 20000]
Last stdout line with --json: one JSON object, a key per method.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

DISCRETE = ["top_attr_1", "item_brand", "label"]


def build_table(seed: int) -> pd.DataFrame:
    """Ingest the bundled Beauty data into a temp state dir and build the example table."""
    os.environ.setdefault("ECAUG_HOME", tempfile.mkdtemp(prefix="ecaug-bench-"))
    from ecaug_feast.datasets import load_dataset
    from ecaug_feast.datasets.store import load_processed
    from ecaug_feast.features.ingest import ingest_dataset
    from ecaug_feast.synth.pipeline import examples_from_parquet

    ds = load_dataset("beauty")
    ingest_dataset(ds, seed=seed)
    ex = examples_from_parquet()
    proc = load_processed(ds.name)
    items = proc.items.set_index("item_id")["attributes"]
    pos = ex[ex["label"] == 1]["item_id"].value_counts()
    top1 = ex["top_attributes"].map(lambda a: int(a[0]) if a is not None and len(a) else 0)
    return pd.DataFrame({
        "n_interactions": ex["n_interactions"].astype(np.int64),
        "days_since_last": ex["days_since_last"].astype(float),
        "attr_diversity": ex["attr_diversity"].astype(float),
        "mean_item_popularity": ex["mean_item_popularity"].astype(float),
        "top_attr_1": top1.astype(np.int64),
        "item_popularity": ex["item_id"].map(pos).fillna(0).astype(np.int64),
        "item_brand": ex["item_id"].map(items).map(lambda a: int(a[0]) if a is not None and len(a) else 0).astype(np.int64),
        "n_item_attributes": ex["item_id"].map(items).map(lambda a: len(a) if a is not None else 0).astype(np.int64),
        "label": ex["label"].astype(np.int64),
    })


def sdm_quality(real: pd.DataFrame, synth: pd.DataFrame) -> tuple[float, float]:
    from sdmetrics.reports.single_table import QualityReport

    meta = {"columns": {c: {"sdtype": "categorical" if c in DISCRETE else "numerical"} for c in real.columns}}
    rep = QualityReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep.generate(real, synth[real.columns], meta, verbose=False)
    props = rep.get_properties().set_index("Property")["Score"]
    return float(props["Column Shapes"]), float(props["Column Pair Trends"])


def score(name: str, train: pd.DataFrame, hold: pd.DataFrame, synth: pd.DataFrame, fit_s: float, rows_per_s: float,
          extra: dict[str, Any] | None = None) -> dict[str, Any]:
    from ecaug_feast.quality import metrics as M
    from ecaug_feast.quality.gates import GateConfig, row_filters
    from ecaug_feast.threads import single_thread

    synth = synth[train.columns].reset_index(drop=True)
    for c in train.columns:  # common dtypes for the metric libraries
        synth[c] = synth[c].astype(train[c].dtype) if not synth[c].isna().any() else synth[c]
    shapes, trends = sdm_quality(train, synth)
    with single_thread():
        auc = M.c2st_auc(train, synth, DISCRETE, max_rows=5000, seed=0)
    keep, info = row_filters(train, hold, synth, DISCRETE, GateConfig())
    out = {"fit_seconds": round(fit_s, 2), "sample_rows_per_s": round(rows_per_s), "column_shapes": round(shapes, 4),
           "pair_trends": round(trends, 4), "c2st_auc": round(auc, 4), "privacy_dropped_share": round(info["privacy_dropped_share"], 4),
           "exact_copies": info["exact_copies"]}
    out.update(extra or {})
    print(f"{name:18s} " + "  ".join(f"{k}={v}" for k, v in out.items()), file=sys.stderr, flush=True)
    return out


def timed_sample(model: Any, n: int, **kw: Any) -> tuple[pd.DataFrame, float]:
    t0 = time.perf_counter()
    s = model.sample(n, **kw)
    return s, n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="5k rows, short training: a few minutes")
    ap.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    ap.add_argument("--rows", type=int, default=None, help="training rows (default 20000; quick 5000)")
    ap.add_argument("--ctgan-epochs", type=int, default=None, help="CTGAN epochs actually trained (default 10; quick 1)")
    ap.add_argument("--gan-steps", type=int, default=None, help="ecaug GAN max steps (default: GANConfig default; quick 300)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n_train = args.rows or (5000 if args.quick else 20000)
    ct_epochs = args.ctgan_epochs or (1 if args.quick else 10)

    import torch

    torch.set_num_threads(1)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    table = build_table(args.seed)
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(table))
    if len(table) < n_train + 2000:
        raise SystemExit(f"table has {len(table)} rows; need {n_train + 2000}")
    train = table.iloc[perm[:n_train]].reset_index(drop=True)
    hold = table.iloc[perm[n_train:n_train + min(n_train, 5000)]].reset_index(drop=True)
    n_sample = n_train
    print(f"table: {len(table)} rows x {table.shape[1]} columns; train {len(train)}, holdout {len(hold)}", file=sys.stderr)
    res: dict[str, Any] = {"table": {"rows_total": int(len(table)), "train_rows": n_train, "columns": list(table.columns),
                                     "discrete": DISCRETE, "torch_threads": 1}}

    # real ceiling: another real sample of the same size (reference frequencies = train)
    res["real"] = score("real", train, hold, hold, 0.0, 0.0)

    from ecaug_feast.synth.gan import ConditionalGAN, GANConfig

    gcfg = GANConfig(seed=args.seed, **({"max_steps": args.gan_steps} if args.gan_steps else ({"max_steps": 300} if args.quick else {})))
    gan = ConditionalGAN(gcfg)
    t0 = time.perf_counter()
    gan.fit(train, DISCRETE)
    gan_fit = time.perf_counter() - t0
    s, rps = timed_sample(gan, n_sample, seed=1)
    res["ecaug"] = score("ecaug", train, hold, s, gan_fit, rps, {"steps": gan.history[-1]["step"] if gan.history else 0, "best_step": gan.best_step})

    from ecaug_feast.synth.smote import SmoteSynthesizer

    t0 = time.perf_counter()
    sm = SmoteSynthesizer(seed=args.seed).fit(train, DISCRETE)
    sm_fit = time.perf_counter() - t0
    s, rps = timed_sample(sm, n_sample)
    res["smote"] = score("smote", train, hold, s, sm_fit, rps)

    from sdv.metadata import Metadata
    from sdv.single_table import GaussianCopulaSynthesizer

    meta = Metadata.load_from_dict({"tables": {"t": {"columns": {c: {"sdtype": "categorical" if c in DISCRETE else "numerical"} for c in train.columns}}}})
    t0 = time.perf_counter()
    gc = GaussianCopulaSynthesizer(meta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.fit({"t": train})  # SDV 2.x takes {table name: frame}
    gc_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    s = gc.sample(num_rows=n_sample)
    s = s["t"] if isinstance(s, dict) else s
    rps = n_sample / (time.perf_counter() - t0)
    res["gaussian_copula"] = score("gaussian_copula", train, hold, s, gc_fit, rps)

    from ctgan import CTGAN

    def fit_ctgan(epochs: int) -> tuple[Any, float]:
        m = CTGAN(epochs=epochs, verbose=False, cuda=False)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(train, DISCRETE)
        return m, time.perf_counter() - t0

    # CTGAN fits its Gaussian mixtures once per fit: time a 1-epoch fit to split setup from epochs.
    m1, t1 = fit_ctgan(1)
    m, tn = (m1, t1) if ct_epochs == 1 else fit_ctgan(ct_epochs)
    per_epoch = (tn - t1) / (ct_epochs - 1) if ct_epochs > 1 else t1
    setup = max(t1 - per_epoch, 0.0) if ct_epochs > 1 else 0.0
    s, rps = timed_sample(m, n_sample)
    res["ctgan"] = score("ctgan", train, hold, s, tn, rps, {
        "epochs": ct_epochs, "seconds_per_epoch": round(per_epoch, 3), "setup_seconds": round(setup, 2),
        "fit_seconds_300_epochs_extrapolated": round(setup + 300 * per_epoch, 1),
        "note": f"scored after {ct_epochs} epochs (CTGAN default is 300); fit_seconds is the measured {ct_epochs}-epoch fit"})
    eq_epochs = max(1, int((gan_fit - setup) // max(per_epoch, 1e-9)))
    if eq_epochs in (1, ct_epochs):
        me, te = (m1, t1) if eq_epochs == 1 else (m, tn)
    else:
        me, te = fit_ctgan(eq_epochs)
    s, rps = timed_sample(me, n_sample)
    res["ctgan_equal_time"] = score("ctgan_equal_time", train, hold, s, te, rps, {"epochs": eq_epochs})

    e, c = res["ecaug"], res["ctgan"]
    res["summary"] = {
        "fit_speedup_vs_ctgan_300_epochs": round(c["fit_seconds_300_epochs_extrapolated"] / max(e["fit_seconds"], 1e-9), 1),
        "sample_speedup_vs_ctgan": round(e["sample_rows_per_s"] / max(c["sample_rows_per_s"], 1), 1),
    }
    if args.json:
        print(json.dumps(res, default=str))
    else:
        print(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
