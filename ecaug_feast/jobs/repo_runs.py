"""A shop repo's runs folder (``<runs_dir>`` of its twins, laid out as ecaug's own, see
:mod:`ecaug_feast.synth_store`): publication, rollback, list and show (``ecaug runs ... --repo``).

Switching the ``active`` link brings the online store in line twin by twin: the old run's rows of
a twin are deleted (only keys of that twin's reserved synthetic space: a real key is never
touched), the new run's rows materialized. A twin whose file the two runs share (hard-linked when
a run of another twin was written) is left alone.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.parquet as pq
from feast import FeatureView

from ecaug_feast import feast_io, plugin, synth_store
from ecaug_feast.atomic import swap_symlink
from ecaug_feast.errors import EcaugError
from ecaug_feast.jobs.repo_keys import KeySpace, twin_of
from ecaug_feast.names import check_name
from ecaug_feast.plugin import runs_root_of, source_path
from ecaug_feast.runs_link import ACTIVE, EMPTY

if TYPE_CHECKING:
    from feast import FeatureStore


def repo_store(repo: str | Path) -> "FeatureStore":
    """The Feast store of a shop's repo (one line when it is not one)."""
    path = Path(repo).expanduser().resolve()
    if not (path / "feature_store.yaml").exists():
        raise EcaugError(f"{path}: not a Feast repo (no feature_store.yaml)")
    return feast_io.get_store(path)


def twins_in(store: "FeatureStore", root: Path) -> list[FeatureView]:
    """The registered twins reading from the runs folder ``root``."""
    repo = store.config.repo_path
    return [v for v in store.list_feature_views() if plugin.is_run_sourced(v) and runs_root_of(v, repo) == root]


def repo_runs_root(store: "FeatureStore") -> Path:
    """The one runs folder of a repo's twins."""
    repo = store.config.repo_path
    roots = {runs_root_of(v, repo) for v in store.list_feature_views() if plugin.is_run_sourced(v)}
    if not roots:
        raise EcaugError(f"{repo}: no synthetic twin is registered (declare one with synthetic_twins and run `feast apply`)")
    if len(roots) > 1:
        raise EcaugError(f"{repo}: twins read from several runs folders ({', '.join(sorted(map(str, roots)))}); use one runs_dir")
    return roots.pop()


def keys_of(path: Path, twin: FeatureView, view: FeatureView | None = None) -> list[dict[str, Any]]:
    """The synthetic keys of a run file of ``twin``, as Feast ``Value`` fields (real keys dropped)."""
    space = KeySpace.of(view or twin, twin)
    keys = pd.unique(pq.read_table(path, columns=[space.column]).column(space.column).to_pandas())
    return [space.value(k) for k, syn in zip(keys, space.synthetic(keys)) if syn]


def remove_twin_keys(store: "FeatureStore", twin: FeatureView, keys: Any) -> int:
    """Remove ``twin``'s online rows of ``keys`` that lie in its synthetic key space (a real key
    passed along is skipped). Returns the number of keys changed."""
    space = KeySpace.of(twin, twin)
    keys = pd.unique(pd.Series(list(keys), dtype=object))
    return synth_store.delete_online_rows(store, [twin], [space.value(k) for k, s in zip(keys, space.synthetic(keys)) if s])


def _materialize(store: "FeatureStore", twin: FeatureView, path: Path) -> int:
    """Materialize ``twin`` (reading the active run) over its file's time range; its key count."""
    df = pd.read_parquet(path, columns=[twin.batch_source.timestamp_field, twin.entity_columns[0].name])
    if not len(df):
        return 0
    ts = pd.to_datetime(df.iloc[:, 0], utc=True)
    with contextlib.redirect_stdout(io.StringIO()), plugin.in_repo(store):  # stdout is for --json
        store.materialize(start_date=(ts.min() - pd.Timedelta(seconds=1)).to_pydatetime(),
                          end_date=(ts.max() + pd.Timedelta(seconds=1)).to_pydatetime(), feature_views=[twin.name])
    return int(df.iloc[:, 1].nunique())


def switch_active(store: "FeatureStore", root: Path, target: str | None) -> dict[str, Any]:
    """Point ``<root>/active`` at ``target`` (None: the empty placeholder) and bring the online
    store in line for every twin of ``root``. The caller holds the runs lock."""
    prev = synth_store.active_run(root)
    swap_symlink(root / ACTIVE, target or EMPTY)
    out: dict[str, Any] = {"previous": prev, "active": target, "removed_keys": 0, "materialized": {}}
    for twin in twins_in(store, root):
        name = source_path(twin, store.config.repo_path).name
        old, new = (root / prev / name if prev else None), (root / target / name if target else None)
        old = old if old is not None and old.exists() else None
        new = new if new is not None and new.exists() else None
        if old and new and os.path.samefile(old, new):
            continue  # the same rows (a file carried from run to run): already online
        if old:
            out["removed_keys"] += synth_store.delete_online_rows(store, [twin], keys_of(old, twin))
        if new:
            out["materialized"][twin.name] = _materialize(store, twin, new)
    return out


def publish_run(store: "FeatureStore", root: Path, run_id: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Activate a gate-passing run of ``root`` and bring the online store in line (under the lock)."""
    if manifest.get("gate") != "pass":
        raise EcaugError(f"run {run_id} failed its quality gate ({'; '.join(manifest.get('gate_reasons', []))}); it cannot be activated")
    with synth_store.runs_lock(root):
        return switch_active(store, root, run_id)


def list_repo_runs(repo: str | Path) -> dict[str, Any]:
    """``ecaug runs list --repo``: the repo's runs, oldest first, and the active one."""
    root = repo_runs_root(repo_store(repo))
    runs = [r.summary() | {"twin": r.manifest.get("lineage", {}).get("twin")} for r in synth_store.list_runs(root)]
    return {"runs_dir": str(root), "runs": runs, "active": synth_store.active_run(root)}


def show_repo_run(repo: str | Path, run_id: str) -> dict[str, Any]:
    """``ecaug runs show ID --repo``: one run's manifest."""
    check_name(run_id, "run id")
    root = repo_runs_root(repo_store(repo))
    runs = {r.run_id: r for r in synth_store.list_runs(root)}
    if run_id not in runs:
        raise EcaugError(f"unknown run {run_id!r} in {root} (runs: {', '.join(runs) or 'none'})")
    run = runs[run_id]
    return {**run.manifest, "active": run.active, "path": str(run.path)}


def rollback_repo(repo: str | Path, to: str | None = None) -> dict[str, Any]:
    """``ecaug runs rollback --repo``: activate ``to`` (a gate-passing run), else the gate-passing
    run before the active one, else none (the empty placeholder); the online store follows."""
    store = repo_store(repo)
    root = repo_runs_root(store)
    with synth_store.runs_lock(root):
        passing = [r.run_id for r in synth_store.list_runs(root) if r.manifest.get("gate") == "pass"]
        if to is not None:
            check_name(to, "--to")
            if to not in passing:
                raise EcaugError(f"--to {to}: not a gate-passing run of {root} (passing: {', '.join(passing) or 'none'})")
            target: str | None = to
        else:
            cur = synth_store.active_run(root)
            if cur is None:
                raise EcaugError(f"{root}: no synthetic run is active; nothing to roll back")
            before = passing[: passing.index(cur)] if cur in passing else passing
            target = before[-1] if before else None
        out = switch_active(store, root, target)
    return out | {"runs_dir": str(root), "twins": [twin_of(t) for t in twins_in(store, root)]}
