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

Declarations and readers only: this module imports no synthesis code (``feast apply`` of a repo
that declares twins never reaches the generator). The engine that fills a twin, ``ecaug augment
--repo`` (:mod:`ecaug_feast.jobs.augment_repo`), fits ecaug's tabular GAN on the real rows of one
view, gates them and writes a run whose entity keys lie in ecaug's synthetic key space.
:func:`training_rows` returns real plus synthetic training rows at a mix ratio, both read through
``get_historical_features``, for any training job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.repo_config import FeastConfigBaseModel
from feast.types import Int64, from_feast_to_pyarrow_type, from_value_type
from feast.value_type import ValueType

from ecaug_feast import schema
from ecaug_feast.atomic import swap_symlink
from ecaug_feast.errors import EcaugError
from ecaug_feast.histories import leave_last_out
from ecaug_feast.ids import DEFAULT_KEY_PREFIX
from ecaug_feast.repo_check import TWIN_OF_TAG, one_twin  # one tag, one lookup rule for both checks
from ecaug_feast.runs_link import ACTIVE, EMPTY, active_run_in

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)

RUN_SOURCE_TAG = "ecaug"   # FileSource tag marking a source read through <runs_dir>/active/
RUN_SOURCE_VALUE = "run-source"
KEY_PREFIX_TAG = "ecaug_key_prefix"  # twin tag: the reserved prefix of synthetic String keys
FEATURE_FN_TAG = "ecaug_feature_fn"  # twin tag: module:name of the shop's feature function (events -> rows)
LINEAGE_FIELDS = schema.feast_fields(schema.LINEAGE_FEATURES)  # is_synthetic, run_id, generator_version
_FAR_FUTURE = datetime(2200, 1, 1, tzinfo=timezone.utc)  # end of "all rows" reads


class SynthTwinConfig(FeastConfigBaseModel):
    """How twins are named and where their runs live (a Feast-style config model, like
    ``RedisOnlineStoreConfig``). ``runs_dir``: relative paths are taken from the repo, as Feast
    takes every relative ``FileSource`` path. ``key_prefix``: the reserved prefix of synthetic
    String keys (``<prefix><run_id>:<n>``); no real key may start with it (checked before a run
    is published). Int64/Int32 keys use reserved ranges instead (:mod:`ecaug_feast.ids`)."""

    runs_dir: str = "data/ecaug_runs"
    suffix: str = "_synth"
    timestamp_field: str = "event_timestamp"
    online: bool = True
    key_prefix: str = DEFAULT_KEY_PREFIX


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
                    entities: Sequence[Entity] = (), config: SynthTwinConfig | None = None,
                    features: dict[str, Any] | None = None) -> list[FeatureView]:
    """The synthetic twin of each real view: same entities and features + lineage fields, source =
    the active run under ``runs_dir``. Call it in a repo file so ``feast apply`` keeps the twins.

    ``features``: view name -> the shop's feature function, a module-level callable of the repo
    file taking events (user key, item key, timestamp columns of the event source) and returning
    one row per user (the user key + the view's features, optionally a timestamp); or a dict
    naming ecaug's own builder of each field (``{"n_buys": "count", "recent": "recent_items:5"}``).
    ``ecaug augment --repo --events SRC --view V`` computes the twin's rows of the generated
    users with it. Kept as a twin tag (``module:name`` / ``builtin:<json>``).

    ``entities``: the views' ``Entity`` objects, needed when a view's schema does not declare its
    join-key field (a Feast ``FeatureView`` keeps only entity names); without the key's type Feast
    would read the twin's source at apply, and no run may exist yet. Pure: writes nothing.
    """
    cfg = _checked_config(config, "synthetic_twins")
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
            tags={**view.tags, "kind": "synthetic", TWIN_OF_TAG: view.name, "owner": "synth",
                  KEY_PREFIX_TAG: cfg.key_prefix,
                  **({FEATURE_FN_TAG: _callable_ref(features[view.name])} if view.name in (features or {}) else {})},
        )
        # As FeatureView.__copy__ does (it has no Entity objects either): the real view's entity
        # names, and key columns with a declared type so `feast apply` never reads the source.
        twin.entities = list(view.entities)
        twin.entity_columns = list(keys)
        twins.append(twin)
    return twins


def _checked_config(config: SynthTwinConfig | None, who: str) -> SynthTwinConfig:
    """The twin config, its reserved key prefix checked (an empty one would make every key synthetic)."""
    cfg = config or SynthTwinConfig()
    if not cfg.key_prefix or cfg.key_prefix != cfg.key_prefix.strip():
        raise EcaugError(f"{who}: key_prefix {cfg.key_prefix!r} must be non-empty, without surrounding spaces")
    return cfg


