"""``ecaug augment --repo PATH --entity NAME --view NAME [--service NAME]``: expand one feature view
of a shop's own Feast repo (the plugin use, docs/guide/plugin.md).

1. ``feast apply`` of the shop's repo (what its stock CLI does: registers the twins its repo files
   declare with ``synthetic_twins``; writes the twins' empty placeholders);
2. the names given are checked against the registry (view, its entity, its twin, the service);
3. the real rows of the view, read by the shop's offline store, fit ecaug's tabular GAN; the
   generated rows are gated; the run is written atomically with synthetic entity keys;
4. gate passed: the run becomes active and only the twin view is materialized. The shop's real
   keys in the online store are never written. Gate failed: the run stays on disk, inactive.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from feast import FeatureView
from feast.types import Int64

from ecaug_feast import feast_io, plugin, synth_store
from ecaug_feast.atomic import swap_symlink
from ecaug_feast.errors import DataValidationError, EcaugError
from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE
from ecaug_feast.plugin import arrow_schema, read_view_rows, runs_root_of, source_path, write_table
from ecaug_feast.quality.gates import GateConfig, evaluate
from ecaug_feast.runs_link import ACTIVE
from ecaug_feast.synth.gan import GENERATOR_VERSION, ConditionalGAN, GANConfig

if TYPE_CHECKING:
    from feast import FeatureStore


def augment_repo(repo: str | Path, entity: str, view: str, service: str | None = None, rows: int = 1000,
                 seed: int = 0, steps: int | None = None, max_c2st: float | None = None,
                 publish: bool = True) -> dict[str, Any]:
    """Augment ``view`` of the Feast repo at ``repo``; returns the JSON summary of ``--json``."""
    repo = Path(repo).expanduser().resolve()
    if not (repo / "feature_store.yaml").exists():
        raise EcaugError(f"{repo}: not a Feast repo (no feature_store.yaml)")
    applied = feast_io.apply(repo)
    store = feast_io.get_store(repo)
    registered = {v.name: v for v in store.list_feature_views()}
    if view not in registered:
        raise EcaugError(f"--view {view}: no such feature view in {repo} (registered: {', '.join(sorted(registered))})")
    real = registered[view]
    if plugin.is_run_sourced(real):
        raise EcaugError(f"--view {view}: a synthetic view; name the real view it is the twin of")
    if entity not in real.entities:
        raise EcaugError(f"--entity {entity}: view {view} has entities {real.entities}")
    twin = plugin.find_twin(store, view)
    if service is not None:
        names = {s.name: s for s in store.list_feature_services()}
        if service not in names:
            raise EcaugError(f"--service {service}: no such feature service in {repo} (registered: {', '.join(sorted(names)) or 'none'})")
        if view not in {p.name for p in names[service].feature_view_projections}:
            raise EcaugError(f"--service {service}: does not serve view {view}")
    settings = AugmentSettings(rows=rows, seed=seed, gan={"max_steps": steps} if steps else {},
                                      gates={"max_c2st_auc": max_c2st} if max_c2st is not None else {})
    run, res = augment_view(store, real, twin, settings,
                                   lineage={"entity": entity, "service": service, "project": store.config.project})
    m = res.metrics
    out: dict[str, Any] = {
        "repo": str(repo), "project": applied["project"], "entity": entity, "view": view, "twin": twin.name,
        "service": service, "run_id": run.run_id, "run_dir": str(run.path), "real_rows": run.manifest["lineage"]["real_rows"],
        "user_id_range": run.manifest["user_id_range"], "activated": False,
        **{k: m[k] for k in ("rows_generated", "rows_accepted", "gate", "gate_reasons", "c2st_auc", "column_shapes",
                             "pair_trends", "privacy_dropped", "fit_seconds")},
    }
    if res.gate_passed and m["rows_accepted"] and publish:
        pub = publish_twin(store, twin, run)
        out.update(activated=True, previous_run=pub["previous"], removed_keys=pub["removed_keys"],
                   materialized=pub["materialized"])
    if service is not None:  # what a training job asks for: the service's features of the view
        svc = store.get_feature_service(service)
        out["training_features"] = [f"{view}:{f.name}" for p in svc.feature_view_projections if p.name == view for f in p.features]
    return out


# ----------------------------------------------------- the engine (was in plugin.py: declarations only there)
@dataclass
class TableAugment:
    """What :func:`augment_table` produced: accepted synthetic rows (feature columns only)."""

    accepted: pd.DataFrame
    metrics: dict[str, Any]
    gate_passed: bool
    gan: Any


@dataclass
class AugmentSettings:
    """The knobs of a generic view augmentation (saved in the run manifest)."""

    rows: int = 1000
    seed: int = 0
    max_fit_rows: int = 30_000
    holdout_rows: int = 2_000
    oversample: float = 1.5
    max_onehot: int = 32   # numeric columns with at most this many distinct values are categorical
    gan: dict[str, Any] = field(default_factory=dict)    # GANConfig overrides
    gates: dict[str, Any] = field(default_factory=dict)  # GateConfig overrides


def discrete_columns(df: pd.DataFrame, max_distinct: int = 32) -> list[str]:
    """Columns the GAN treats as categories: bool, strings/objects, integers with few values."""
    out = []
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
            out.append(c)
        elif pd.api.types.is_integer_dtype(s) and s.nunique(dropna=True) <= max_distinct:
            out.append(c)
    return out


def augment_table(real: pd.DataFrame, settings: AugmentSettings, source: str | None = None) -> TableAugment:
    """Fit the tabular GAN on ``real`` (feature columns only), sample, gate. The holdout rows the
    GAN never sees are the privacy reference (as in :func:`ecaug_feast.synth.pipeline.augment_frame`)."""
    if settings.rows <= 0:
        raise DataValidationError(source, None, f"rows must be positive, got {settings.rows}")
    if len(real) < 50:
        raise DataValidationError(source, None, f"only {len(real)} real rows; the generator needs at least 50")
    t0 = time.perf_counter()
    rng = np.random.default_rng(settings.seed)
    df = real.reset_index(drop=True)
    cap = settings.max_fit_rows + settings.holdout_rows
    if len(df) > cap:
        df = df.iloc[np.sort(rng.choice(len(df), cap, replace=False))].reset_index(drop=True)
    discrete = discrete_columns(df, settings.max_onehot)
    perm = rng.permutation(len(df))
    n_hold = min(settings.holdout_rows, len(df) // 5)
    hold, fit = df.iloc[perm[:n_hold]].reset_index(drop=True), df.iloc[perm[n_hold:]].reset_index(drop=True)
    gan = ConditionalGAN(GANConfig(**{"seed": settings.seed, **settings.gan})).fit(fit, discrete, source=source)
    gen = gan.sample(int(math.ceil(settings.rows * settings.oversample)), seed=settings.seed + 1)
    gate = evaluate(fit, hold, gen, discrete, GateConfig(**{"seed": settings.seed, **settings.gates}))
    keep = np.flatnonzero(gate.keep)[: settings.rows]
    acc = gen.iloc[keep][list(df.columns)].reset_index(drop=True)
    m = gate.metrics
    metrics = {"rows_generated": int(len(gen)), "rows_accepted": int(len(acc)), "gate": gate.gate,
               "gate_reasons": gate.reasons, "c2st_auc": m.get("c2st_auc"), "column_shapes": m.get("column_shapes"),
               "pair_trends": m.get("pair_trends"), "privacy_dropped": m.get("privacy_dropped"),
               "outliers": m.get("outliers"), "fit_rows": int(len(fit)), "discrete_columns": discrete,
               "gan_best_step": gan.best_step, "fit_seconds": round(gan.fit_seconds, 2),
               "total_seconds": round(time.perf_counter() - t0, 2)}
    return TableAugment(acc, metrics, gate.passed, gan)


def synthetic_keys(seq: int, n: int) -> np.ndarray:
    """``n`` entity keys of run number ``seq`` in ecaug's synthetic key space (disjoint per run)."""
    start = synth_store.user_id_start(seq)
    return np.arange(start, start + n, dtype=np.int64)


