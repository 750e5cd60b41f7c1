"""Synthetic item runs: the rows of the ``item_features_synth`` view, their lineage, activation,
rollback and publication (the item side's counterpart of :mod:`ecaug_feast.synth_store`).

Layout under ``<state>/item_runs/`` (laid out as the user runs, with the same helpers)::

    <run_id>/                        one run, written to .tmp-<run_id>/ then renamed
        item_features_synth.parquet  item_id (a real item), event_timestamp, item_vector,
                                     model_version, attributes, is_synthetic, run_id,
                                     generator_version (:data:`ecaug_feast.schema.ITEM_SYNTH_SCHEMA`)
        manifest.json                config, metrics, gate, lineage (checkpoint, parent run, ...)
    _empty/                          the empty placeholder (no item run active yet)
    active -> <run_id> | _empty      swapped atomically; the Feast source reads through it
    .lock, .seq                      as the user runs (run numbers, activation, publication)
    published.json                   run id -> the item ids whose rows of this view may be online

Item runs have their own folder and ``active`` link: switching or rolling back the item side
leaves the user runs alone, and the other way round.

The keys are real item ids (an item's Redis hash also holds its ``item_features`` row), so
removing a run's rows deletes only this view's fields from those hashes
(:func:`ecaug_feast.synth_store.delete_online_rows`), never the real view's. Feast's Redis store
keeps the newer of two rows of one key, so :func:`publish` first removes the rows of every other
run that may be online (``published.json`` and the run folders), then materializes the active one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ecaug_feast import feast_io, intents, paths, synth_store
from ecaug_feast import schema as S
from ecaug_feast.atomic import swap_symlink
from ecaug_feast.errors import EcaugError
from ecaug_feast.names import check_name
from ecaug_feast.runs_link import ACTIVE, EMPTY

log = logging.getLogger(__name__)

ITEM_FILE = "item_features_synth.parquet"
VIEW = feast_io.ITEM_SYNTH_VIEW
PUBLISHED_FILE = synth_store.PUBLISHED_FILE
INTENT = "publish_items"  # intent step of :func:`publish` (redone by jobs/repair.py)
RunInfo = synth_store.RunInfo


def root() -> Path:
    """The item runs folder (created)."""
    return synth_store.runs_root(paths.item_runs_dir())


def lock() -> Any:
    """Exclusive lock over item run numbers, activation and publication."""
    return synth_store.runs_lock(root())


def ensure_sources() -> Path:
    """``active`` resolves to a run with the view's file (the empty placeholder at first). Idempotent."""
    base = root()
    empty = base / EMPTY
    if not (empty / ITEM_FILE).exists():
        tmp = base / f".tmp-{EMPTY}-{os.getpid()}"
        tmp.mkdir(parents=True, exist_ok=True)
        pq.write_table(S.ITEM_SYNTH_SCHEMA.empty_table(), tmp / ITEM_FILE)
        (tmp / "manifest.json").write_text(json.dumps({"run_id": EMPTY, "placeholder": True}))
        if empty.exists():
            shutil.rmtree(empty)
        os.replace(tmp, empty)
    link = base / ACTIVE
    if not link.is_symlink() or not (link / ITEM_FILE).exists():
        swap_symlink(link, EMPTY)
    return link


def new_run_id() -> tuple[str, int]:
    """``(run_id, seq)`` reserved under the lock (:func:`ecaug_feast.synth_store.new_run_id`)."""
    return synth_store.new_run_id(root())


def release_run_id(run_id: str) -> None:
    synth_store.release_run_id(run_id, root())


def list_runs() -> list[RunInfo]:
    """Every item run, oldest first (a broken one listed with its reason)."""
    return synth_store.list_runs(root())


def active_run() -> str | None:
    return synth_store.active_run(root())


def load_run(run_id: str) -> RunInfo:
    """A finished item run (the id checked as a name first)."""
    check_name(run_id, "run id")
    runs = {r.run_id: r for r in list_runs()}
    run = runs.get(run_id)
    if run is None:
        raise EcaugError(f"unknown item run {run_id!r} (item runs: {', '.join(runs) or 'none'})")
    if run.broken:
        raise EcaugError(f"{run.path / 'manifest.json'}: {run.broken}; item run {run_id} cannot be read")
    return run