def _callable_ref(fn: Any) -> str:
    """``module:name`` of a module-level callable (how a twin names its feature function), or
    ``builtin:<json>`` for a dict naming ecaug's own builder of each field
    (:mod:`ecaug_feast.jobs.repo_features`: ``count``, ``recent_items:N``, ``top_item``, ...)."""
    if isinstance(fn, dict):
        return "builtin:" + json.dumps({str(k): str(v) for k, v in fn.items()}, sort_keys=True)
    name = getattr(fn, "__qualname__", "")
    if not callable(fn) or not name or "<" in name or "." in name:
        raise EcaugError(f"synthetic_twins: feature function {fn!r} must be a module-level function of the repo file")
    return f"{fn.__module__}:{name}"


EVENTS_TAG = "ecaug_events"  # tags of an event-source twin: user key, item key and their Feast types


def synthetic_events(source: Any, *, user_key: str, item_key: str, user_type: Any = None, item_type: Any = None,
                     timestamp_field: str | None = None, runs_dir: str | Path | None = None,
                     config: SynthTwinConfig | None = None) -> Any:
    """The synthetic twin of a shop's interaction source (a ``DataSource`` already in the repo:
    one row per event with ``user_key``, ``item_key`` and a timestamp): a source reading
    ``<runs_dir>/active/<source>_synth.parquet``, where ``ecaug augment --repo ... --events
    <source>`` writes the generated behaviour (:mod:`ecaug_feast.jobs.augment_events`).
    ``user_type`` / ``item_type``: the keys' Feast types (default String). Pure: writes nothing."""
    from feast.types import String

    cfg = _checked_config(config, "synthetic_events")
    runs = str(runs_dir) if runs_dir is not None else cfg.runs_dir
    name = f"{source.name}{cfg.suffix}"
    twin = run_source(f"{name}", f"{name}.parquet", runs, timestamp_field or source.timestamp_field,
                      description=f"Synthetic events of {source.name} (ecaug's active run).", like=source)
    twin.tags.update({"kind": "synthetic", TWIN_OF_TAG: source.name, KEY_PREFIX_TAG: cfg.key_prefix,
                      EVENTS_TAG: ",".join([user_key, item_key, str(user_type or String), str(item_type or String)])})
    return twin


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
    return Int64 if entity.value_type == ValueType.UNKNOWN else from_value_type(entity.value_type)


# ------------------------------------------------------------------------------------------ paths
def source_path(view: Any, repo_path: str | Path | None) -> Path:
    """A view's ``FileSource`` path (or a source's own), relative paths taken from the repo (as Feast does)."""
    p = Path(getattr(view, "batch_source", view).path)
    return p if p.is_absolute() or repo_path is None else Path(repo_path) / p


def runs_root_of(view: Any, repo_path: str | Path | None) -> Path:
    """The runs folder a run-sourced view (or source) reads from (``<runs_dir>`` of ``<runs_dir>/active/<file>``)."""
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
    ts = timestamp_field or view.batch_source.timestamp_field
    back = {v: k for k, v in (view.batch_source.field_mapping or {}).items()}
    keys = _entity_columns(view, {e.name: e for e in entities})
    cols = [pa.field(f.name, from_feast_to_pyarrow_type(f.dtype)) for f in keys]
    cols.append(pa.field(ts, pa.timestamp("us", tz="UTC")))
    cols += [pa.field(back.get(f.name, f.name), from_feast_to_pyarrow_type(f.dtype)) for f in view.features]
    return pa.schema(cols)


def write_table(df: pd.DataFrame, schema: Any, path: Path) -> None:
    """Write ``df`` with exactly ``schema`` (types Feast expects), through a temp file + rename."""
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
            write_table(pd.DataFrame({f.name: pd.Series([], dtype=object) for f in schema}), schema, empty)
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
    return one_twin(view, [v for v in store.list_feature_views()
                            if (v.tags or {}).get(TWIN_OF_TAG) == view and is_run_sourced(v)])


def in_repo(store: "FeatureStore") -> Any:
    """cwd = the repo while the shop's offline store reads: some (DuckDB) take a relative
    ``FileSource`` path from the cwd, as the ``feast`` CLI run inside the repo does."""
    return contextlib.chdir(store.config.repo_path)


