"""Feast helpers: render the repo for a state dir, apply, materialize, read offline and online.

ecaug never runs Feast against the checked-in ``feature_repo/`` directly: it renders a copy into
``<state>/feature_repo/`` (every ``*.py`` of ``feature_repo/`` plus a ``feature_store.yaml`` with
absolute paths for this state dir and the Redis in use), so any ``$ECAUG_HOME`` and any Redis work.
The source repo is ``paths.feature_repo_dir()``: the checkout's ``feature_repo/``, or its copy shipped
in the wheel. Run from the checkout root (state ``<repo>/.ecaug``), both repos share one registry
(``<state>/feast/registry.db``), so ``ecaug apply`` followed by the stock ``feast materialize`` in
``feature_repo/`` works too.

The definitions read their parquet paths from ``$ECAUG_HOME`` (``ecaug_feast.paths``), else from
the state dir the repo's registry lives in (``feature_repo/entities.py``): the stock CLI works in a
rendered repo with ``ECAUG_HOME`` unset or set to that same state dir.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import pandas as pd
import pyarrow.parquet as pq

from ecaug_feast import paths
from ecaug_feast.errors import EcaugError
from ecaug_feast.redis_cluster import feast_cluster_string, is_cluster_url
from ecaug_feast.redis_server import NOT_RUNNING_URL, current_url, feast_connection_string

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)

PROJECT = "ecaug"
USER_VIEW = "user_features"
ITEM_VIEW = "item_features"
ITEM_SYNTH_VIEW = "item_features_synth"  # generated item vectors (ecaug_feast.item_runs)
SOURCE_TIMESTAMP = "event_timestamp"  # the timestamp field of every ecaug file source (feature_repo/sources.py)
TRAIN_SOURCE = "train_interactions"  # the entity rows of training (no view: a data source of the training service)
SERVING_SERVICE = "serving"
TRAINING_SERVICE = "training"

_YAML = """\
# Rendered by ecaug_feast.feast_io.render_repo for state dir {state}. Do not edit: re-rendered by
# every ecaug command. Edit feature_repo/ in the source tree instead.
project: {project}
provider: local
registry:
  registry_type: file
  path: {registry}
  cache_ttl_seconds: 60
offline_store:
  type: duckdb   # keeps entity rows without a feature row (nulls); the file store drops them
