"""ecaug as a Feast plugin for a shop's own feature repo (docs/guide/plugin.md).

In a repo file, next to the shop's real views (so the stock ``feast apply``, which deletes registry
objects no repo file declares, keeps them)::

    from ecaug_feast.plugin import synthetic_twins
    driver_stats_synth, = synthetic_twins([driver_stats], entities=[driver], runs_dir="data/ecaug_runs")

Each twin has the real view's entity and features plus the lineage fields ``is_synthetic``,
``run_id``, ``generator_version``, tags ``kind=synthetic`` and ``twin_of=<view>``, and a
``FileSource`` at ``<runs_dir>/active/<twin>.parquet``: the active synthetic run, laid out like
ecaug's own runs (:mod:`ecaug_feast.synth_store`: ``<run_id>/`` folders written to a temp folder
and renamed, an ``active`` link swapped atomically, ``_empty/`` placeholders, ``.seq``/``.lock``).

Nothing here writes a file at import. Feast 0.67's ``feast apply`` only warns about a missing
``FileSource`` path, and a twin declares its join key's type, so ``feast apply`` validates before
any run exists; the empty placeholder a stock ``feast materialize`` needs is written by
:func:`ensure_placeholders`, which ``ecaug apply`` / ``ecaug augment`` run (``feast_io.apply``).

:func:`augment_view` fits ecaug's tabular GAN (:mod:`ecaug_feast.synth.gan`) on the real rows of
one view read from the shop's offline store, gates them (:mod:`ecaug_feast.quality.gates`) and
writes a run whose entity keys lie in ecaug's synthetic key space (``ids.SYNTHETIC_USER_ID_BASE``
and up, a disjoint range per run number). :func:`publish_twin` activates it and materializes only
the twin view: the shop's real keys in the online store are never written.
:func:`training_rows` returns real plus synthetic training rows at a mix ratio, both read through
``get_historical_features``, for any training job.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import pandas as pd
from feast import Entity, FeatureView, Field, FileSource
from feast.repo_config import FeastConfigBaseModel
from feast.types import Int64

from ecaug_feast import schema
from ecaug_feast.errors import EcaugError

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

log = logging.getLogger(__name__)

ACTIVE = "active"          # the link the twins' sources read through (as in synth_store)
EMPTY = "_empty"           # the placeholder run: empty files with each twin's schema
RUN_SOURCE_TAG = "ecaug"   # FileSource tag marking a source read through <runs_dir>/active/
RUN_SOURCE_VALUE = "run-source"
TWIN_OF_TAG = "twin_of"
LINEAGE_FIELDS = schema.feast_fields(schema.LINEAGE_FEATURES)  # is_synthetic, run_id, generator_version
_FAR_FUTURE = datetime(2200, 1, 1, tzinfo=timezone.utc)  # end of "all rows" reads


class SynthTwinConfig(FeastConfigBaseModel):
    """How twins are named and where their runs live (a Feast-style config model, like
    ``RedisOnlineStoreConfig``). ``runs_dir``: relative paths are taken from the repo, as Feast
    takes every relative ``FileSource`` path."""

    runs_dir: str = "data/ecaug_runs"
    suffix: str = "_synth"
    timestamp_field: str = "event_timestamp"
    online: bool = True


def run_source(name: str, file: str, runs_dir: str | Path, timestamp_field: str = "event_timestamp",
               field_mapping: dict[str, str] | None = None, description: str = "", like: Any = None) -> Any:
    """A parquet source reading ``<runs_dir>/active/<file>`` (the active synthetic run), tagged so
    :func:`ensure_placeholders` writes an empty file with the view's schema before any run exists.
    Of the same kind as ``like`` (a real view's batch source): a ``SparkSource`` for a repo on
    Feast's Spark offline store, which accepts nothing else, else a ``FileSource``."""
    kw = dict(name=name, path=str(Path(runs_dir) / ACTIVE / file), timestamp_field=timestamp_field,
              field_mapping=field_mapping or {}, description=description, tags={RUN_SOURCE_TAG: RUN_SOURCE_VALUE})
    if type(like).__name__ == "SparkSource":  # by name: pyspark is imported only where it is used
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

        return SparkSource(file_format="parquet", **kw)
    return FileSource(**kw)


def synthetic_twins(views: Sequence[FeatureView], runs_dir: str | Path | None = None, *,
                    entities: Sequence[Entity] = (), config: SynthTwinConfig | None = None) -> list[FeatureView]:
    """The synthetic twin of each real view: same entities and features + lineage fields, source =
    the active run under ``runs_dir``. Call it in a repo file so ``feast apply`` keeps the twins.

    ``entities``: the views' ``Entity`` objects, needed when a view's schema does not declare its
    join-key field (a Feast ``FeatureView`` keeps only entity names); without the key's type Feast
    would read the twin's source at apply, and no run may exist yet. Pure: writes nothing.
    """
    cfg = config or SynthTwinConfig()
    runs = str(runs_dir) if runs_dir is not None else cfg.runs_dir
    by_name = {e.name: e for e in entities}
    twins = []
    for view in views:
        if not isinstance(view, FeatureView) or view.batch_source is None:
            raise EcaugError(f"synthetic_twins: {getattr(view, 'name', view)!r} is not a batch FeatureView")
        clash = [f.name for f in view.features if f.name in {x.name for x in LINEAGE_FIELDS}]
        if clash:
            raise EcaugError(f"synthetic_twins: view {view.name!r} already has field(s) {clash} (ecaug's lineage fields)")
        keys = _entity_columns(view, by_name)
        name = f"{view.name}{cfg.suffix}"
        source = run_source(f"{name}_source", f"{name}.parquet", runs, cfg.timestamp_field,
                            description=f"Synthetic rows of {view.name} (ecaug's active run).", like=view.batch_source)
        twin = FeatureView(
            name=name,
            ttl=view.ttl,
            source=source,
            schema=[*view.features, *LINEAGE_FIELDS],
            online=cfg.online,
            description=f"Synthetic twin of {view.name} (ecaug): same entity and features, synthetic keys, lineage.",
            tags={**view.tags, "kind": "synthetic", TWIN_OF_TAG: view.name, "owner": "synth"},
        )
        # As FeatureView.__copy__ does (it has no Entity objects either): the real view's entity
        # names, and key columns with a declared type so `feast apply` never reads the source.
        twin.entities = list(view.entities)
        twin.entity_columns = list(keys)
        twins.append(twin)
    return twins


def _entity_columns(view: FeatureView, entities: dict[str, Entity]) -> list[Field]:
    """The view's join-key fields: declared in its schema, or built from the given entities."""
    have = {f.name: f for f in view.entity_columns}
    out = list(view.entity_columns)
    for name in view.entities:
        ent = entities.get(name)
        if ent is None:
            if len(view.entities) == len(view.entity_columns):
                continue  # every key declared in the view's schema
            raise EcaugError(f"synthetic_twins: view {view.name!r} declares no join-key field for entity {name!r}; "
                             f"pass entities=[{name}] (its Entity object) or add the key Field to the view's schema")
        if ent.join_key in have:
            continue
        out.append(Field(name=ent.join_key, dtype=_key_dtype(ent)))
    return out


def _key_dtype(entity: Entity) -> Any:
    """The Feast type of an entity's key: its ``value_type`` when set, else Int64 (synthetic keys are int64)."""
    from feast.types import from_value_type
    from feast.value_type import ValueType

    return Int64 if entity.value_type == ValueType.UNKNOWN else from_value_type(entity.value_type)


# ------------------------------------------------------------------------------------------ paths
def source_path(view: FeatureView, repo_path: str | Path | None) -> Path:
    """A view's ``FileSource`` path, relative paths taken from the repo (as Feast does)."""
    p = Path(view.batch_source.path)
    return p if p.is_absolute() or repo_path is None else Path(repo_path) / p


def runs_root_of(view: FeatureView, repo_path: str | Path | None) -> Path:
    """The runs folder a run-sourced view reads from (``<runs_dir>`` of ``<runs_dir>/active/<file>``)."""
    p = source_path(view, repo_path)
    if p.parent.name != ACTIVE:
        raise EcaugError(f"view {view.name!r}: source {p} does not read through an ecaug '{ACTIVE}' link")
    return p.parent.parent


def is_run_sourced(view: Any) -> bool:
    src = getattr(view, "batch_source", None)
    return getattr(src, "path", None) is not None and (src.tags or {}).get(RUN_SOURCE_TAG) == RUN_SOURCE_VALUE


def arrow_schema(view: FeatureView, entities: Iterable[Entity] = (), timestamp_field: str | None = None) -> Any:
    """Arrow schema of a run-sourced view's parquet file: key columns, timestamp, features (by
    their source column names: the source's field mapping reversed)."""
    import pyarrow as pa
    from feast.types import from_feast_to_pyarrow_type

    ts = timestamp_field or view.batch_source.timestamp_field
    back = {v: k for k, v in (view.batch_source.field_mapping or {}).items()}
    keys = _entity_columns(view, {e.name: e for e in entities})
    cols = [pa.field(f.name, from_feast_to_pyarrow_type(f.dtype)) for f in keys]
    cols.append(pa.field(ts, pa.timestamp("us", tz="UTC")))
    cols += [pa.field(back.get(f.name, f.name), from_feast_to_pyarrow_type(f.dtype)) for f in view.features]
    return pa.schema(cols)


def _write_table(df: pd.DataFrame, schema: Any, path: Path) -> None:
    """Write ``df`` with exactly ``schema`` (types Feast expects), through a temp file + rename."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = df[[f.name for f in schema]].copy()
    for f in schema:
        if pa.types.is_timestamp(f.type) and len(df):  # Feast's unit: drop sub-microsecond digits, not fail
            df[f.name] = pd.to_datetime(df[f.name], utc=True).dt.floor("us")
    tbl = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(tbl, tmp)
    os.replace(tmp, path)


def ensure_placeholders(views: Iterable[Any], entities: Iterable[Entity] = (), repo_path: str | Path | None = None) -> list[Path]:
    """For every run-sourced view whose file is missing: write ``<runs>/_empty/<file>`` (empty,
    the view's schema) and point ``active`` at ``_empty`` when no link exists yet, so Feast can
    read the source (a stock ``feast materialize`` of every view). Idempotent; returns the
    files written. A run that predates a newly declared twin is left as it is (logged)."""
    from ecaug_feast.atomic import swap_symlink

    ents = list(entities)
    written = []
    for view in views:
        if not is_run_sourced(view):
            continue
        path = source_path(view, repo_path)
        if path.exists():
            continue
        root = runs_root_of(view, repo_path)
        empty = root / EMPTY / path.name
        if not empty.exists():
            empty.parent.mkdir(parents=True, exist_ok=True)
            schema = arrow_schema(view, ents)
            _write_table(pd.DataFrame({f.name: pd.Series([], dtype=object) for f in schema}), schema, empty)
            written.append(empty)
        link = root / ACTIVE
        if not link.is_symlink():
            swap_symlink(link, EMPTY)
        elif not path.exists():
            log.warning("%s: the active run has no file for view %s; it reads nothing until the next run", path, view.name)
    return written


# ------------------------------------------------------------------------------- registry lookups
def find_twin(store: "FeatureStore", view: str) -> FeatureView:
    """The registered twin of ``view`` (tag ``twin_of``)."""
    twins = [v for v in store.list_feature_views() if (v.tags or {}).get(TWIN_OF_TAG) == view and is_run_sourced(v)]
    if not twins:
        raise EcaugError(f"feature view {view!r} has no synthetic twin in the registry: declare one in a repo file "
                         f"(`synthetic_twins([{view}], entities=[...])`, docs/guide/plugin.md) and run `feast apply`")
    if len(twins) > 1:
        raise EcaugError(f"feature view {view!r} has several twins: {sorted(t.name for t in twins)}")
    return twins[0]


def read_view_rows(store: "FeatureStore", view: FeatureView) -> pd.DataFrame:
    """Every row of a view's batch source, read by the shop's own offline store (keys, timestamp,
    features named as in the view: the source's field mapping applied)."""
    src = view.batch_source
    mapping = src.field_mapping or {}
    back = {v: k for k, v in mapping.items()}
    keys = [c.name for c in view.entity_columns]
    feats = [f.name for f in view.features]
    job = store._get_provider().offline_store.pull_all_from_table_or_query(  # the offline store's own reader
        config=store.config, data_source=src, join_key_columns=[back.get(k, k) for k in keys],
        feature_name_columns=[back.get(f, f) for f in feats], timestamp_field=src.timestamp_field,
        created_timestamp_column=src.created_timestamp_column or None,
        start_date=datetime(1970, 1, 1, tzinfo=timezone.utc), end_date=_FAR_FUTURE)
    df = job.to_df().rename(columns=mapping)
    return df[keys + [src.timestamp_field] + feats].reset_index(drop=True)


# ------------------------------------------------------------------------------------ augmentation
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
    import time

    from ecaug_feast.errors import DataValidationError
    from ecaug_feast.quality.gates import GateConfig, evaluate
    from ecaug_feast.synth.gan import ConditionalGAN, GANConfig

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
    from ecaug_feast.synth_store import user_id_start

    start = user_id_start(seq)
    return np.arange(start, start + n, dtype=np.int64)


def check_real_keys(view: FeatureView, real: pd.DataFrame) -> str:
    """The view's single int64 join key, checked to lie below the synthetic key space."""
    from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE

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
    from ecaug_feast import synth_store
    from ecaug_feast.synth.gan import GENERATOR_VERSION

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
    from ecaug_feast.synth_store import commit_run_dir

    final, tmp = root / run_id, root / f".tmp-{run_id}"
    if final.exists():
        raise EcaugError(f"run {run_id} already exists")
    tmp.mkdir(parents=True, exist_ok=True)  # reserved by new_run_id
    try:
        for name, (df, arrow_schema) in files.items():
            _write_table(df, arrow_schema, tmp / name)
        if carry_from:  # the other twins keep their data: link their files from the active run
            for p in (root / carry_from).glob("*.parquet"):
                if p.name not in files:
                    try:
                        os.link(p, tmp / p.name)
                    except OSError:
                        shutil.copy2(p, tmp / p.name)
                    manifest["files"][p.stem] = p.name
        commit_run_dir(tmp, final, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TwinRun(run_id, final, manifest)


def publish_twin(store: "FeatureStore", twin: FeatureView, run: TwinRun) -> dict[str, Any]:
    """Activate a gate-passing run and bring the online store in line for ``twin`` only: delete
    the previous run's synthetic keys of this twin, materialize this run's rows of this twin.
    Under the runs lock. The shop's real keys are never written (the keys deleted and written
    all lie in the synthetic key space)."""
    from ecaug_feast import synth_store
    from ecaug_feast.atomic import swap_symlink

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
    import pyarrow.parquet as pq

    key = view.entity_columns[0].name
    return np.unique(pq.read_table(path, columns=[key]).column(key).to_numpy().astype(np.int64))


def remove_twin_keys(store: "FeatureStore", twin: FeatureView, ids: np.ndarray) -> int:
    """Remove ``twin``'s rows of synthetic ``ids`` from the online store (ids below the synthetic
    key space are skipped: a real key is never touched). Returns the number of keys changed."""
    from ecaug_feast.synth_store import delete_synthetic_keys

    return delete_synthetic_keys(store, [twin], ids)


# ---------------------------------------------------------------------------------------- training
def _feature_refs(store: "FeatureStore", features: "str | FeatureService | Sequence[str]") -> list[str]:
    from feast import FeatureService

    if isinstance(features, str):
        features = store.get_feature_service(features)
    if isinstance(features, FeatureService):
        return [f"{p.name_to_use()}:{f.name}" for p in features.feature_view_projections for f in p.features]
    return list(features)


def _timestamp_column(entity_df: pd.DataFrame) -> str:
    if "event_timestamp" in entity_df.columns:
        return "event_timestamp"
    cols = [c for c in entity_df.columns if pd.api.types.is_datetime64_any_dtype(entity_df[c])]
    if len(cols) != 1:
        raise EcaugError("entity_df needs an 'event_timestamp' column (or exactly one datetime column)")
    return cols[0]


def training_rows(store: "FeatureStore", entity_df: pd.DataFrame, features: "str | FeatureService | Sequence[str]",
                  mix_ratio: float, run_id: str | None = None, seed: int = 0) -> pd.DataFrame:
    """Real training rows (``entity_df`` joined point-in-time with ``features`` of the real views)
    plus ``min(round(mix_ratio * len(entity_df)), synthetic rows)`` synthetic rows of the twins of
    those views, sampled without replacement, both through ``get_historical_features``.

    ``features``: ``["view:feature", ...]``, a ``FeatureService`` or its name; the views must share
    one twinned entity. ``run_id``: the run expected to be active (None: whichever is). Columns:
    those of ``entity_df`` (other than keys and timestamp: null on synthetic rows), the features,
    ``is_synthetic`` and ``run_id`` (null on real rows). Real rows come first, in input order."""
    if mix_ratio < 0:
        raise EcaugError(f"mix ratio must be >= 0, got {mix_ratio}")
    refs = _feature_refs(store, features)
    ts = _timestamp_column(entity_df)
    ent = entity_df.reset_index(drop=True).assign(__row=np.arange(len(entity_df)))
    real = store.get_historical_features(entity_df=ent, features=refs).to_df()
    real = real.sort_values("__row").drop(columns="__row").reset_index(drop=True)
    real["is_synthetic"], real["run_id"] = False, None
    n = int(round(mix_ratio * len(entity_df)))
    if n == 0:
        return real
    views = sorted({r.split(":", 1)[0] for r in refs})
    twins = {v: find_twin(store, v) for v in views}
    keysets = {tuple(c.name for c in t.entity_columns) for t in twins.values()}
    if len(keysets) != 1 or len(next(iter(keysets))) != 1:
        raise EcaugError(f"features name views {views} with different entities; synthetic rows come from one entity's twins")
    key = next(iter(keysets))[0]
    repo = store.config.repo_path
    roots = {runs_root_of(t, repo) for t in twins.values()}
    if len(roots) != 1:
        raise EcaugError(f"the twins of {views} read from different runs folders ({sorted(map(str, roots))})")
    from ecaug_feast import synth_store

    root = roots.pop()
    active = synth_store.active_run(root)
    if active is None:
        raise EcaugError(f"no synthetic run is active for {sorted(t.name for t in twins.values())}: run `ecaug augment --repo {repo} ...`")
    if run_id is not None and run_id != active:
        raise EcaugError(f"run {run_id} is not active (active: {active}); training rows come from the active run")
    first = twins[views[0]]
    rows = read_view_rows(store, first)[[key, first.batch_source.timestamp_field]].drop_duplicates()
    rows = rows.rename(columns={first.batch_source.timestamp_field: ts})
    n = min(n, len(rows))
    if n == 0:
        return real
    pick = rows.iloc[np.sort(np.random.default_rng(seed).choice(len(rows), n, replace=False))].reset_index(drop=True)
    pick["__row"] = np.arange(n)
    twin_refs = [f"{twins[r.split(':', 1)[0]].name}:{r.split(':', 1)[1]}" for r in refs] + [f"{first.name}:run_id"]
    syn = store.get_historical_features(entity_df=pick, features=twin_refs).to_df()
    syn = syn.sort_values("__row").drop(columns="__row").reset_index(drop=True)
    got = set(syn["run_id"].dropna().unique())
    if got - {active}:
        raise EcaugError(f"synthetic rows of runs {sorted(got - {active})} returned while {active} is active")
    syn["is_synthetic"] = True
    out = pd.concat([real, syn[[c for c in syn.columns if c in real.columns]]], ignore_index=True)
    return out[list(real.columns)]
