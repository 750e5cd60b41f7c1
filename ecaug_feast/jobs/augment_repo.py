"""``ecaug augment --repo PATH --entity NAME --view NAME [--service NAME]``: expand one feature view
of a shop's own Feast repo (the plugin use, docs/guide/plugin.md).

1. ``feast apply`` of the shop's repo (what its stock CLI does: registers the twins its repo files
   declare with ``synthetic_twins``; writes the twins' empty placeholders);
2. before any fitting (:func:`preflight`, seconds): the names given are checked against the
   registry (view, its entity, its twin, the service), the join key's type (Int64, Int32 or
   String, :mod:`ecaug_feast.jobs.repo_keys`) and the feature types (scalars and lists; Map,
   Struct... refused); the real rows are read by the shop's offline store and their keys checked
   to be of the declared type and outside the reserved synthetic key space;
3. the scalar features fit ecaug's tabular GAN; the generated rows are gated; list features are
   drawn from the real lists' marginals (:func:`~ecaug_feast.jobs.repo_keys.sample_lists`); the
   run is written atomically with synthetic entity keys;
4. gate passed: the run becomes active and only the twin view is materialized
   (:mod:`ecaug_feast.jobs.repo_runs`). The shop's real keys in the online store are never
   written. Gate failed: the run stays on disk, inactive.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd
from feast import FeatureView

from ecaug_feast import feast_io, plugin, synth_store
from ecaug_feast.errors import DataValidationError, EcaugError
from ecaug_feast.jobs.repo_keys import KeySpace, check_features, sample_lists
from ecaug_feast.jobs.repo_runs import publish_run, remove_twin_keys
from ecaug_feast.plugin import arrow_schema, read_view_rows, runs_root_of, source_path, write_table
from ecaug_feast.quality.gates import GateConfig, evaluate
from ecaug_feast.synth.gan import GENERATOR_VERSION, ConditionalGAN, GANConfig

if TYPE_CHECKING:
    from feast import FeatureStore

__all__ = ["augment_repo", "preflight", "augment_view", "publish_twin", "remove_twin_keys", "AugmentSettings"]


@dataclass
class Checked:
    """What :func:`preflight` found: the real view, its twin, the key space, the feature kinds, the real rows."""

    view: FeatureView
    twin: FeatureView
    keys: KeySpace
    scalars: list[str]
    lists: list[str]
    rows: pd.DataFrame


def preflight(store: "FeatureStore", entity: str, view: str, service: str | None) -> Checked:
    """Everything that can be wrong with the request or the repo, found before any fitting:
    names, the key type and reserved space, feature types, the source. One line each."""
    repo = store.config.repo_path
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
    space = KeySpace.of(real, twin)
    scalars, lists = check_features(real)
    path = getattr(real.batch_source, "path", None)
    if path and "://" not in path and not plugin.source_path(real, repo).exists():
        raise EcaugError(f"view {view!r}: its source {plugin.source_path(real, repo)} does not exist")
    try:
        rows = read_view_rows(store, real)
    except EcaugError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the shop's offline store raises: one line
        raise EcaugError(f"view {view!r}: its source cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    space.check_real(view, rows[space.column])
    return Checked(real, twin, space, scalars, lists, rows)


def augment_repo(repo: str | Path, entity: str, view: str, service: str | None = None, rows: int = 1000,
                 seed: int = 0, steps: int | None = None, max_c2st: float | None = None,
                 publish: bool = True) -> dict[str, Any]:
    """Augment ``view`` of the Feast repo at ``repo``; returns the JSON summary of ``--json``."""
    repo = Path(repo).expanduser().resolve()
    if not (repo / "feature_store.yaml").exists():
        raise EcaugError(f"{repo}: not a Feast repo (no feature_store.yaml)")
    applied = feast_io.apply(repo)
    store = feast_io.get_store(repo)
    checked = preflight(store, entity, view, service)
    twin = checked.twin
    settings = AugmentSettings(rows=rows, seed=seed, gan={"max_steps": steps} if steps else {},
                               gates={"max_c2st_auc": max_c2st} if max_c2st is not None else {})
    run, res = augment_view(store, checked, settings,
                            lineage={"entity": entity, "service": service, "project": store.config.project})
    m = res.metrics
    out: dict[str, Any] = {
        "repo": str(repo), "project": applied["project"], "entity": entity, "view": view, "twin": twin.name,
        "service": service, "run_id": run.run_id, "run_dir": str(run.path), "real_rows": run.manifest["lineage"]["real_rows"],
        "key_space": checked.keys.describe(), "user_id_range": run.manifest["user_id_range"], "activated": False,
        **{k: m[k] for k in ("rows_generated", "rows_accepted", "gate", "gate_reasons", "c2st_auc", "column_shapes",
                             "pair_trends", "privacy_dropped", "fit_seconds", "list_features")},
    }
    if res.gate_passed and m["rows_accepted"] and publish:
        pub = publish_twin(store, twin, run)
        out.update(activated=True, previous_run=pub["previous"], removed_keys=pub["removed_keys"],
                   materialized=pub["materialized"])
    if service is not None:  # what a training job asks for: the service's features of the view
        svc = store.get_feature_service(service)
        out["training_features"] = [f"{view}:{f.name}" for p in svc.feature_view_projections if p.name == view for f in p.features]
    return out


# ------------------------------------------------------------------------------------ the engine
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


@dataclass
class TwinRun:
    run_id: str
    path: Path
    manifest: dict[str, Any]


def _add_lists(acc: pd.DataFrame, checked: Checked, seed: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The list features of the accepted rows (drawn from the real lists' marginals; rows whose
    draw stays a copy of a real list are dropped)."""
    info: dict[str, Any] = {}
    keep = np.ones(len(acc), dtype=bool)
    rng = np.random.default_rng(seed + 2)
    for col in checked.lists:
        acc[col], kept, info[col] = sample_lists(checked.rows[col], len(acc), rng)
        keep &= kept
    return acc[keep].reset_index(drop=True), info