def read_view_rows(store: "FeatureStore", view: FeatureView) -> pd.DataFrame:
    """Every row of a view's batch source, read by the shop's own offline store (keys, timestamp,
    features named as in the view: the source's field mapping applied)."""
    src = view.batch_source
    mapping = src.field_mapping or {}
    back = {v: k for k, v in mapping.items()}
    keys = [c.name for c in view.entity_columns]
    feats = [f.name for f in view.features]
    with in_repo(store):
        job = store._get_provider().offline_store.pull_all_from_table_or_query(  # the offline store's own reader
            config=store.config, data_source=src, join_key_columns=[back.get(k, k) for k in keys],
            feature_name_columns=[back.get(f, f) for f in feats], timestamp_field=src.timestamp_field,
            created_timestamp_column=src.created_timestamp_column or None,
            start_date=datetime(1970, 1, 1, tzinfo=timezone.utc), end_date=_FAR_FUTURE)
        df = job.to_df().rename(columns=mapping)
    return df[keys + [src.timestamp_field] + feats].reset_index(drop=True)


def find_event_twin(store: "FeatureStore", name: str) -> tuple[Any, Any, list[str]]:
    """The shop's event source ``name``, its twin (:func:`synthetic_events`) and the twin's
    (user key, item key, user type, item type)."""
    sources = {s.name: s for s in store.list_data_sources()}
    if name not in sources:
        raise EcaugError(f"--events {name}: no such data source in {store.config.repo_path} "
                         f"(registered: {', '.join(sorted(sources)) or 'none; run `feast apply` in the repo'})")
    twins = [s for s in sources.values() if (s.tags or {}).get(TWIN_OF_TAG) == name and EVENTS_TAG in (s.tags or {})]
    if len(twins) != 1:
        raise EcaugError(f"--events {name}: {'no' if not twins else 'several'} synthetic twin(s) declared; declare one "
                         f"with synthetic_events({name}, user_key=..., item_key=...) and run `feast apply`")
    return sources[name], twins[0], twins[0].tags[EVENTS_TAG].split(",")


def read_events(store: "FeatureStore", source: Any, user: str, item: str) -> pd.DataFrame:
    """Every event of ``source`` through the shop's offline store: user, item, timestamp (UTC)."""
    with in_repo(store):
        job = store._get_provider().offline_store.pull_all_from_table_or_query(
            config=store.config, data_source=source, join_key_columns=[user, item], feature_name_columns=[],
            timestamp_field=source.timestamp_field, created_timestamp_column=None,
            start_date=datetime(1970, 1, 1, tzinfo=timezone.utc), end_date=_FAR_FUTURE)
        df = job.to_df()[[user, item, source.timestamp_field]]
    df[source.timestamp_field] = pd.to_datetime(df[source.timestamp_field], utc=True)  # DuckDB may give text
    return df