def rows_of(run: RunInfo) -> pd.DataFrame:
    """The view's rows of a run."""
    return pd.read_parquet(run.path / ITEM_FILE)


def write_run(run_id: str, seq: int, rows: pd.DataFrame, manifest: dict[str, Any]) -> RunInfo:
    """Write an item run atomically. ``rows``: ``item_id``, ``item_vector`` (float32 arrays of one
    length), ``model_version``, ``attributes``, ``generator_version``; time, ``is_synthetic`` and
    ``run_id`` are set here. The gate (``manifest["gate"]``) is the caller's."""
    base = root()
    final = base / run_id
    if final.exists():
        raise EcaugError(f"item run {run_id} already exists")
    tmp = base / f".tmp-{run_id}"
    tmp.mkdir(parents=True, exist_ok=True)  # reserved by new_run_id
    try:
        created = datetime.now(timezone.utc)
        df = rows.copy()
        df[S.EVENT_TIMESTAMP] = pd.Timestamp(created).floor("us")
        df[S.IS_SYNTHETIC] = True
        df[S.RUN_ID] = run_id
        df[S.ITEM_ID] = df[S.ITEM_ID].astype(np.int64)
        df[S.ITEM_VECTOR] = [np.asarray(v, np.float32) for v in df[S.ITEM_VECTOR]]
        df[S.ATTRIBUTES] = [[int(a) for a in x] for x in df[S.ATTRIBUTES]]
        tbl = (pa.Table.from_pandas(df[S.ITEM_SYNTH_SCHEMA.names], schema=S.ITEM_SYNTH_SCHEMA, preserve_index=False)
               if len(df) else S.ITEM_SYNTH_SCHEMA.empty_table())
        pq.write_table(tbl, tmp / ITEM_FILE)
        ids = df[S.ITEM_ID].to_numpy(np.int64)
        man = {"run_id": run_id, "seq": seq, "created": created.isoformat(timespec="seconds"), "kind": "items", **manifest,
               "files": {VIEW: ITEM_FILE}, "rows": int(len(df)),
               "item_id_range": [int(ids.min()) if len(ids) else None, int(ids.max()) if len(ids) else None]}
        synth_store.commit_run_dir(tmp, final, man)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_run(run_id)


def _check_activatable(run_id: str) -> RunInfo:
    run = load_run(run_id)
    if run.manifest.get("gate") != "pass":
        raise EcaugError(f"item run {run_id} failed its check ({'; '.join(run.manifest.get('gate_reasons', []))}); it cannot be activated")
    p = run.path / ITEM_FILE
    try:
        have = set(pq.read_schema(p).names)
    except Exception as exc:  # noqa: BLE001 - missing, truncated, not parquet
        raise EcaugError(f"{p}: unreadable run source ({type(exc).__name__}: {str(exc)[:200]}); item run {run_id} cannot be activated") from None
    missing = [c for c in S.ITEM_SYNTH_SCHEMA.names if c not in have]
    if missing:
        raise EcaugError(f"{p}: missing column(s) {', '.join(missing)}; item run {run_id} cannot be activated")
    return run


def _activate_locked(run_id: str) -> str:
    _check_activatable(run_id)
    ensure_sources()
    swap_symlink(root() / ACTIVE, run_id)
    return run_id


def activate(run_id: str) -> str:
    """Point the view at ``run_id`` (checked first). Hold :func:`lock` around ``activate`` and
    :func:`publish` to make both one step."""
    with lock():
        return _activate_locked(run_id)


