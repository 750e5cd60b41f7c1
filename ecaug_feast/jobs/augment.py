"""``ecaug augment`` end to end: real examples from Feast -> augment -> run dir -> Feast views.

1. entity rows = the training interactions source (``train_interactions.parquet``), subsampled to
   what the GAN learns from; their ``user_features`` via Feast ``get_historical_features``
   (point-in-time, the same path the recommender trains from);
2. ``augment_frame`` (GAN, labeler, gates);
3. the run directory (parquet, manifest with lineage, report + plots, GAN weights) written to a
   temp dir and renamed;
4. gate passed: under the runs lock, ``runs/active`` points at the run, ``feast apply`` registers
   the synthetic views, the previous run's synthetic keys leave Redis and only the synthetic views
   are materialized. Gate failed: the run stays on disk for inspection, nothing is
   activated or materialized.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
import pandas as pd

from ecaug_feast.errors import DataValidationError, EcaugError
from ecaug_feast.jobs import repair
from ecaug_feast.jobs.workspace import Workspace
from ecaug_feast.schema import USER_FEATURE_COLUMNS

log = logging.getLogger(__name__)
USER_FEATURES = USER_FEATURE_COLUMNS


def load_training_examples(ws: Workspace, max_rows: int | None = None, seed: int = 0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Real training examples through Feast (entity rows from the training interactions source)."""
    from ecaug_feast import feast_io
    from ecaug_feast.features.build import read_feature_meta

    meta = read_feature_meta() or {}
    src = ws.feast_dir / "train_interactions.parquet"
    if not src.exists():
        raise DataValidationError(src, None, "missing: run `ecaug ingest` first")
    ent = pd.read_parquet(src, columns=["user_id", "item_id", "event_timestamp", "label"])
    if len(ent) == 0:
        raise DataValidationError(src, None, "no training interactions")
    if max_rows and len(ent) > max_rows:
        rng = np.random.default_rng(seed)
        ent = ent.iloc[np.sort(rng.choice(len(ent), max_rows, replace=False))].reset_index(drop=True)
    feats = [f"user_features:{c}" for c in USER_FEATURES]
    df = feast_io.historical_features(ent, features=feats, store=ws.store())
    return df, source_lineage(src, ent, meta)


def source_lineage(src: Any, ent: pd.DataFrame, meta: dict[str, Any]) -> dict[str, Any]:
    """Lineage of a run's input: the source file, the dataset and the fit window of ``ent`` (the
    training interaction rows the generator learned from), so `ecaug drift` can compare later
    data with exactly this window."""
    ts = pd.to_datetime(ent["event_timestamp"], utc=True)
    fit_window = {"start": ts.min().isoformat(), "end": ts.max().isoformat(), "rows": int(len(ent)),
                  "positive_rows": int((ent["label"] == 1).sum()), "feature_version": meta.get("version")}
    return {"dataset": meta.get("dataset"), "source": str(src), "feature_meta_written_at": meta.get("written_at"),
            "entity_rows": int(len(ent)), "fit_window": fit_window}


def check_dataset(dataset: str | None, lineage: dict[str, Any]) -> None:
    """``--dataset`` must name what the Feast sources hold."""
    if dataset and lineage.get("dataset") and dataset != lineage["dataset"]:
        raise EcaugError(f"--dataset {dataset}: the Feast sources hold {lineage['dataset']!r}; run `ecaug ingest --dataset {dataset}` first")


def activate_and_publish(ws: Workspace, run_id: str) -> dict[str, Any]:
    """Activate a gate-passing run and bring the online store in line, as one exclusive step;
    returns ``activated`` and ``materialized`` (entities written per synthetic view)."""
    from ecaug_feast import synth_store

    with ws.online() as url, synth_store.runs_lock():  # activation + online store as one exclusive step
        repair.redo_pending(ws, skip=("publish",))  # an interrupted step first; this publish redoes one
        synth_store.activate(run_id)
        pub = synth_store.publish(run_id, ws.feast_repo(url))
    return {"activated": True,
            "materialized": {k: v.get("entities_written") for k, v in pub.get("materialize", {}).get("views", {}).items()}}


def augment_run(ws: Workspace, rows: int = 10_000, segment: str | None = None, seed: int = 0, dataset: str | None = None,
                config: Any = None, progress: Callable[[dict[str, float]], None] | None = None,
                publish: bool = True, lineage_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``ecaug augment``; returns the summary printed with ``--json``. ``lineage_extra`` is
    added to the manifest's lineage (``ecaug refresh``: ``parent_run_id``, the appended versions).
    Redis is started (or attached) only to publish a run that passed its gate."""
    from ecaug_feast import synth_store
    from ecaug_feast.quality.report import write_report
    from ecaug_feast.synth.pipeline import AugmentConfig, augment_frame

    cfg = config or AugmentConfig()
    cfg.segment = segment
    examples, lineage = load_training_examples(ws, cfg.max_fit_rows + cfg.holdout_rows, seed)
    check_dataset(dataset, lineage)
    run_id, seq = synth_store.new_run_id()  # under the runs lock: distinct number and id range
    cfg.run_id, cfg.user_id_start = run_id, synth_store.user_id_start(seq)
    try:
        res = augment_frame(examples, rows, seed=seed, config=cfg, progress=progress, source=lineage.get("source"))
    except BaseException:
        synth_store.release_run_id(run_id)
        raise
    m = res.metrics
    prev = synth_store.active_run()
    manifest = {
        "gate": m["gate"], "gate_reasons": m["gate_reasons"], "config": cfg.to_json(), "metrics": m,
        "lineage": {**lineage, "parent_run": prev, "generator_version": res.accepted["generator_version"].iloc[0] if len(res.accepted) else None,
                    "seed": seed, "segment": segment, "warm_started": bool(getattr(res.gan, "warm_started", False)),
                    **(lineage_extra or {})},
        "labeler_name": "ecaug-cluster-hgb/1",
    }
    cols = list(res.real_flat.columns.drop(["user_tier", "item_tier"]))
    discrete = [c for c in cols if c.startswith(("recent_item_", "top_attr_")) or c in ("item_id", "label")]

    def extras(tmp: Any) -> None:
        res.gan.save(tmp / "model")
        acc = res.synth_flat[res.synth_flat["keep"]]
        write_report(tmp, run_id, res.real_flat[cols], acc[cols], discrete, m, res.gan.history)

    run = synth_store.write_run(run_id, seq, res.accepted, manifest, extras)
    out: dict[str, Any] = {"run_id": run_id, "run_dir": str(run.path), **{k: m[k] for k in (
        "rows_generated", "rows_accepted", "gate", "gate_reasons", "c2st_auc", "column_shapes", "pair_trends",
        "privacy_dropped", "label_agreement", "fit_seconds", "sample_seconds", "segment")}, "activated": False}
    if res.gate_passed and len(res.accepted) and publish:
        out.update(activate_and_publish(ws, run_id))
    return out


def rollback(ws: Workspace, to: str | None = None) -> dict[str, Any]:
    """``ecaug runs rollback``: point the synthetic views at ``to`` (default: the previous passing
    run, or none) and bring the online store in line, as one exclusive step."""
    from ecaug_feast import synth_store

    with ws.online() as url, synth_store.runs_lock():
        repair.redo_pending(ws, skip=("publish",))
        before = synth_store.active_run()
        now = synth_store.rollback(to)
        pub = synth_store.publish(now, ws.feast_repo(url))
    return {"previous": before, "active": now, "removed_keys": pub.get("removed_keys"),
            "materialized": {k: v.get("entities_written") for k, v in pub.get("materialize", {}).get("views", {}).items()}}
