"""Fail fast on a shop's Feast repo (issue 31 item 6), before any fitting and before ``import
feast`` (about 5 s here): the names a ``--repo`` command is given, the join keys' types, the
sources and the feature types, checked against the repo's FILE registry (``registry.db``: a
serialized ``feast.core.Registry``).

Reading the registry needs Feast's generated protobuf modules, whose package ``feast/__init__``
imports all of Feast. :func:`_registry_proto` loads them under stand-in package modules for
``feast``, ``feast.protos`` and ``feast.protos.feast`` (only their ``__path__``, so the real
``__init__`` never runs), parses, and removes every ``feast*`` module it added, leaving
``sys.modules`` as it found it: a later ``import feast`` runs in full (the descriptors already in
protobuf's pool are the same files: adding them again is allowed).

When the registry cannot answer, nothing is refused here and the command's own full check (after
``feast apply``, through Feast) runs as before: a registry that is not a local file (SQL, S3,
GCS...), a repo never applied, or a registry older than the repo's Python files or its
``feature_store.yaml`` (``feast apply`` would change it). Only what is certainly wrong is refused:
one line, the same words as the full check, exit 2.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ecaug_feast.errors import EcaugError

# tags written by ecaug_feast.plugin (kept equal there; imported from it would import feast)
TWIN_OF_TAG = "twin_of"
EVENTS_TAG = "ecaug_events"
RUN_SOURCE_TAG, RUN_SOURCE_VALUE = "ecaug", "run-source"

KEY_TYPES = {"INT64": "Int64", "INT32": "Int32", "STRING": "String"}
SCALARS = {"STRING", "INT32", "INT64", "DOUBLE", "FLOAT", "BOOL"}  # as jobs.repo_keys.SCALARS; and their _LIST
FEAST_NAMES = {"STRING": "String", "INT32": "Int32", "INT64": "Int64", "DOUBLE": "Float64", "FLOAT": "Float32", "BOOL": "Bool"}


@dataclass
class Registry:
    """What the checks read from a registry: per name, the parts of the protos they use."""

    sources: dict[str, Any] = field(default_factory=dict)      # DataSource protos
    views: dict[str, Any] = field(default_factory=dict)        # FeatureView protos
    entities: dict[str, Any] = field(default_factory=dict)     # Entity protos
    services: dict[str, list[str]] = field(default_factory=dict)  # service -> its views
    value_type: Any = None                                     # the ValueType.Enum (names of numbers)


def _registry_proto() -> tuple[Any, Any]:
    """``(Registry message class, ValueType.Enum)`` without running ``feast/__init__``; every
    ``feast*`` module added is removed again (see the module docstring)."""
    already = "feast" in sys.modules
    if already:  # Feast is imported anyway: nothing to save
        from feast.protos.feast.core.Registry_pb2 import Registry as R
        from feast.protos.feast.types.Value_pb2 import ValueType as V

        return R, V.Enum
    spec = importlib.util.find_spec("feast")  # finds the package, does not execute it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("feast is not installed")
    root = Path(list(spec.submodule_search_locations)[0])
    before = set(sys.modules)
    try:
        for name, sub in (("feast", root), ("feast.protos", root / "protos"), ("feast.protos.feast", root / "protos" / "feast")):
            stand_in = types.ModuleType(name)
            stand_in.__path__ = [str(sub)]  # a package to import submodules from, nothing executed
            sys.modules[name] = stand_in
        from feast.protos.feast.core.Registry_pb2 import Registry as R
        from feast.protos.feast.types.Value_pb2 import ValueType as V

        return R, V.Enum
    finally:
        for name in set(sys.modules) - before:
            if name == "feast" or name.startswith("feast."):
                del sys.modules[name]


def _newest_source(repo: Path) -> float:
    """The newest mtime of what ``feast apply`` reads: the repo's Python files and its yaml."""
    newest = (repo / "feature_store.yaml").stat().st_mtime
    for p in repo.rglob("*.py"):
        if any(part.startswith(".") or part in ("__pycache__", "data") for part in p.relative_to(repo).parts[:-1]):
            continue
        newest = max(newest, p.stat().st_mtime)
    return newest