def augment_view(store: "FeatureStore", checked: Checked, settings: AugmentSettings,
                 lineage: dict[str, Any] | None = None) -> tuple[TwinRun, TableAugment]:
    """Augment the real rows of the checked view, write a run for its twin (not activated).

    The run holds ``<twin>.parquet`` (synthetic keys, timestamps drawn from the real ones,
    features, lineage) and the files of the other twins of the active run (hard links), so
    activating it changes this twin only."""
    view, twin, real, space = checked.view, checked.twin, checked.rows, checked.keys
    repo = store.config.repo_path
    ts_col = view.batch_source.timestamp_field
    root = runs_root_of(twin, repo)
    run_id, seq = synth_store.new_run_id(root)  # same numbering and id ranges as ecaug's own runs
    try:
        res = augment_table(real[checked.scalars], settings, source=f"{repo} view {view.name}")
        acc, lists_info = _add_lists(res.accepted.copy(), checked, settings.seed)
        res.metrics["list_features"] = lists_info
        res.metrics["rows_accepted"] = int(len(acc))
        rng = np.random.default_rng(settings.seed)
        acc.insert(0, space.column, space.keys(seq, run_id, len(acc)))
        twin_ts = twin.batch_source.timestamp_field
        acc[twin_ts] = pd.to_datetime(rng.choice(pd.to_datetime(real[ts_col], utc=True).to_numpy(), len(acc)), utc=True)
        acc["is_synthetic"], acc["run_id"], acc["generator_version"] = True, run_id, GENERATOR_VERSION
        prev = synth_store.active_run(root)
        manifest = {"run_id": run_id, "seq": seq, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "gate": res.metrics["gate"], "gate_reasons": res.metrics["gate_reasons"], "metrics": res.metrics,
                    "config": {"settings": settings.__dict__, "twin": twin.name, "key_space": space.describe()},
                    "lineage": {"repo": str(repo), "view": view.name, "twin": twin.name, "real_rows": int(len(real)),
                                "parent_run": prev, "generator_version": GENERATOR_VERSION, **(lineage or {})},
                    "files": {twin.name: f"{twin.name}.parquet"},
                    "user_id_range": [acc[space.column].iloc[0], acc[space.column].iloc[-1]] if len(acc) else [None, None]}
        run = _write_run(root, run_id, {source_path(twin, repo).name: (acc, arrow_schema(twin))}, manifest, prev)
    except BaseException:
        synth_store.release_run_id(run_id, root)
        raise
    return run, res


def _write_run(root: Path, run_id: str, files: dict[str, tuple[pd.DataFrame, Any]], manifest: dict[str, Any],
               carry_from: str | None, extras: Callable[[Path], None] | None = None) -> TwinRun:
    """Write ``<root>/<run_id>/`` atomically: the reserved temp folder, then one rename.
    ``extras(tmp)`` adds what else the run keeps (a generator's weights) before the rename."""
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
        if extras is not None:
            extras(tmp)
        synth_store.commit_run_dir(tmp, final, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TwinRun(run_id, final, manifest)


def publish_twin(store: "FeatureStore", twin: FeatureView, run: TwinRun) -> dict[str, Any]:
    """Activate a gate-passing run and bring the online store in line: the previous run's rows of
    ``twin`` deleted (synthetic keys only), this run's materialized; the other twins' files are
    the previous run's (hard links), so their online rows stay. Under the runs lock."""
    return publish_run(store, runs_root_of(twin, store.config.repo_path), run.run_id, run.manifest)