online_store:
  type: redis{password_note}
{redis_type}  connection_string: "{redis}"
entity_key_serialization_version: 3
"""


REDIS_PASSWORD_ENV = "ECAUG_REDIS_PASSWORD"


def _yaml_connection_string(url: str) -> tuple[str, str]:
    """Feast's connection string for ``url`` with any password replaced by ``${ECAUG_REDIS_PASSWORD}``
    (Feast expands environment variables in feature_store.yaml), so the rendered file holds no
    secret. The password goes into this process's environment, which Feast (and every child
    process) reads it from. A ``redis-cluster://`` URL gives the cluster's node list
    (:mod:`ecaug_feast.redis_cluster`). Returns ``(connection string, yaml comment)``."""
    parts = []
    for part in (feast_cluster_string(url) if is_cluster_url(url) else feast_connection_string(url)).split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip() == "password":
            os.environ[REDIS_PASSWORD_ENV] = value
            part = f"password=${{{REDIS_PASSWORD_ENV}}}"
        parts.append(part)
    cs = ",".join(parts)
    note = (f"   # password from ${REDIS_PASSWORD_ENV}: export it to run the stock feast CLI here"
            if REDIS_PASSWORD_ENV in cs else "")
    return cs, note


def registry_path(state_dir: Path | None = None) -> Path:
    return (Path(state_dir) if state_dir else paths.state_dir()) / "feast" / "registry.db"


def default_repo_dir(state_dir: Path | None = None) -> Path:
    """Where ecaug renders its Feast repo: ``<state>/feature_repo``."""
    return (Path(state_dir) if state_dir else paths.state_dir()) / "feature_repo"


def render_repo(target: str | Path | None = None, state_dir: str | Path | None = None, redis_url: str | None = None) -> Path:
    """Write a complete Feast repo into ``target``: copies of ``feature_repo/*.py`` + a fitted yaml.

    ``redis_url`` defaults to the Redis in use now (``$ECAUG_REDIS_URL`` or the state dir's
    embedded server when it runs); nothing is started here: with no Redis running the yaml names
    an address nobody listens on, so offline reads work and online reads fail until
    ``Workspace.online()`` (or ``ecaug redis start``) starts one and re-renders the repo.
    A ``redis-cluster://host:port,host:port`` URL renders ``redis_type: redis_cluster``.
    Files are rewritten only when their content changes.
    """
    state = Path(state_dir).resolve() if state_dir else paths.state_dir()
    target = Path(target) if target else default_repo_dir(state)
    target.mkdir(parents=True, exist_ok=True)
    src = paths.feature_repo_dir()
    if not (src / "feature_store.yaml").exists():
        raise EcaugError(f"{src}: not a Feast repo (no feature_store.yaml); set ECAUG_FEATURE_REPO")
    wanted = {p.name for p in src.glob("*.py")}
    for p in src.glob("*.py"):
        _write_if_changed(target / p.name, p.read_text(encoding="utf-8"))
    for stale in target.glob("*.py"):  # a definition file removed from the source repo
        if stale.name not in wanted:
            stale.unlink()
    registry_path(state).parent.mkdir(parents=True, exist_ok=True)
    url = redis_url or current_url(state) or NOT_RUNNING_URL
    conn, note = _yaml_connection_string(url)
    yaml_text = _YAML.format(
        state=state,
        project=PROJECT,
        registry=registry_path(state),
        redis=conn,
        password_note=note,
        redis_type="  redis_type: redis_cluster\n" if is_cluster_url(url) else "",
    )
    _write_if_changed(target / "feature_store.yaml", yaml_text)
    return target


def _write_if_changed(path: Path, text: str) -> None:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def get_store(repo_dir: str | Path | None = None) -> "FeatureStore":
    """A ``FeatureStore`` for ``repo_dir`` (default: the repo rendered for the current state dir).

    Never starts Redis (offline reads need none); online reads and writes go through
    ``ecaug_feast.jobs.workspace.Workspace.online()``, which starts or attaches it."""
    from feast import FeatureStore  # feast (it loads torch) only once a store is used: the adapter imports light

    repo = Path(repo_dir) if repo_dir else render_repo()
    if not (repo / "feature_store.yaml").exists():
        raise EcaugError(f"{repo}: no feature_store.yaml (render one with ecaug_feast.feast_io.render_repo)")
    return FeatureStore(repo_path=str(repo))


@contextlib.contextmanager
def _repo_import_context(repo: Path):
    """cwd = repo and repo on sys.path (how Feast imports definitions), with stale modules purged.

    Feast imports definition files by module name relative to the cwd; a second repo in the same
    process would otherwise reuse the first repo's cached modules (and their parquet paths).
    """
    names = {p.stem for p in repo.glob("*.py")}
    for n in names:
        sys.modules.pop(n, None)
    old_cwd, old_path = os.getcwd(), list(sys.path)
    os.chdir(repo)
    sys.path.insert(0, str(repo))
    try:
        yield
    finally:
        os.chdir(old_cwd)
        sys.path[:] = old_path


def apply(repo_dir: str | Path | None = None) -> dict[str, Any]:
    """``feast apply`` for the repo (registers entities, views, services; removes deleted ones)."""
    from feast.repo_operations import _get_repo_contents, apply_total_with_repo_instance

    from ecaug_feast import plugin

    repo = Path(repo_dir).resolve() if repo_dir else render_repo()
    store = get_store(repo)
    buf = io.StringIO()
    with _repo_import_context(repo), contextlib.redirect_stdout(buf):
        # _get_repo_contents is what `feast apply` runs; it adds the yaml's project when no
        # Project object is defined.
        contents = _get_repo_contents(repo, store.config.project, store.config)
        # empty placeholders for synthetic-run sources not written yet (repo files write nothing)
        plugin.ensure_placeholders(contents.feature_views, contents.entities, repo)
        apply_total_with_repo_instance(store, store.config.project, store.registry, contents, skip_source_validation=False)
    for line in buf.getvalue().splitlines():
        if line.strip():
            log.debug("feast apply: %s", line)
    store.refresh_registry()
    return registry_summary(store) | {"repo": str(repo), "registry": str(store.config.registry.path)}


def registry_summary(store: "FeatureStore") -> dict[str, Any]:
    """Names of the registered entities, feature views and services."""
    project = store.config.project
    return {
        "project": project,
        "entities": sorted(e.name for e in store.list_entities()),
        "feature_views": sorted(v.name for v in store.list_feature_views()),
        "feature_services": sorted(s.name for s in store.list_feature_services()),
    }


def _source_path(view: Any) -> Path | None:
    path = getattr(view.batch_source, "path", None)
    return Path(path) if path else None


def source_file(feast_dir: str | Path, name: str) -> Path:
    """``<feast_dir>/<name>.parquet``: the path the rendered repo's ``FileSource`` of ``name``
    (``user_features``, ``item_features``, ``train_interactions``) registers."""
    return Path(feast_dir) / f"{name}.parquet"


def source_rows(path: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The rows of a Feast file source as Feast's offline store returns them from
    ``pull_all_from_table_or_query`` without a time window: every row, the ``columns`` asked for
    (all when None; the file's own names: ecaug's sources map no fields), timestamps as UTC
    datetimes, list features as arrays. The one reader for code that needs a whole source
    (tests/feast_io/test_source_rows.py holds it to the offline store's answer, value for value).

    Read with pyarrow, not through the store: a store costs ``import feast`` plus the registry
    (4.6 s in a fresh process, measured on the full Beauty sources, which callers such as the
    library ``features.append`` or the light pre-check of ``ecaug ingest`` do not need otherwise),
    and each pull pays DuckDB's start (0.4-0.56 s the first call, then 1.1-9x the parquet read)."""
    path = Path(path)
    cols = None if columns is None else list(dict.fromkeys(columns))
    df = pq.read_table(path, columns=cols).to_pandas()
    if SOURCE_TIMESTAMP in df.columns:  # the offline store answers in UTC; ingest writes UTC (a no-op then)
        df[SOURCE_TIMESTAMP] = pd.to_datetime(df[SOURCE_TIMESTAMP], utc=True)
    return df


def item_catalog(store: "FeatureStore", view: str = ITEM_VIEW) -> tuple[pd.DataFrame, Path]:
    """The item catalogue as the ``item_features`` view holds it: one row per item (``item_id``,
    ``attributes`` of its latest row; ingest writes a row for every catalogue item), sorted by id,
    and the parquet source it was read from (the view's batch source, as registered)."""
    path = _source_path(store.get_feature_view(view))
    if path is None:
        raise EcaugError(f"Feast view '{view}' has no file source; the item catalogue is read from its parquet source")
    if not path.exists():
        raise EcaugError(f"{path}: Feast source of '{view}' does not exist (run `ecaug ingest`)")
    rows = source_rows(path, ["item_id", SOURCE_TIMESTAMP, "attributes"])
    last = rows.sort_values(["item_id", SOURCE_TIMESTAMP], kind="stable").groupby("item_id", sort=True).tail(1)
    out = last[["item_id", "attributes"]].reset_index(drop=True)
    out["attributes"] = [[int(a) for a in x] for x in out["attributes"]]
    return out, path


def materialize(
    repo_dir: str | Path | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    views: Sequence[str] | None = None,
    incremental: bool = False,
) -> dict[str, Any]:
    """Load the latest row per entity in ``[start, end]`` of each view into Redis.

    Defaults: every online view whose parquet source exists, ``start`` = 1970-01-01 UTC (feature
    views have no TTL, so the whole history counts), ``end`` = now (or later if data lies ahead).
    ``incremental``: start each view where its last materialization ended (Feast's
    ``materialize_incremental``; 100 years back for a view never materialized).
    Returns per-view entity counts (for the window) and timings.
    """
    store = get_store(repo_dir)
    registered = {v.name: v for v in store.list_feature_views()}
    if not registered:
        raise EcaugError("no feature views registered: run `ecaug apply` first")
    if views:
        unknown = [v for v in views if v not in registered]
        if unknown:
            raise EcaugError(f"unknown feature view(s): {', '.join(unknown)} (registered: {', '.join(sorted(registered))})")
        chosen = list(views)
    else:
        chosen = [n for n, v in sorted(registered.items()) if v.online]
    skipped, todo = [], []
    for name in chosen:
        src = _source_path(registered[name])
        if src is not None and not src.exists():
            if views:
                raise EcaugError(f"{src}: source of feature view '{name}' does not exist (run `ecaug ingest`)")
            skipped.append(name)
        else:
            todo.append(name)
    if not todo:
        raise EcaugError("no feature view has its source data: run `ecaug ingest` first")
    if incremental and start is not None:
        raise EcaugError("--incremental starts where the last materialization ended; drop --start")
    end = end or datetime.now(timezone.utc)
    out: dict[str, Any] = {"views": {}, "skipped": skipped, "end": end.isoformat(), "incremental": incremental}
    if not incremental:
        start = start or datetime(1970, 1, 1, tzinfo=timezone.utc)
        out["start"] = start.isoformat()
    for name in todo:
        view = registered[name]
        src = _source_path(view)
        if incremental:
            last = view.most_recent_end_time
            start = last if last is not None else end - view.ttl
            if start.tzinfo is None:  # the registry keeps naive UTC times
                start = start.replace(tzinfo=timezone.utc)
        keys = [c.name for c in view.entity_columns]
        n_rows = n_entities = None
        if src is not None:
            tbl = pq.read_table(src, columns=keys + [view.batch_source.timestamp_field])
            ts = tbl.column(view.batch_source.timestamp_field).to_pandas()
            in_window = (ts >= pd.Timestamp(start)) & (ts <= pd.Timestamp(end))
            n_rows = int(in_window.sum())
            n_entities = int(tbl.select(keys).to_pandas()[in_window.to_numpy()].drop_duplicates().shape[0])
        t0 = time.perf_counter()
        # Feast prints a colored "Materializing 1 feature views ..." banner per view to stdout;
        # stdout is for results (`--json`) and our own log line says the same: keep it at DEBUG.
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            if incremental:
                store.materialize_incremental(end_date=end, feature_views=[name])
            else:
                store.materialize(start_date=start, end_date=end, feature_views=[name])
        for line in buf.getvalue().splitlines():
            if line.strip():
                log.debug("feast materialize: %s", line)
        dt = time.perf_counter() - t0
        log.info("materialized %s: %s entities in %.1f s", name, n_entities, dt)
        out["views"][name] = {
            **({"start": start.isoformat()} if incremental else {}),
            "source_rows_in_window": n_rows,
            "entities_written": n_entities,
            "seconds": round(dt, 3),
            "entities_per_s": round(n_entities / dt, 1) if n_entities and dt > 0 else None,
        }
    return out


def historical_features(
    entity_df: pd.DataFrame,
    features: str | Sequence[str] = TRAINING_SERVICE,
    repo_dir: str | Path | None = None,
    full_feature_names: bool = False,
    store: "FeatureStore | None" = None,
) -> pd.DataFrame:
    """Point-in-time join of ``entity_df`` (join keys + ``event_timestamp``) with feature values.

    ``features``: a feature service name (default ``training``) or ``["view:feature", ...]``.
    Rows come back in the input order; entity rows without a feature row get nulls (duckdb store).
    """
    job = historical_job(entity_df, features, store or get_store(repo_dir), full_feature_names, "__row")
    return job.to_df().sort_values("__row").drop(columns="__row").reset_index(drop=True)


def historical_job(entity_df: pd.DataFrame, features: str | Sequence[str], store: "FeatureStore",
                   full_feature_names: bool = False, row_column: str = "__row") -> Any:
    """Feast's retrieval job for ``entity_df`` (UTC timestamps), each row numbered in ``row_column``
    (its position in ``entity_df``: the join does not keep the order)."""
    if "event_timestamp" not in entity_df.columns:
        raise EcaugError("entity_df needs an 'event_timestamp' column")
    df = entity_df.copy()
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    df[row_column] = range(len(df))
    from feast.errors import FeatureServiceNotFoundException, FeatureViewNotFoundException

    try:
        feats: Any = store.get_feature_service(features) if isinstance(features, str) else list(features)
        return store.get_historical_features(entity_df=df, features=feats, full_feature_names=full_feature_names)
    except (FeatureViewNotFoundException, FeatureServiceNotFoundException) as exc:
        # an ingested but never applied repo: one line naming the fix, not Feast's traceback
        raise EcaugError(f"{store.repo_path}/feature_store.yaml: {exc}; run `ecaug apply` first") from None


def online_features(
    entity_rows: list[dict[str, Any]],
    features: str | Sequence[str] = SERVING_SERVICE,
    repo_dir: str | Path | None = None,
    store: "FeatureStore | None" = None,
) -> pd.DataFrame:
    """``get_online_features`` as a DataFrame, one row per entity row (missing keys give nulls)."""
    store = store or get_store(repo_dir)
    feats: Any = store.get_feature_service(features) if isinstance(features, str) else list(features)
    return store.get_online_features(features=feats, entity_rows=entity_rows).to_df()


def online_user_features(
    user_ids: Iterable[int],
    features: str | Sequence[str] = SERVING_SERVICE,
    repo_dir: str | Path | None = None,
    store: "FeatureStore | None" = None,
) -> pd.DataFrame:
    """Online ``user_features`` (the ``serving`` service by default) for ``user_ids``, in order."""
    rows = [{"user_id": int(u)} for u in user_ids]
    return online_features(rows, features, repo_dir, store)


def copy_repo_files(target: str | Path) -> list[Path]:
    """Copy the definition files of ``feature_repo/`` into ``target`` (helper for custom repos)."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(p, target / p.name)) for p in paths.feature_repo_dir().glob("*.py")]