def read_registry(repo: Path) -> Registry | None:
    """The repo's file registry, or None when it cannot answer (see the module docstring)."""
    import yaml

    try:
        conf = yaml.safe_load((repo / "feature_store.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None  # the full check says what is wrong with it
    reg = conf.get("registry", "data/registry.db")
    if isinstance(reg, dict):
        if str(reg.get("registry_type", "file")).lower() != "file":
            return None
        reg = reg.get("path")
    if not isinstance(reg, str) or "://" in reg:
        return None
    path = Path(reg) if Path(reg).is_absolute() else repo / reg
    try:
        if not path.is_file() or path.stat().st_mtime < _newest_source(repo):
            return None  # never applied, or stale: `feast apply` (the command runs it) would change it
        RegistryProto, value_type = _registry_proto()
        proto = RegistryProto()
        proto.ParseFromString(path.read_bytes())
    except Exception:  # noqa: BLE001 - anything unexpected: leave it to the full check
        return None
    project = conf.get("project")
    mine = lambda spec: not project or spec.project == project  # noqa: E731 - one registry may hold several projects
    out = Registry(value_type=value_type)
    out.sources = {s.name: s for s in proto.data_sources if mine(s)}
    for v in proto.feature_views:
        if mine(v.spec):
            out.views[v.spec.name] = v.spec
            if v.spec.batch_source.name:
                out.sources.setdefault(v.spec.batch_source.name, v.spec.batch_source)
    out.entities = {e.spec.name: e.spec for e in proto.entities if mine(e.spec)}
    out.services = {s.spec.name: [p.feature_view_name for p in s.spec.features] for s in proto.feature_services if mine(s.spec)}
    return out


def _file_of(source: Any, repo: Path) -> Path | None:
    """A file source's local path (relative to the repo, as Feast takes it), else None."""
    if not source.HasField("file_options"):
        return None
    uri = source.file_options.uri
    if not uri or "://" in uri:
        return None
    return Path(uri) if Path(uri).is_absolute() else repo / uri


def _type_name(reg: Registry, number: int) -> str:
    return reg.value_type.Name(number) if reg.value_type is not None else str(number)


def check_repo(repo: str | Path, events: str | None = None, views: Sequence[str] = (), entity: str | None = None,
               view: str | None = None, service: str | None = None, history: str | None = None) -> bool:
    """Refuse (:class:`EcaugError`, one line) what the repo's registry shows to be wrong; True
    when the registry answered, False when the command's full check must (see the module docstring).
    ``events`` (+ ``views``): the sequence path; ``entity`` / ``view`` / ``service``: a view of the column path;
    ``history`` (with ``events``): ``train --repo``'s ``VIEW:FIELD``, as ``jobs.repo_train.check_history``."""
    repo = Path(repo).expanduser().resolve()
    if not (repo / "feature_store.yaml").exists():
        raise EcaugError(f"{repo}: not a Feast repo (no feature_store.yaml)")
    reg = read_registry(repo)
    if reg is None:
        return False
    if events is not None:
        _check_events(reg, repo, events, views)
        if history is not None:
            _check_history(reg, repo, events, history)
    elif view is not None:
        _check_view(reg, repo, entity, view, service)
    return True


def _check_events(reg: Registry, repo: Path, events: str, views: Iterable[str]) -> None:
    """As :func:`ecaug_feast.plugin.find_event_twin` and :func:`ecaug_feast.jobs.augment_events.prepare`."""
    if events not in reg.sources:
        raise EcaugError(f"--events {events}: no such data source in {repo} (registered: {', '.join(sorted(reg.sources)) or 'none'})")
    twins = [s for s in reg.sources.values() if s.tags.get(TWIN_OF_TAG) == events and EVENTS_TAG in s.tags]
    if len(twins) != 1:
        raise EcaugError(f"--events {events}: {'no' if not twins else 'several'} synthetic twin(s) declared; declare one "
                         f"with synthetic_events({events}, user_key=..., item_key=...) and run `feast apply`")
    twin = twins[0]
    user, item, user_type, _item_type = (twin.tags[EVENTS_TAG].split(",") + ["", "", "", ""])[:4]
    if user_type not in KEY_TYPES.values():
        raise EcaugError(f"{twin.name}: user key type {user_type}; synthetic keys are Int64, Int32 or String")
    source = reg.sources[events]
    path = _file_of(source, repo)
    if path is not None:
        if not path.exists():
            raise EcaugError(f"--events {events}: its source {path} does not exist")
        _check_columns(events, path, {user: user_type, item: None, source.timestamp_field: None})
    for name in views:
        _check_event_view(reg, repo, name, user, user_type)


def _check_history(reg: Registry, repo: Path, events: str, history: str) -> None:
    """``VIEW:FIELD``: a view keyed by the events' user key whose field is a list of the item key's type."""
    twin = next(s for s in reg.sources.values() if s.tags.get(TWIN_OF_TAG) == events and EVENTS_TAG in s.tags)
    user, item, _user_type, item_type = (twin.tags[EVENTS_TAG].split(",") + ["", "", "", ""])[:4]
    view_name, sep, field_name = history.partition(":")
    if not sep or not view_name or not field_name:
        raise EcaugError(f"--history {history!r}: expected VIEW:FIELD (a list feature of the user's recent item keys)")
    if view_name not in reg.views:
        raise EcaugError(f"--history {history}: no feature view {view_name!r} in {repo}")
    spec = reg.views[view_name]
    keys = [c.name for c in spec.entity_columns]
    if keys != [user]:
        raise EcaugError(f"--history {history}: view {view_name!r} is keyed by {keys}, the events' users by {user!r}")
    feats = {f.name: _type_name(reg, f.value_type) for f in spec.features}
    if field_name not in feats:
        raise EcaugError(f"--history {history}: view {view_name!r} has no feature {field_name!r} (has: {', '.join(sorted(feats))})")
    t = feats[field_name]
    base = t[: -len("_LIST")] if t.endswith("_LIST") else t
    shown = f"Array({FEAST_NAMES.get(base, base)})" if t.endswith("_LIST") else FEAST_NAMES.get(t, t)
    want = f"Array({item_type or 'String'})"
    if shown != want:
        raise EcaugError(f"--history {history}: {field_name!r} is {shown}; the item keys ({item!r}) need {want}")


def _check_columns(name: str, path: Path, want: dict[str, str | None]) -> None:
    """A parquet file's columns (read from its footer): present, keys of the declared type."""
    if path.suffix != ".parquet" or not path.is_file():
        return  # a folder or another format: the offline store's read will tell
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception:  # noqa: BLE001 - unreadable: the full check says so through the offline store
        return
    for col, kind in want.items():
        if col not in schema.names:
            raise EcaugError(f"--events {name}: its source {path} has no column {col!r} (columns: {', '.join(schema.names)})")
        if kind is None:
            continue
        t = schema.field(col).type
        is_str = pa.types.is_string(t) or pa.types.is_large_string(t)
        if kind == "String" and not is_str:
            raise EcaugError(f"view {name!r}, column {col!r}: keys of type {t} but the twin declares String keys")
        if kind in ("Int64", "Int32") and not pa.types.is_integer(t):
            raise EcaugError(f"view {name!r}, column {col!r}: keys of type {t} but the twin declares {kind}; give the "
                             "Entity its value_type (ValueType.STRING for string keys) and run `feast apply`")


def one_twin(view: str, twins: Sequence[Any]) -> Any:
    """The one twin of ``view`` among ``twins`` (registry specs or Feast views: anything with a
    ``name``); none or several is one line. Shared by this check and ``plugin.find_twin``."""
    if not twins:
        raise EcaugError(f"feature view {view!r} has no synthetic twin in the registry: declare one in a repo file "
                         f"(`synthetic_twins([{view}], entities=[...])`, docs/guide/plugin.md) and run `feast apply`")
    if len(twins) > 1:
        raise EcaugError(f"feature view {view!r} has several twins: {sorted(t.name for t in twins)}")
    return twins[0]


def _twin_of(reg: Registry, view: str) -> Any:
    return one_twin(view, [v for v in reg.views.values() if v.tags.get(TWIN_OF_TAG) == view and _run_sourced(v)])


def _run_sourced(spec: Any) -> bool:
    return spec.batch_source.tags.get(RUN_SOURCE_TAG) == RUN_SOURCE_VALUE


def _key_type(reg: Registry, spec: Any) -> tuple[str, str] | None:
    """``(join key, Feast type name)`` of a one-entity view (its entity column), else None."""
    cols = list(spec.entity_columns)
    if len(cols) != 1:
        return None
    return cols[0].name, KEY_TYPES.get(_type_name(reg, cols[0].value_type), _type_name(reg, cols[0].value_type))


def _check_features(reg: Registry, spec: Any) -> None:
    """Scalars and lists of them (as :func:`ecaug_feast.jobs.repo_keys.check_features`); Map, Struct, Json... refused."""
    for f in spec.features:
        t = _type_name(reg, f.value_type)
        base = t[: -len("_LIST")] if t.endswith("_LIST") else t
        if base not in SCALARS:
            raise EcaugError(f"view {spec.name!r}, field {f.name!r}: type {t} is not supported (scalars "
                             f"{', '.join(sorted(FEAST_NAMES.values()))} and Array of them are; Map, Struct, Json and bytes are not)")


def _check_event_view(reg: Registry, repo: Path, name: str, user: str, user_type: str) -> None:
    if name not in reg.views:
        raise EcaugError(f"--view {name}: no such feature view in {repo}")
    spec = reg.views[name]
    _check_features(reg, spec)
    twin = _twin_of(reg, name)
    key = _key_type(reg, twin)
    if key is not None and key != (user, user_type):
        raise EcaugError(f"--view {name}: keyed by {key[0]!r} ({key[1]}), the events' users by {user!r} ({user_type})")


def _check_view(reg: Registry, repo: Path, entity: str | None, view: str, service: str | None) -> None:
    """As :func:`ecaug_feast.jobs.augment_repo.preflight`, from the registry (the rows are read there)."""
    if view not in reg.views:
        raise EcaugError(f"--view {view}: no such feature view in {repo} (registered: {', '.join(sorted(reg.views))})")
    spec = reg.views[view]
    if _run_sourced(spec):
        raise EcaugError(f"--view {view}: a synthetic view; name the real view it is the twin of")
    if entity is not None and entity not in spec.entities:
        raise EcaugError(f"--entity {entity}: view {view} has entities {list(spec.entities)}")
    _check_features(reg, spec)
    twin = _twin_of(reg, view)
    if service is not None:
        if service not in reg.services:
            raise EcaugError(f"--service {service}: no such feature service in {repo} (registered: {', '.join(sorted(reg.services)) or 'none'})")
        if view not in reg.services[service]:
            raise EcaugError(f"--service {service}: does not serve view {view}")
    key = _key_type(reg, twin)
    if key is not None and key[1] not in KEY_TYPES.values():
        raise EcaugError(f"view {view!r}, join key {key[0]!r}: type {key[1]}; synthetic keys are Int64, Int32 or String")
    real = {c.name: KEY_TYPES.get(_type_name(reg, c.value_type), _type_name(reg, c.value_type)) for c in spec.entity_columns}
    if key is not None and key[0] in real and real[key[0]] != key[1]:
        raise EcaugError(f"view {view!r}, join key {key[0]!r}: the shop's key is {real[key[0]]} but the twin declares "
                         f"{key[1]}; give the Entity value_type=ValueType.{real[key[0]].upper()} (or the key Field "
                         "in the view's schema) and run `feast apply`")
    path = _file_of(spec.batch_source, repo)
    if path is not None and not path.exists():
        raise EcaugError(f"view {view!r}: its source {path} does not exist")
