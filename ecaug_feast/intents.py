"""Intent records: a step that writes the online store says so on disk before it starts.

A materialize, a publish or a refresh's append + materialize runs inside :func:`intent`, which
writes ``<state>/intents/<step>.json`` (write-then-rename: a reader sees the whole record or none)
and removes it only when the step returns. A process killed mid-way (kill -9, power loss) leaves
the record behind, so :func:`pending` tells any later command, and the server's ``/health``, that
the online store may be behind the offline one; ``ecaug repair`` (``jobs/repair.py``) redoes the
step. Stdlib only: the serving app reads this without pulling in Feast.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ecaug_feast.atomic import pid_alive

INTENTS_DIR = "intents"


def intents_dir(state_dir: str | Path) -> Path:
    return Path(state_dir) / INTENTS_DIR


def _path(state_dir: str | Path, step: str) -> Path:
    if not step or "/" in step or step.startswith("."):
        raise ValueError(f"bad intent step name {step!r}")
    return intents_dir(state_dir) / f"{step}.json"


def _write(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}-{os.getpid()}-{secrets.token_hex(3)}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(record, fh, default=str)
        fh.flush()
        os.fsync(fh.fileno())  # the record must be on disk before the step touches Redis
    os.replace(tmp, path)


def record(state_dir: str | Path, step: str, **args: Any) -> dict[str, Any]:
    """Write the intent of ``step`` (replacing any older one of the same step); returns it."""
    rec = {"step": step, "args": args, "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "pid": os.getpid(), "pid_start": _process_start(os.getpid())}
    _write(_path(state_dir, step), rec)
    return rec


def update(state_dir: str | Path, step: str, **args: Any) -> None:
    """Add ``args`` to this process's pending intent of ``step`` (e.g. what an append produced,
    so a repair can finish the step without redoing it)."""
    path = _path(state_dir, step)
    rec = _read(path)
    if rec is None or rec.get("pid") != os.getpid():
        return
    rec["args"] = {**rec.get("args", {}), **args}
    _write(path, rec)


def clear(state_dir: str | Path, step: str, pid: int | None = None) -> bool:
    """Remove the intent of ``step`` (only if written by ``pid`` when given). True if removed."""
    path = _path(state_dir, step)
    if pid is not None:
        rec = _read(path)
        if rec is None or rec.get("pid") != pid:
            return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


@contextlib.contextmanager
def intent(state_dir: str | Path, step: str, nothing_written: tuple[type[BaseException], ...] = (),
           **args: Any) -> Iterator[dict[str, Any]]:
    """Hold an intent record for the ``with`` block: written before, removed on success. An
    exception leaves it for :func:`pending` (as a kill does), unless it is one of
    ``nothing_written``: errors the step raises before it writes anything (refused input)."""
    rec = record(state_dir, step, **args)
    try:
        yield rec
    except nothing_written:
        clear(state_dir, step, pid=os.getpid())
        raise
    clear(state_dir, step, pid=os.getpid())


def _read(path: Path) -> dict[str, Any] | None:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {"step": path.stem, "args": {}, "started_at": None, "pid": None, "corrupt": f"{type(exc).__name__}"}
    if not isinstance(rec, dict):
        return {"step": path.stem, "args": {}, "started_at": None, "pid": None, "corrupt": "not a JSON object"}
    rec.setdefault("step", path.stem)
    rec.setdefault("args", {})
    return rec


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux ``/proc``; None elsewhere): a pid reused by
    another process after a crash does not make the crashed step look running."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _running(rec: dict[str, Any]) -> bool:
    pid = rec.get("pid")
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid() or not pid_alive(pid):
        return False
    start = rec.get("pid_start")
    return start is None or _process_start(pid) in (None, start)


def pending(state_dir: str | Path) -> list[dict[str, Any]]:
    """Every intent on record, oldest first: ``step``, ``args``, ``started_at``, ``pid`` and
    ``running`` (its process still exists: in progress rather than interrupted). Never raises on
    a missing folder or a corrupt record (a corrupt one is listed with ``corrupt``)."""
    d = intents_dir(state_dir)
    try:
        files = sorted(p for p in d.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for p in files:
        rec = _read(p)
        if rec is not None:
            rec["running"] = _running(rec)
            out.append(rec)
    return sorted(out, key=lambda r: str(r.get("started_at") or ""))