def check_real_keys(view: FeatureView, real: pd.DataFrame) -> str:
    """The view's single int64 join key, checked to lie below the synthetic key space."""
    keys = [c for c in view.entity_columns]
    if len(keys) != 1:
        raise EcaugError(f"view {view.name!r} has {len(keys)} join keys; the plugin augments views of one entity")
    key = keys[0]
    if key.dtype != Int64:
        raise EcaugError(f"view {view.name!r}, join key {key.name!r}: type {key.dtype}; synthetic keys are Int64 "
                         f"(ids >= {SYNTHETIC_USER_ID_BASE}), so the entity needs an Int64 key")
    if len(real) and int(real[key.name].max()) >= SYNTHETIC_USER_ID_BASE:
        raise EcaugError(f"view {view.name!r}, column {key.name!r}: real keys reach {SYNTHETIC_USER_ID_BASE} "
                         "(ecaug's synthetic key space); they would collide with synthetic keys")
    return key.name


@dataclass
class TwinRun:
    run_id: str
    path: Path
    manifest: dict[str, Any]


def augment_view(store: "FeatureStore", view: FeatureView, twin: FeatureView, settings: AugmentSettings,
                 lineage: dict[str, Any] | None = None) -> tuple[TwinRun, TableAugment]:
    """Read the real rows of ``view``, augment them, write a run for ``twin`` (not activated).

    The run holds ``<twin>.parquet`` (synthetic keys, timestamps drawn from the real ones,
    features, lineage) and the files of the other twins of the active run (hard links), so
    activating it changes this twin only."""
    repo = store.config.repo_path
    where = f"{repo} view {view.name}"
    real = read_view_rows(store, view)
    key = check_real_keys(view, real)
    ts_col = view.batch_source.timestamp_field
    feats = [f.name for f in view.features]
    root = runs_root_of(twin, repo)
    run_id, seq = synth_store.new_run_id(root)  # same numbering and id ranges as ecaug's own runs
    try:
        res = augment_table(real[feats], settings, source=where)
        acc = res.accepted.copy()
        rng = np.random.default_rng(settings.seed)
        acc.insert(0, key, synthetic_keys(seq, len(acc)))
        twin_ts = twin.batch_source.timestamp_field
        acc[twin_ts] = pd.to_datetime(rng.choice(pd.to_datetime(real[ts_col], utc=True).to_numpy(), len(acc)), utc=True)
        acc["is_synthetic"], acc["run_id"], acc["generator_version"] = True, run_id, GENERATOR_VERSION
        prev = synth_store.active_run(root)
        manifest = {"run_id": run_id, "seq": seq, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "gate": res.metrics["gate"], "gate_reasons": res.metrics["gate_reasons"], "metrics": res.metrics,
                    "config": {"settings": settings.__dict__, "twin": twin.name},
                    "lineage": {"repo": str(repo), "view": view.name, "twin": twin.name, "real_rows": int(len(real)),
                                "parent_run": prev, "generator_version": GENERATOR_VERSION, **(lineage or {})},
                    "files": {twin.name: f"{twin.name}.parquet"},
                    "user_id_range": [int(acc[key].min()), int(acc[key].max())] if len(acc) else [None, None]}
        run = _write_run(root, run_id, {source_path(twin, repo).name: (acc, arrow_schema(twin))}, manifest, prev)
    except BaseException:
        synth_store.release_run_id(run_id, root)
        raise
    return run, res


