"""A shop repo's runs folder (``<runs_dir>`` of its twins, laid out as ecaug's own, see
:mod:`ecaug_feast.synth_store`): publication, rollback, list and show (``ecaug runs ... --repo``).

Switching the ``active`` link brings the online store in line twin by twin: the old run's rows of
a twin are deleted (only keys of that twin's reserved synthetic space: a real key is never
touched), the new run's rows materialized. A twin whose file the two runs share (hard-linked when
a run of another twin was written) is left alone.

A switch runs under the ``publish`` intent record of the shop's repo (:mod:`ecaug_feast.intents`;
the record lives in ``<state>/repos/<feast project>/intents/``, beside the repo's models: ecaug's
own ``<state>/intents`` speak of ecaug's Redis, not the shop's). A switch killed between its steps
(link moved, the old run's rows still online, the new run's not yet loaded) leaves the record: the
next switch of the runs folder also deletes the rows of every run the record names, and ``ecaug
repair --repo`` (:func:`repair_repo`) completes the recorded switch.
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

from ecaug_feast import feast_io, intents, paths, plugin, synth_store
from ecaug_feast.atomic import swap_symlink
from ecaug_feast.errors import EcaugError
from ecaug_feast.jobs.repo_keys import KeySpace, twin_of
from ecaug_feast.jobs.workspace import repo_home
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


INTENT = "publish"  # the intent step of a switch, in the shop repo's own intents folder


def intents_home(store: "FeatureStore") -> Path:
    """The state folder whose ``intents/`` holds the shop repo's publish record."""
    return repo_home(paths.state_dir(), check_name(str(store.project), "Feast project"))


def _interrupted(store: "FeatureStore", root: Path) -> dict[str, Any] | None:
    """The publish record an earlier switch of ``root`` left behind (None: none)."""
    for rec in intents.pending(intents_home(store)):
        if rec.get("step") == INTENT and (rec.get("corrupt") or rec.get("args", {}).get("root") == str(root)):
            return rec
    return None


def _runs_named(rec: dict[str, Any] | None, root: Path) -> list[str]:
    """Runs whose rows an interrupted switch may have left online: those its record names; every
    run of ``root`` when the record cannot be read (more deletes, never a key left behind)."""
    if rec is None:
        return []
    if rec.get("corrupt"):
        return [r.run_id for r in synth_store.list_runs(root)]
    args = rec.get("args", {})
    named = [args.get("previous"), args.get("target"), *(args.get("stale") or [])]
    return [str(r) for r in dict.fromkeys(named) if r]


def switch_active(store: "FeatureStore", root: Path, target: str | None) -> dict[str, Any]:
    """Point ``<root>/active`` at ``target`` (None: the empty placeholder) and bring the online
    store in line for every twin of ``root``. The caller holds the runs lock.

    Under the repo's ``publish`` intent (written before the link moves, removed when every twin
    is in line). Rows of the runs an interrupted switch's record names are deleted too, and that
    record's runs are carried into this one's (``stale``), so a crash of this switch loses none."""
    prev = synth_store.active_run(root)
    stale = [r for r in _runs_named(_interrupted(store, root), root) if r != prev]
    online = [r for r in dict.fromkeys([prev, *stale]) if r]  # runs whose rows may be online
    out: dict[str, Any] = {"previous": prev, "active": target, "removed_keys": 0, "materialized": {}}
    if stale:
        out["interrupted_runs"] = stale
    with intents.intent(intents_home(store), INTENT, repo=str(store.config.repo_path), root=str(root),
                        previous=prev, target=target, stale=stale):
        swap_symlink(root / ACTIVE, target or EMPTY)
        for twin in twins_in(store, root):
            name = source_path(twin, store.config.repo_path).name
            new = root / target / name if target else None
            new = new if new is not None and new.exists() else None
            olds = [p for p in (root / r / name for r in online) if p.exists()]
            same = [p for p in olds if new is not None and os.path.samefile(p, new)]
            if new and olds and len(same) == len(olds):
                continue  # the same rows (a file carried from run to run): already online
            for old in olds:
                if old not in same:
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


def repair_repo(repo: str | Path) -> dict[str, Any]:
    """``ecaug repair --repo``: complete the switch a crash interrupted (its record's target when
    that run is still on disk, else the run active before it, else none), under the runs lock.
    A record whose process still runs is left alone. Summary as :func:`ecaug_feast.jobs.repair.repair`."""
    store = repo_store(repo)
    root = repo_runs_root(store)
    rec = _interrupted(store, root)
    if rec is None:
        return {"repaired": [], "running": [], "pending": []}
    entry = {"step": INTENT, "started_at": rec.get("started_at"), "pid": rec.get("pid")}
    if rec.get("running"):
        return {"repaired": [], "running": [{**entry, "redone": False, "reason": f"still running (pid {rec.get('pid')})"}],
                "pending": [INTENT]}
    with synth_store.runs_lock(root):
        rec = _interrupted(store, root)  # read again under the lock: a switch may have ended meanwhile
        if rec is None:
            return {"repaired": [], "running": [], "pending": []}
        args = {} if rec.get("corrupt") else rec.get("args", {})
        runs = {r.run_id for r in synth_store.list_runs(root)}
        if "target" not in args:  # an unreadable record: the active run stays, every other run's rows go
            target = synth_store.active_run(root)
        elif args["target"] is None:  # it was switching to no run
            target = None
        else:  # the recorded target; if that folder went, the run active before the switch
            target = next((str(r) for r in (args["target"], args.get("previous")) if r and str(r) in runs), None)
        out = switch_active(store, root, target)
    pending = [r["step"] for r in intents.pending(intents_home(store))]
    return {"repaired": [{**entry, "redone": True, **out}], "running": [], "pending": pending}


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