def rollback(to: str | None = None) -> str | None:
    """Re-point the view at ``to``, else the active run's ``parent_run_id`` (a run a refresh or an
    ingest made for new items), else the passing run before the active one, else the empty
    placeholder. Returns the new active run (None = empty). :func:`publish` brings Redis in line."""
    with lock():
        cur = active_run()
        ensure_sources()
        if to:
            return _activate_locked(to)
        if cur is None:
            raise EcaugError("no item run is active; nothing to roll back")
        passing = [r.run_id for r in list_runs() if r.manifest.get("gate") == "pass"]
        parent = next((r.manifest.get("lineage", {}).get("parent_run_id") for r in list_runs() if r.run_id == cur), None)
        if parent in passing:
            return _activate_locked(parent)
        before = passing[: passing.index(cur)] if cur in passing else passing
        if before:
            return _activate_locked(before[-1])
        swap_symlink(root() / ACTIVE, EMPTY)
        return None


def _published() -> dict[str, list[int]]:
    try:
        data = json.loads((root() / PUBLISHED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    runs = data.get("runs") if isinstance(data, dict) else None
    return {str(k): [int(x) for x in v] for k, v in (runs or {}).items()
            if isinstance(v, list) and all(isinstance(x, int) for x in v)}


def _write_published(runs: dict[str, list[int]]) -> None:
    p = root() / PUBLISHED_FILE
    tmp = p.with_name(f".{PUBLISHED_FILE}-{os.getpid()}")
    tmp.write_text(json.dumps({"runs": runs}))
    os.replace(tmp, p)


def published_fingerprint(state_dir: Path | None = None) -> tuple[Any, ...]:
    """Changes whenever :func:`publish` changed what the online store holds for the view (the
    ``published.json`` record is rewritten by every publish): a cheap trigger for servers to re-read
    the vectors, which they read from the online store."""
    p = (Path(state_dir) / "item_runs" if state_dir else paths.item_runs_dir()) / PUBLISHED_FILE
    try:
        st = p.stat()
    except OSError:
        return (None,)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def publish(repo: Path, state_dir: Path | None = None) -> dict[str, Any]:
    """Bring the online store in line with the *active* item run: remove the view's rows of every
    other run that may be online, then materialize the active run's rows. Under the item runs lock
    and the ``publish_items`` intent (a publish killed mid-way is redone by ``ecaug repair``)."""
    state = Path(state_dir) if state_dir else paths.state_dir()
    with lock(), intents.intent(state, INTENT, repo=str(repo)):
        ensure_sources()
        store = feast_io.get_store(repo)
        try:
            view = store.get_feature_view(VIEW)
        except Exception:  # noqa: BLE001 - not registered yet (a repo applied before the view existed)
            feast_io.apply(repo)
            store = feast_io.get_store(repo)
            view = store.get_feature_view(VIEW)
        cur = active_run()
        out: dict[str, Any] = {"active": cur}
        stale: set[int] = set()
        for rid, ids in _published().items():
            if rid != cur:
                stale.update(ids)
        for run in list_runs():
            if run.run_id != cur and run.manifest.get("gate") == "pass" and not run.broken:
                try:
                    stale.update(int(i) for i in pq.read_table(run.path / ITEM_FILE, columns=[S.ITEM_ID]).column(0).to_pylist())
                except Exception as exc:  # noqa: BLE001 - its recorded ids (published.json) are used
                    log.warning("item run %s: cannot read its item ids (%s)", run.run_id, exc)
        rows = rows_of(load_run(cur)) if cur is not None else None
        keep = set(int(i) for i in rows[S.ITEM_ID]) if rows is not None else set()
        out["removed_keys"] = len(stale - keep)  # items whose row leaves the online store
        # Feast keeps the newer of two rows of a key: the active run's items are cleared too, then written
        stale |= keep
        out["keys_changed"] = synth_store.delete_online_rows(store, [view], [{"int64_val": i} for i in sorted(stale)])
        _write_published({cur: sorted(int(i) for i in rows[S.ITEM_ID])} if rows is not None and len(rows) else {})
        if rows is None or not len(rows):
            out["materialized"] = 0
            return out
        ts = pd.to_datetime(rows[S.EVENT_TIMESTAMP], utc=True)
        mat = feast_io.materialize(repo, start=(ts.min() - pd.Timedelta(seconds=1)).to_pydatetime(),
                                   end=(ts.max() + pd.Timedelta(seconds=1)).to_pydatetime(), views=[VIEW])
        out["materialized"] = mat["views"][VIEW]["entities_written"]
        return out