def event_histories(store: "FeatureStore", events: str) -> pd.DataFrame:
    """Histories for sequence consumers: one row per user of the shop's event source ``events``
    (every event, as the source holds it: split before training) and of its twin's active run,
    both read by the shop's offline store. Columns: the user key, ``items`` (oldest first),
    ``is_synthetic``, ``run_id`` (null on real users)."""
    source, twin, (user, item, *_types) = find_event_twin(store, events)
    active = active_run_in(runs_root_of(twin, store.config.repo_path))
    frames = [read_events(store, source, user, item).assign(is_synthetic=False, run_id=None)]
    if active is not None and source_path(twin, store.config.repo_path).exists():
        frames.append(read_events(store, twin, user, item).rename(columns={twin.timestamp_field: source.timestamp_field})
                      .assign(is_synthetic=True, run_id=active))
    ev = pd.concat(frames, ignore_index=True).sort_values(source.timestamp_field, kind="stable")
    out = ev.groupby([user, "is_synthetic"], sort=False).agg(items=(item, list), run_id=("run_id", "first")).reset_index()
    return out[[user, "items", "is_synthetic", "run_id"]].sort_values("is_synthetic", kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------- training
def _feature_refs(store: "FeatureStore", features: "str | FeatureService | Sequence[str]") -> list[str]:
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


def training_rows(store: "FeatureStore", entity_df: pd.DataFrame | None = None,
                  features: "str | FeatureService | Sequence[str] | None" = None, mix_ratio: float = 0.0,
                  run_id: str | None = None, seed: int = 0, *, events: str | None = None,
                  events_read: pd.DataFrame | None = None) -> pd.DataFrame:
    """Real training rows plus ``mix_ratio`` synthetic rows per real one, for any training job.

    Tabular consumers (``entity_df`` + ``features``): the real rows are ``entity_df`` joined
    point-in-time with ``features`` of the real views, plus ``min(round(mix_ratio *
    len(entity_df)), synthetic rows)`` synthetic rows of the twins of those views, sampled without
    replacement, both through ``get_historical_features``. ``features``: ``["view:feature", ...]``,
    a ``FeatureService`` or its name; the views must share one twinned entity. Columns: those of
    ``entity_df`` (other than keys and timestamp: null on synthetic rows), the features,
    ``is_synthetic`` and ``run_id`` (null on real rows). Real rows come first, in input order.

    Sequence consumers (``events=<the shop's event source>``, no ``entity_df``/``features``): one
    row per user, its history of the shop's item keys, oldest first. Real users' histories hold
    their *training* events only: the source is read by the shop's offline store and split first
    (leave-last-out, ``histories.leave_last_out``: each user's last event is test, the one
    before validation, the same split ``ecaug augment --repo --events`` uses, so no synthetic
    history holds a held-out event). Plus ``min(round(mix_ratio * real users), synthetic users)``
    synthetic histories of the twin's active run (:func:`synthetic_events`), sampled without
    replacement. Columns: the user key, ``items``, ``is_synthetic``, ``run_id`` (null on real
    users); real users first (by key), then synthetic ones by their first event.

    ``run_id``: the run expected to be active (None: whichever is). ``events_read``: the source's
    events as :func:`read_events` gave them, when the caller has read them already (not read again)."""
    if mix_ratio < 0:
        raise EcaugError(f"mix ratio must be >= 0, got {mix_ratio}")
    if events is not None:
        if entity_df is not None or features is not None:
            raise EcaugError("training_rows: pass either events= (histories) or entity_df and features (rows), not both")
        return _history_rows(store, events, mix_ratio, run_id, seed, events_read)
    if events_read is not None:
        raise EcaugError("training_rows: events_read goes with events= (histories)")
    if entity_df is None or features is None:
        raise EcaugError("training_rows: entity_df and features are needed (or events= for histories)")
    refs = _feature_refs(store, features)
    ts = _timestamp_column(entity_df)
    ent = entity_df.reset_index(drop=True).assign(__row=np.arange(len(entity_df)))
    with in_repo(store):
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
    root = roots.pop()
    active = active_run_in(root)
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
    with in_repo(store):
        syn = store.get_historical_features(entity_df=pick, features=twin_refs).to_df()
    syn = syn.sort_values("__row").drop(columns="__row").reset_index(drop=True)
    got = set(syn["run_id"].dropna().unique())
    if got - {active}:
        raise EcaugError(f"synthetic rows of runs {sorted(got - {active})} returned while {active} is active")
    syn["is_synthetic"] = True
    out = pd.concat([real, syn[[c for c in syn.columns if c in real.columns]]], ignore_index=True)
    return out[list(real.columns)]


def _history_rows(store: "FeatureStore", events: str, mix_ratio: float, run_id: str | None, seed: int,
                  events_read: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`training_rows` for sequence consumers (see there)."""
    source, twin, (user, item, *_types) = find_event_twin(store, events)
    ts = source.timestamp_field
    ev = read_events(store, source, user, item) if events_read is None else events_read
    # split first: the held-out events never leave here
    ev = ev[leave_last_out(pd.factorize(ev[user])[0], ev[ts].to_numpy(dtype="datetime64[ns]").astype(np.int64)) == "train"]
    real = _histories_of(ev, user, item, ts).sort_values(user, kind="stable").reset_index(drop=True)
    real["is_synthetic"], real["run_id"] = False, None
    n = int(round(mix_ratio * len(real)))
    if n == 0:
        return real
    root = runs_root_of(twin, store.config.repo_path)
    active = active_run_in(root)
    if active is None or not source_path(twin, store.config.repo_path).exists():
        raise EcaugError(f"no synthetic run is active for {twin.name}: run `ecaug augment --repo {store.config.repo_path} --events {events}`")
    if run_id is not None and run_id != active:
        raise EcaugError(f"run {run_id} is not active (active: {active}); training rows come from the active run")
    syn = _histories_of(read_events(store, twin, user, item), user, item, twin.timestamp_field)
    n = min(n, len(syn))
    pick = syn.iloc[np.sort(np.random.default_rng(seed).choice(len(syn), n, replace=False))] if n else syn.iloc[:0]
    pick = pick.assign(is_synthetic=True, run_id=active)
    return pd.concat([real, pick], ignore_index=True)


def _histories_of(ev: pd.DataFrame, user: str, item: str, ts: str) -> pd.DataFrame:
    """One row per user of an event frame: ``items`` oldest first (equal times keep read order),
    users in the order of their first event."""
    got = ev.sort_values(ts, kind="stable").groupby(user, sort=False)[item].agg(list)
    return pd.DataFrame({user: got.index.to_numpy(), "items": list(got.to_numpy())})
