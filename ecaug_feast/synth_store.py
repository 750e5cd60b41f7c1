"""Synthetic runs on disk, their lineage, and the "active run" the Feast synthetic views read.

Layout under ``<state>/runs/``::

    <run_id>/                       one augmentation run, written to .tmp-<run_id>/ then renamed
        interactions_synth.parquet  user_id (>= SYNTHETIC_USER_ID_BASE), item_id (real), event_timestamp,
                                    label, confidence, labeler, is_synthetic, run_id, generator_version
        user_features_synth.parquet same columns as user_features + is_synthetic, run_id, generator_version
                                    (column GAN: one row per interaction; sequence GAN, lineage
                                    generator "sequence": the feature builder's rows of each
                                    generated history, its serving row's recent_items = the history)
        manifest.json               config, metrics, gate, lineage (source data, parent run, versions)
        report.md, plots/*.png      quality report
        model/                      GAN weights (state dict) + encoder metadata (JSON/npz, no pickles)
    _empty/                         empty sources with the right schema (no run active yet)
    active -> <run_id> | _empty     symlink swapped atomically; the Feast FileSources point through it
    .lock                           flock: run numbers, activation and publication are exclusive
    .seq                            the last run number handed out (reserved before a run is written)
    published.json                  the synthetic user-id range of every run whose keys may be online

Only a run whose gate passed can become active. Synthetic users of run number ``seq`` get ids
``SYNTHETIC_USER_ID_BASE + seq * 2**24 + i`` so runs never share a user id either: run numbers are
handed out under the lock and recorded at once, so concurrent ``ecaug augment`` runs get distinct
numbers (and disjoint id ranges) although neither has written its run folder yet.

Redis holds the synthetic keys of the active run only: :func:`publish` (under the lock) deletes
the online keys of every other run, then materializes the active one. The runs whose keys may be
online are recorded with their id ranges in ``published.json`` before their keys are written, so
keys of a run whose folder was deleted are removed too. A run folder whose manifest is missing or
corrupt is listed as broken (with the reason), never hidden. Run ids are checked as
names (:mod:`ecaug_feast.names`) before they are joined to a path.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ecaug_feast import feast_io, intents, paths
from ecaug_feast import schema as S
from ecaug_feast.atomic import exclusive_lock, pid_alive, swap_symlink
from ecaug_feast.errors import EcaugError
from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE
from ecaug_feast.names import check_name, owned_child
from ecaug_feast.runs_link import ACTIVE, EMPTY, active_run_in

log = logging.getLogger(__name__)

RUN_ID_SPACE = 1 << 24
USER_FILE = "user_features_synth.parquet"
INTER_FILE = "interactions_synth.parquet"
VIEWS = ("user_features_synth", "interactions_synth")
LINEAGE_COLUMNS = S.LINEAGE_COLUMNS
LOCK_FILE = ".lock"
SEQ_FILE = ".seq"
OWNER_FILE = ".owner-pid"
PUBLISHED_FILE = "published.json"  # synthetic user-id ranges that may have keys in the online store


def runs_root(root: Path | None = None) -> Path:
    """The runs folder (created): ``root`` (a shop repo's runs, :mod:`ecaug_feast.plugin`), else ecaug's."""
    p = Path(root) if root is not None else paths.runs_dir()
    p.mkdir(parents=True, exist_ok=True)
    return p


def active_source(name: str) -> Path:
    """Path the Feast FileSource of a synthetic view reads (through the ``active`` link)."""
    return runs_root() / ACTIVE / name


def _empty_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    return S.USER_SYNTH_SCHEMA.empty_table().to_pandas(), S.INTERACTIONS_SYNTH_SCHEMA.empty_table().to_pandas()


def _write_parquet(df: pd.DataFrame, path: Path, schema: pa.Schema) -> None:
    """``df`` with the run file's declared schema (:mod:`ecaug_feast.schema`); columns in its order."""
    tbl = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    pq.write_table(tbl, path)


def ensure_sources() -> Path:
    """Make sure ``active`` resolves to a run with both parquet files (the empty placeholder at
    first), so ``feast apply`` can validate the synthetic views' sources. Idempotent."""
    root = runs_root()
    empty = root / EMPTY
    if not (empty / USER_FILE).exists() or not (empty / INTER_FILE).exists():
        tmp = root / f".tmp-{EMPTY}-{os.getpid()}"
        tmp.mkdir(parents=True, exist_ok=True)
        u, i = _empty_frames()
        _write_parquet(u, tmp / USER_FILE, S.USER_SYNTH_SCHEMA)
        _write_parquet(i, tmp / INTER_FILE, S.INTERACTIONS_SYNTH_SCHEMA)
        (tmp / "manifest.json").write_text(json.dumps({"run_id": EMPTY, "placeholder": True}))
        if empty.exists():
            shutil.rmtree(empty)
        os.replace(tmp, empty)
    link = root / ACTIVE
    if not link.is_symlink() or not (link / USER_FILE).exists():
        _point_active(EMPTY)
    return link


def _point_active(target: str) -> None:
    swap_symlink(runs_root() / ACTIVE, target)  # relative link: the state dir can move


def runs_lock(root: Path | None = None) -> Any:
    """Exclusive lock over run numbering, activation and publication (``<runs>/.lock``)."""
    return exclusive_lock(runs_root(root) / LOCK_FILE)


@dataclass
class RunInfo:
    run_id: str
    path: Path
    manifest: dict[str, Any]
    active: bool
    broken: str | None = None  # why the run cannot be read (missing or corrupt manifest)

    def user_features(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / USER_FILE)

    def interactions(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / INTER_FILE)

    def summary(self) -> dict[str, Any]:
        m = self.manifest.get("metrics", {})
        return {"run_id": self.run_id, "active": self.active, "created": self.manifest.get("created"),
                "gate": self.manifest.get("gate"), "rows_accepted": m.get("rows_accepted"),
                "c2st_auc": m.get("c2st_auc"), "column_shapes": m.get("column_shapes"),
                "pair_trends": m.get("pair_trends"), "segment": self.manifest.get("config", {}).get("segment"),
                "dataset": self.manifest.get("lineage", {}).get("dataset"), "path": str(self.path),
                "broken": self.broken}


def active_run(root: Path | None = None) -> str | None:
    """Id of the run the synthetic views point at (None: none, or the empty placeholder)."""
    return active_run_in(runs_root(root))


def _read_manifest(d: Path) -> tuple[dict[str, Any], str | None]:
    """A run folder's manifest, or ``({}, reason)`` when it is missing or corrupt."""
    mf = d / "manifest.json"
    try:
        man = json.loads(mf.read_text())
    except FileNotFoundError:
        return {}, "manifest.json missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, f"corrupt manifest.json ({type(exc).__name__}: {exc})"
    if not isinstance(man, dict):
        return {}, "corrupt manifest.json (not a JSON object)"
    return man, None


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """All run folders, oldest first; one whose manifest is missing or corrupt is listed with
    ``broken`` set (it has no gate, so it is never activated or published)."""
    act = active_run(root)
    root = runs_root(root)
    out = []
    for d in root.iterdir():
        if d.is_dir() and not d.is_symlink() and not d.name.startswith((".", "_")):
            man, broken = _read_manifest(d)
            out.append(RunInfo(d.name, d, man, d.name == act, broken))
    return sorted(out, key=lambda r: (r.manifest.get("seq", 0), r.manifest.get("created", ""), r.run_id))


def load_run(run_id: str) -> RunInfo:
    """A finished run (``run_id`` is checked as a name first: no separators, no ``..``)."""
    check_name(run_id, "run id")
    d = owned_child(runs_root(), run_id, "run id")
    mf = d / "manifest.json"
    if not mf.exists():
        known = ", ".join(r.run_id for r in list_runs()) or "none"
        raise EcaugError(f"unknown run {run_id!r} (runs: {known})")
    try:
        man = json.loads(mf.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EcaugError(f"{mf}: corrupt run manifest ({type(exc).__name__}: {exc})") from None
    if not isinstance(man, dict):
        raise EcaugError(f"{mf}: corrupt run manifest (not a JSON object)")
    return RunInfo(run_id, d, man, run_id == active_run())


def new_run_id(root: Path | None = None) -> tuple[str, int]:
    """``(run_id, seq)``: a sortable id and a run number no other run has or will get.

    Taken under the runs lock and recorded in ``.seq`` at once, so two augmentations started
    together get distinct numbers (and so disjoint synthetic user-id ranges) and distinct ids.
    """
    base, root = root, runs_root(root)
    with runs_lock(base):
        seq_file = root / SEQ_FILE
        try:
            last = int(seq_file.read_text().strip() or 0)
        except (OSError, ValueError):
            last = 0
        seq = max([last] + [r.manifest.get("seq", 0) for r in list_runs(base)]) + 1
        while True:
            rid = f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
            if not (root / rid).exists() and not (root / f".tmp-{rid}").exists():
                break
        tmp = root / f".seq-{os.getpid()}"
        tmp.write_text(f"{seq}\n")
        os.replace(tmp, seq_file)
        _remove_dead_reservations(root)
        reserved = root / f".tmp-{rid}"  # reserves the id until write_run fills and renames it
        reserved.mkdir()
        (reserved / OWNER_FILE).write_text(f"{os.getpid()}\n")
    return rid, seq


def release_run_id(run_id: str, root: Path | None = None) -> None:
    """Drop the reservation of an id whose run will not be written (augmentation failed)."""
    check_name(run_id, "run id")  # so ".tmp-<run_id>" is a plain child of the runs folder
    shutil.rmtree(runs_root(root) / f".tmp-{run_id}", ignore_errors=True)


def _remove_dead_reservations(root: Path) -> None:
    """Delete ``.tmp-<run_id>`` folders whose writer died (kill -9) without writing the run."""
    for d in root.glob(".tmp-*"):
        try:
            pid = int((d / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue  # not a reservation (or an older writer's folder): leave it
        if not pid_alive(pid):
            shutil.rmtree(d, ignore_errors=True)


def user_id_start(seq: int) -> int:
    return SYNTHETIC_USER_ID_BASE + seq * RUN_ID_SPACE


def commit_run_dir(tmp: Path, final: Path, manifest: dict[str, Any]) -> None:
    """The last step of writing a run: its manifest, the reservation mark dropped, one rename of
    the temp folder into place (the run appears whole or not at all)."""
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=_json_default))
    (tmp / OWNER_FILE).unlink(missing_ok=True)
    os.replace(tmp, final)


def write_run(run_id: str, seq: int, accepted: pd.DataFrame, manifest: dict[str, Any],
              extra_writer: Any = None, interactions: pd.DataFrame | None = None) -> RunInfo:
    """Write a run directory atomically (temp dir, then rename). ``extra_writer(tmp_dir)`` adds the
    report, plots and model before the rename.

    ``accepted``: one row per synthetic example (user features + item, label, confidence and
    lineage), both files are cut from it (the column GAN). ``interactions`` given (the sequence
    GAN: several events per user, several feature rows per user): ``accepted`` holds the
    ``user_features_synth`` rows and ``interactions`` the events (item, label, confidence,
    lineage), each written as is."""
    root = runs_root()
    final = root / run_id
    if final.exists():
        raise EcaugError(f"run {run_id} already exists")
    tmp = root / f".tmp-{run_id}"
    tmp.mkdir(parents=True, exist_ok=True)  # reserved by new_run_id
    try:
        users = accepted[S.USER_SYNTH_SCHEMA.names].copy()
        src = accepted if interactions is None else interactions
        inter = src[["user_id", "item_id", "event_timestamp", "label", "confidence"]].copy()
        inter["labeler"] = manifest.get("labeler_name", "ecaug-cluster-hgb/1")
        for c in LINEAGE_COLUMNS:
            inter[c] = src[c].to_numpy()
        users["run_id"] = run_id
        inter["run_id"] = run_id
        for df in (users, inter):
            df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True).astype("datetime64[us, UTC]")
        users[S.N_INTERACTIONS] = users[S.N_INTERACTIONS].astype("int64")
        for c in S.USER_FLOAT_COLUMNS:
            users[c] = users[c].astype("float32")
        inter["confidence"] = inter["confidence"].astype("float32")
        _write_parquet(users, tmp / USER_FILE, S.USER_SYNTH_SCHEMA)
        _write_parquet(inter, tmp / INTER_FILE, S.INTERACTIONS_SYNTH_SCHEMA)
        man = {"run_id": run_id, "seq": seq, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **manifest}
        man["files"] = {"user_features_synth": USER_FILE, "interactions_synth": INTER_FILE}
        man["user_id_range"] = [int(users["user_id"].min()) if len(users) else None, int(users["user_id"].max()) if len(users) else None]
        if extra_writer is not None:
            extra_writer(tmp)
        commit_run_dir(tmp, final, man)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_run(run_id)


def _check_activatable(run_id: str) -> RunInfo:
    """The run, if it can be activated: known, gate passed, both sources readable with the
    expected columns, every user id synthetic. Raises before anything is switched."""
    run = load_run(run_id)
    if run.manifest.get("gate") != "pass":
        raise EcaugError(f"run {run_id} failed its quality gate ({'; '.join(run.manifest.get('gate_reasons', []))}); it cannot be activated")
    for fname, want in ((USER_FILE, S.USER_SYNTH_SCHEMA.names), (INTER_FILE, S.INTERACTIONS_SYNTH_SCHEMA.names)):
        p = run.path / fname
        try:
            have = set(pq.read_schema(p).names)
        except Exception as exc:  # noqa: BLE001 - missing, truncated, not parquet
            raise EcaugError(f"{p}: unreadable run source ({type(exc).__name__}: {str(exc)[:200]}); run {run_id} cannot be activated") from None
        missing = [c for c in want if c not in have]
        if missing:
            raise EcaugError(f"{p}: missing column(s) {', '.join(missing)}; run {run_id} cannot be activated")
    ids = _run_user_ids(run)
    if len(ids) and ids.min() < SYNTHETIC_USER_ID_BASE:
        raise EcaugError(f"{run.path / USER_FILE}, column 'user_id': ids below {SYNTHETIC_USER_ID_BASE} (real key space); run {run_id} cannot be activated")
    return run


def _run_user_ids(run: RunInfo) -> np.ndarray:
    """Distinct synthetic user ids of a run (both of its sources)."""
    cols = [pq.read_table(run.path / f, columns=["user_id"]).column("user_id").to_numpy() for f in (USER_FILE, INTER_FILE)]
    return np.unique(np.concatenate(cols).astype(np.int64))


def _activate_locked(run_id: str) -> RunInfo:
    _check_activatable(run_id)
    ensure_sources()
    _point_active(run_id)
    _update_manifest(run_id, activated=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return load_run(run_id)


def activate(run_id: str) -> RunInfo:
    """Point the synthetic views at ``run_id`` (its gate must have passed; checked before the
    switch). Exclusive: under the runs lock (hold :func:`runs_lock` around ``activate`` and
    :func:`publish` to make both one step)."""
    with runs_lock():
        return _activate_locked(run_id)


def rollback(to: str | None = None) -> str | None:
    """Re-point the views at ``to``, or at the active run's ``parent_run_id`` (a run made by
    ``ecaug refresh``), else the previous gate-passing run before the active one
    (the empty placeholder when there is none). Returns the new active run id (None = empty).

    The target is checked (known, gate passed, sources readable) before ``active`` moves. The
    online store is brought in line by :func:`publish`."""
    with runs_lock():
        cur = active_run()  # read before ensure_sources, which re-points a link whose run folder is gone
        ensure_sources()
        if to:
            return _activate_locked(to).run_id
        if cur is None:
            raise EcaugError("no synthetic run is active; nothing to roll back")
        ids = [r.run_id for r in list_runs() if r.manifest.get("gate") == "pass"]
        # the active run's folder may be gone (deleted by hand): then the newest passing run
        man, _ = _read_manifest(runs_root() / cur)
        parent = man.get("lineage", {}).get("parent_run_id")
        if parent in ids:  # a refreshed run goes back to the run it was refreshed from
            return _activate_locked(parent).run_id
        before = ids[: ids.index(cur)] if cur in ids else ids
        if before:
            return _activate_locked(before[-1]).run_id
        _point_active(EMPTY)
        return None


def _update_manifest(run_id: str, **kv: Any) -> None:
    p = runs_root() / run_id / "manifest.json"
    man = json.loads(p.read_text())
    man.update(kv)
    tmp = p.with_name(f".manifest-{os.getpid()}.json")
    tmp.write_text(json.dumps(man, indent=1, default=_json_default))
    os.replace(tmp, p)


def publish(run_id: str | None = None, repo_dir: Path | None = None) -> dict[str, Any]:
    """Apply the Feast repo (registers the synthetic views) and bring the online store in line
    with the *active* run: delete every other run's synthetic keys, materialize the active run's
    rows. Real views are not touched: only ``VIEWS`` are materialized and only keys of synthetic
    user ids are deleted. Under the runs lock; ``run_id`` is kept for callers and must be the
    active run (or None)."""
    # the intent record: a publish killed mid-way is redone by `ecaug repair` (jobs/repair.py)
    with runs_lock(), intents.intent(paths.state_dir(), "publish", run_id=run_id, repo=str(repo_dir) if repo_dir else None):
        if run_id is not None and run_id != active_run():
            log.warning("publish(%s): run %s is active now; publishing that one", run_id, active_run())
        ensure_sources()
        repo = Path(repo_dir) if repo_dir else feast_io.render_repo()
        applied = feast_io.apply(repo)
        out: dict[str, Any] = {"feature_views": applied.get("feature_views")}
        cur = active_run()
        out["removed_keys"] = remove_online_keys(feast_io.get_store(repo), keep=cur)
        if cur is None:
            return out
        run = load_run(cur)
        _record_published(run)  # before its keys are written: a crash mid-way leaves them known
        inter = run.interactions()
        if len(inter) == 0:
            return out
        ts = pd.to_datetime(inter["event_timestamp"], utc=True)
        start = (ts.min() - pd.Timedelta(seconds=1)).to_pydatetime()
        end = (ts.max() + pd.Timedelta(seconds=1)).to_pydatetime()
        out["materialize"] = feast_io.materialize(repo, start=start, end=end, views=list(VIEWS))
        return out


def _published() -> dict[str, list[int]]:
    """``published.json``: run id -> [first, last] synthetic user id of runs whose keys may be online."""
    try:
        data = json.loads((runs_root() / PUBLISHED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    runs = data.get("runs") if isinstance(data, dict) else None
    return {str(k): [int(v[0]), int(v[1])] for k, v in (runs or {}).items()
            if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v)}


def _write_published(runs: dict[str, list[int]]) -> None:
    p = runs_root() / PUBLISHED_FILE
    tmp = p.with_name(f".{PUBLISHED_FILE}-{os.getpid()}")
    tmp.write_text(json.dumps({"runs": runs}, indent=1))
    os.replace(tmp, p)


def _record_published(run: RunInfo) -> None:
    """Add ``run``'s synthetic user-id range to ``published.json`` (under the runs lock)."""
    rng = run.manifest.get("user_id_range") or []
    if not (len(rng) == 2 and all(isinstance(x, int) for x in rng)):
        ids = _run_user_ids(run)
        if not len(ids):
            return
        rng = [int(ids.min()), int(ids.max())]
    _write_published({**_published(), run.run_id: [int(rng[0]), int(rng[1])]})


def remove_online_keys(store: Any, keep: str | None) -> int:
    """Delete from the online store the synthetic keys of every run but ``keep``: each
    gate-passing run folder's ids, and each id range in ``published.json`` (a run whose folder
    is gone or whose manifest broke) (:func:`delete_synthetic_keys` over ``VIEWS``). Returns the
    number of keys changed."""
    views = [store.get_feature_view(v) for v in VIEWS]
    changed = 0
    published = _published()
    for run in list_runs():
        if run.run_id == keep or run.manifest.get("gate") != "pass":
            continue
        try:
            ids = _run_user_ids(run)
        except Exception as exc:  # noqa: BLE001 - a broken run: its keys cannot be named from its files
            log.warning("run %s: cannot read its user ids (%s); its recorded id range is used", run.run_id, exc)
            continue
        changed += delete_synthetic_keys(store, views, ids)
        published.pop(run.run_id, None)
    for rid, (lo, hi) in list(published.items()):
        if rid == keep:
            continue
        for start in range(lo, hi + 1, 1 << 20):  # a range of ids, in bounded slices
            changed += delete_synthetic_keys(store, views, np.arange(start, min(hi, start + (1 << 20) - 1) + 1, dtype=np.int64))
        published.pop(rid)
    _write_published({k: v for k, v in _published().items() if k == keep})
    return changed


def delete_synthetic_keys(store: Any, views: list[Any], ids: np.ndarray) -> int:
    """Remove the fields of ``views`` (synthetic views of one int64 entity) from the online hashes
    of ``ids``; ids below the synthetic key space are skipped, so a real key is never touched
    (:func:`delete_online_rows`). Returns the number of keys changed."""
    ids = np.asarray(ids, dtype=np.int64)
    ids = ids[ids >= SYNTHETIC_USER_ID_BASE]  # never a real key
    return delete_online_rows(store, views, [{"int64_val": int(u)} for u in ids])


def delete_online_rows(store: Any, views: list[Any], values: list[dict[str, Any]]) -> int:
    """Remove the fields of ``views`` (views of one entity) from the online hashes of the keys
    whose entity ``Value`` fields are ``values`` (``{"int64_val": 7}``, ``{"string_val": "a"}``;
    the caller has checked every key is synthetic). Keys are computed by Feast's own Redis key
    function. A hash holding only these views is deleted; any other view's fields on it stay.
    Redis only (another online store: logged, 0). Returns the number of keys changed."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    online = store._get_provider().online_store  # the same client and key layout Feast writes with
    if not hasattr(online, "_generate_redis_keys_for_entities"):
        log.warning("online store %s: old synthetic rows of %s are left (removal is implemented for Redis)",
                    type(online).__name__, ", ".join(v.name for v in views))
        return 0
    client = online._get_client(store.config.online_store)
    fields: list[Any] = []
    for fv in views:
        fields += online._generate_hset_keys_for_features(fv)[1]
    synth_ts = {f"_ts:{v.name}".encode() for v in views}
    key = views[0].entity_columns[0].name
    changed = 0
    for lo in range(0, len(values), 5000):
        ekeys = [EntityKey(join_keys=[key], entity_values=[Value(**v)]) for v in values[lo:lo + 5000]]
        keys = online._generate_redis_keys_for_entities(store.config, ekeys)
        with client.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.hkeys(k)
            hkeys = pipe.execute()
        with client.pipeline(transaction=False) as pipe:
            for k, names in zip(keys, hkeys):
                if not names:
                    continue
                ts_fields = {n for n in names if n.startswith(b"_ts:")}
                if ts_fields <= synth_ts:
                    pipe.delete(k)
                else:
                    pipe.hdel(k, *fields)
                changed += 1
            pipe.execute()
    return changed


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if np.isnan(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (pd.Timestamp, datetime)):
        return o.isoformat()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)
