"""Synthetic runs on disk, their lineage, and the "active run" the Feast synthetic views read.

Layout under ``<state>/runs/``::

    <run_id>/                       one augmentation run, written to .tmp-<run_id>/ then renamed
        interactions_synth.parquet  user_id (>= SYNTHETIC_USER_ID_BASE), item_id (real), event_timestamp,
                                    label, confidence, labeler, is_synthetic, run_id, generator_version
        user_features_synth.parquet same columns as user_features + is_synthetic, run_id, generator_version
        manifest.json               config, metrics, gate, lineage (source data, parent run, versions)
        report.md, plots/*.png      quality report
        model/                      GAN weights (state dict) + encoder metadata (JSON/npz, no pickles)
    _empty/                         empty sources with the right schema (no run active yet)
    active -> <run_id> | _empty     symlink swapped atomically; the Feast FileSources point through it

Only a run whose gate passed can become active. Synthetic users of run number ``seq`` get ids
``SYNTHETIC_USER_ID_BASE + seq * 2**24 + i`` so runs never share a user id either.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecaug_feast import paths
from ecaug_feast.errors import EcaugError
from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE

ACTIVE = "active"
EMPTY = "_empty"
RUN_ID_SPACE = 1 << 24
USER_FILE = "user_features_synth.parquet"
INTER_FILE = "interactions_synth.parquet"
VIEWS = ("user_features_synth", "interactions_synth")
LINEAGE_COLUMNS = ["is_synthetic", "run_id", "generator_version"]


def runs_root() -> Path:
    p = paths.runs_dir()
    p.mkdir(parents=True, exist_ok=True)
    return p


def active_source(name: str) -> Path:
    """Path the Feast FileSource of a synthetic view reads (through the ``active`` link)."""
    return runs_root() / ACTIVE / name


def _empty_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    ts = pd.Series([], dtype="datetime64[us, UTC]")
    users = pd.DataFrame({
        "user_id": pd.Series([], dtype="int64"), "event_timestamp": ts,
        "n_interactions": pd.Series([], dtype="int64"), "days_since_last": pd.Series([], dtype="float32"),
        "recent_items": pd.Series([], dtype=object), "top_attributes": pd.Series([], dtype=object),
        "attr_diversity": pd.Series([], dtype="float32"), "mean_item_popularity": pd.Series([], dtype="float32"),
        "is_synthetic": pd.Series([], dtype=bool), "run_id": pd.Series([], dtype=object),
        "generator_version": pd.Series([], dtype=object)})
    inter = pd.DataFrame({
        "user_id": pd.Series([], dtype="int64"), "item_id": pd.Series([], dtype="int64"), "event_timestamp": ts,
        "label": pd.Series([], dtype="int64"), "confidence": pd.Series([], dtype="float32"),
        "labeler": pd.Series([], dtype=object), "is_synthetic": pd.Series([], dtype=bool),
        "run_id": pd.Series([], dtype=object), "generator_version": pd.Series([], dtype=object)})
    return users, inter


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = []
    for c in df.columns:
        if c in ("recent_items", "top_attributes"):
            fields.append(pa.field(c, pa.list_(pa.int64())))
        elif c in ("run_id", "generator_version", "labeler"):
            fields.append(pa.field(c, pa.string()))
        else:
            fields.append(pa.field(c, pa.from_numpy_dtype(df[c].dtype) if not isinstance(df[c].dtype, pd.DatetimeTZDtype) else pa.timestamp("us", tz="UTC")))
    tbl = pa.Table.from_pandas(df, schema=pa.schema(fields), preserve_index=False)
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
        _write_parquet(u, tmp / USER_FILE)
        _write_parquet(i, tmp / INTER_FILE)
        (tmp / "manifest.json").write_text(json.dumps({"run_id": EMPTY, "placeholder": True}))
        if empty.exists():
            shutil.rmtree(empty)
        os.replace(tmp, empty)
    link = root / ACTIVE
    if not link.is_symlink() or not (link / USER_FILE).exists():
        _point_active(EMPTY)
    return link


def _point_active(target: str) -> None:
    root = runs_root()
    tmp = root / f".active-{os.getpid()}-{secrets.token_hex(3)}"
    os.symlink(target, tmp)  # relative link: the state dir can move
    os.replace(tmp, root / ACTIVE)  # atomic swap


@dataclass
class RunInfo:
    run_id: str
    path: Path
    manifest: dict[str, Any]
    active: bool

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
                "dataset": self.manifest.get("lineage", {}).get("dataset"), "path": str(self.path)}


def active_run() -> str | None:
    """Id of the run the synthetic views point at (None: none, or the empty placeholder)."""
    link = runs_root() / ACTIVE
    if not link.is_symlink():
        return None
    target = os.readlink(link)
    name = Path(target).name
    return None if name == EMPTY else name


def list_runs() -> list[RunInfo]:
    """All finished runs, oldest first."""
    root = runs_root()
    act = active_run()
    out = []
    for d in root.iterdir():
        if d.is_dir() and not d.is_symlink() and not d.name.startswith((".", "_")) and (d / "manifest.json").exists():
            try:
                man = json.loads((d / "manifest.json").read_text())
            except json.JSONDecodeError:
                continue
            out.append(RunInfo(d.name, d, man, d.name == act))
    return sorted(out, key=lambda r: (r.manifest.get("seq", 0), r.manifest.get("created", "")))


def load_run(run_id: str) -> RunInfo:
    d = runs_root() / run_id
    if run_id.startswith((".", "_")) or not (d / "manifest.json").exists():
        known = ", ".join(r.run_id for r in list_runs()) or "none"
        raise EcaugError(f"unknown run {run_id!r} (runs: {known})")
    man = json.loads((d / "manifest.json").read_text())
    return RunInfo(run_id, d, man, run_id == active_run())


def new_run_id() -> tuple[str, int]:
    """``(run_id, seq)``: a sortable id and the next run number (for the user-id sub-space)."""
    seq = max((r.manifest.get("seq", 0) for r in list_runs()), default=0) + 1
    rid = f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    return rid, seq


def user_id_start(seq: int) -> int:
    return SYNTHETIC_USER_ID_BASE + seq * RUN_ID_SPACE


def write_run(run_id: str, seq: int, accepted: pd.DataFrame, manifest: dict[str, Any],
              extra_writer: Any = None) -> RunInfo:
    """Write a run directory atomically (temp dir, then rename). ``extra_writer(tmp_dir)`` adds the
    report, plots and model before the rename."""
    root = runs_root()
    final = root / run_id
    if final.exists():
        raise EcaugError(f"run {run_id} already exists")
    tmp = root / f".tmp-{run_id}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        ucols = ["user_id", "event_timestamp", "n_interactions", "days_since_last", "recent_items", "top_attributes",
                 "attr_diversity", "mean_item_popularity"] + LINEAGE_COLUMNS
        users = accepted[ucols].copy()
        inter = accepted[["user_id", "item_id", "event_timestamp", "label", "confidence"]].copy()
        inter["labeler"] = manifest.get("labeler_name", "ecaug-cluster-hgb/1")
        for c in LINEAGE_COLUMNS:
            inter[c] = accepted[c].to_numpy()
        users["run_id"] = run_id
        inter["run_id"] = run_id
        for df in (users, inter):
            df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True).astype("datetime64[us, UTC]")
        users["n_interactions"] = users["n_interactions"].astype("int64")
        for c in ("days_since_last", "attr_diversity", "mean_item_popularity"):
            users[c] = users[c].astype("float32")
        inter["confidence"] = inter["confidence"].astype("float32")
        _write_parquet(users, tmp / USER_FILE)
        _write_parquet(inter, tmp / INTER_FILE)
        man = {"run_id": run_id, "seq": seq, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **manifest}
        man["files"] = {"user_features_synth": USER_FILE, "interactions_synth": INTER_FILE}
        man["user_id_range"] = [int(users["user_id"].min()) if len(users) else None, int(users["user_id"].max()) if len(users) else None]
        if extra_writer is not None:
            extra_writer(tmp)
        (tmp / "manifest.json").write_text(json.dumps(man, indent=1, default=_json_default))
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_run(run_id)


def activate(run_id: str) -> RunInfo:
    """Point the synthetic views at ``run_id`` (its gate must have passed)."""
    run = load_run(run_id)
    if run.manifest.get("gate") != "pass":
        raise EcaugError(f"run {run_id} failed its quality gate ({'; '.join(run.manifest.get('gate_reasons', []))}); it cannot be activated")
    ensure_sources()
    _point_active(run_id)
    _update_manifest(run_id, activated=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return load_run(run_id)


def rollback(to: str | None = None) -> str | None:
    """Re-point the views at ``to``, or at the previous gate-passing run before the active one
    (the empty placeholder when there is none). Returns the new active run id (None = empty)."""
    ensure_sources()
    if to:
        return activate(to).run_id
    cur = active_run()
    passed = [r for r in list_runs() if r.manifest.get("gate") == "pass"]
    if cur is None:
        raise EcaugError("no synthetic run is active; nothing to roll back")
    ids = [r.run_id for r in passed]
    before = ids[: ids.index(cur)] if cur in ids else ids
    if before:
        return activate(before[-1]).run_id
    _point_active(EMPTY)
    return None


def _update_manifest(run_id: str, **kv: Any) -> None:
    p = runs_root() / run_id / "manifest.json"
    man = json.loads(p.read_text())
    man.update(kv)
    tmp = p.with_name(f".manifest-{os.getpid()}.json")
    tmp.write_text(json.dumps(man, indent=1, default=_json_default))
    os.replace(tmp, p)


def publish(run_id: str | None, repo_dir: Path | None = None) -> dict[str, Any]:
    """Apply the Feast repo (registers the synthetic views) and materialize the active run's rows
    into the online store. Real views are not touched: only ``VIEWS`` are materialized, and every
    synthetic key lies in the synthetic id space."""
    from ecaug_feast import feast_io

    ensure_sources()
    repo = Path(repo_dir) if repo_dir else feast_io.render_repo()
    applied = feast_io.apply(repo)
    out: dict[str, Any] = {"feature_views": applied.get("feature_views")}
    if run_id is None:
        return out
    inter = load_run(run_id).interactions()
    if len(inter) == 0:
        return out
    ts = pd.to_datetime(inter["event_timestamp"], utc=True)
    start = (ts.min() - pd.Timedelta(seconds=1)).to_pydatetime()
    end = (ts.max() + pd.Timedelta(seconds=1)).to_pydatetime()
    out["materialize"] = feast_io.materialize(repo, start=start, end=end, views=list(VIEWS))
    return out


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