def _write_run(root: Path, run_id: str, files: dict[str, tuple[pd.DataFrame, Any]], manifest: dict[str, Any],
               carry_from: str | None) -> TwinRun:
    """Write ``<root>/<run_id>/`` atomically: the reserved temp folder, then one rename."""
    final, tmp = root / run_id, root / f".tmp-{run_id}"
    if final.exists():
        raise EcaugError(f"run {run_id} already exists")
    tmp.mkdir(parents=True, exist_ok=True)  # reserved by new_run_id
    try:
        for name, (df, schema) in files.items():
            write_table(df, schema, tmp / name)
        if carry_from:  # the other twins keep their data: link their files from the active run
            for p in (root / carry_from).glob("*.parquet"):
                if p.name not in files:
                    try:
                        os.link(p, tmp / p.name)
                    except OSError:
                        shutil.copy2(p, tmp / p.name)
                    manifest["files"][p.stem] = p.name
        synth_store.commit_run_dir(tmp, final, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TwinRun(run_id, final, manifest)


def publish_twin(store: "FeatureStore", twin: FeatureView, run: TwinRun) -> dict[str, Any]:
    """Activate a gate-passing run and bring the online store in line for ``twin`` only: delete
    the previous run's synthetic keys of this twin, materialize this run's rows of this twin.
    Under the runs lock. The shop's real keys are never written (the keys deleted and written
    all lie in the synthetic key space)."""
    if run.manifest.get("gate") != "pass":
        raise EcaugError(f"run {run.run_id} failed its quality gate ({'; '.join(run.manifest.get('gate_reasons', []))}); it cannot be activated")
    repo = store.config.repo_path
    root = runs_root_of(twin, repo)
    fname = source_path(twin, repo).name
    with synth_store.runs_lock(root):
        prev = synth_store.active_run(root)
        swap_symlink(root / ACTIVE, run.run_id)
        removed = 0
        if prev and prev != run.run_id and (root / prev / fname).exists():
            removed = remove_twin_keys(store, twin, _keys_of(root / prev / fname, twin))
        df = pd.read_parquet(root / run.run_id / fname, columns=[twin.batch_source.timestamp_field])
        out: dict[str, Any] = {"previous": prev, "active": run.run_id, "removed_keys": removed, "materialized": {}}
        if len(df):
            ts = pd.to_datetime(df.iloc[:, 0], utc=True)
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):  # Feast's progress banner: stdout is for --json
                store.materialize(start_date=(ts.min() - pd.Timedelta(seconds=1)).to_pydatetime(),
                                  end_date=(ts.max() + pd.Timedelta(seconds=1)).to_pydatetime(), feature_views=[twin.name])
            out["materialized"][twin.name] = int(len(_keys_of(root / run.run_id / fname, twin)))
    return out


def _keys_of(path: Path, view: FeatureView) -> np.ndarray:
    key = view.entity_columns[0].name
    return np.unique(pq.read_table(path, columns=[key]).column(key).to_numpy().astype(np.int64))


def remove_twin_keys(store: "FeatureStore", twin: FeatureView, ids: np.ndarray) -> int:
    """Remove ``twin``'s rows of synthetic ``ids`` from the online store (ids below the synthetic
    key space are skipped: a real key is never touched). Returns the number of keys changed."""
    return synth_store.delete_synthetic_keys(store, [twin], ids)
