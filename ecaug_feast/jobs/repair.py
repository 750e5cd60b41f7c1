"""The steps that write the online store, each under an intent record, and ``ecaug repair``.

These steps can leave Redis behind the offline store when a process dies mid-way:

* ``materialize`` (:func:`materialize_step`, behind ``ecaug materialize``);
* ``publish`` (:func:`ecaug_feast.synth_store.publish`, behind augment, rollback and refresh);
* ``refresh`` (:func:`append_step`: ``ecaug refresh``'s append of new events + the materialize of
  the appended window);
* ``publish_items`` (:func:`ecaug_feast.item_runs.publish`) and ``refresh_items`` (the item
  vectors of new items, :func:`ecaug_feast.jobs.augment_items.refresh_items`).

A shop's repo keeps its own ``publish`` record (a switch of its twins' active run,
:mod:`ecaug_feast.jobs.repo_runs`) under ``<state>/repos/<feast project>/intents``, repaired by
``ecaug repair --repo`` and by the repo's next switch.

Each writes ``<state>/intents/<step>.json`` first (:mod:`ecaug_feast.intents`) and removes it when
done. :func:`redo_pending` redoes every interrupted step (its process is gone): ``ecaug repair``
calls it, and so does every command that needs the online store (materialize, refresh, augment's
publish, serve) before its own work, so a crash is repaired by the next command rather than
refused. Each redo converges to what a clean run gives: materialize writes the newest row per
entity of its window again; publish deletes other runs' keys and materializes the active run; the
refresh's append skips the events it already appended and its materialize is redone.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from ecaug_feast import feast_io, intents, item_runs, synth_store
from ecaug_feast.errors import DataValidationError, EcaugError
from ecaug_feast.features.append import append_events, read_events
from ecaug_feast.jobs.workspace import Workspace

log = logging.getLogger(__name__)

REAL_VIEWS = ("user_features", "item_features")


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def _time(s: Any) -> datetime | None:
    """A recorded bound; a corrupt one widens the redo to the whole window (more work, never less)."""
    try:
        return None if not s else datetime.fromisoformat(str(s))
    except ValueError:
        return None


def _int(s: Any) -> int:
    try:
        return int(s or 0)
    except (TypeError, ValueError):
        return 0


def materialize_step(ws: Workspace, start: datetime | None = None, end: datetime | None = None,
                     views: Sequence[str] | None = None, incremental: bool = False) -> dict[str, Any]:
    """``feast_io.materialize`` on the workspace's repo under the ``materialize`` intent."""
    # an EcaugError (unknown view, no source data) is raised before anything is written
    with ws.online() as url, intents.intent(ws.state_dir, "materialize", (EcaugError,), start=_iso(start), end=_iso(end),
                                            views=list(views) if views else None, incremental=incremental):
        return feast_io.materialize(ws.feast_repo(url), start=start, end=end, views=views or None, incremental=incremental)


def materialize_appended(ws: Workspace, first: str) -> dict[str, Any]:
    """Load the appended rows of the real views into Redis: ``materialize-incremental`` when the
    events are newer than the last materialization, else the window from the first appended event
    (back-filled or replayed events lie before it, and incremental would skip them)."""
    with ws.online() as url:
        repo = ws.feast_repo(url)
        store = feast_io.get_store(repo)
        views = list(REAL_VIEWS)
        ends = [store.get_feature_view(v).most_recent_end_time for v in views]
        t_first = pd.Timestamp(first).to_pydatetime()
        if all(e is not None and (e if e.tzinfo else e.replace(tzinfo=timezone.utc)) <= t_first for e in ends):
            return {**feast_io.materialize(repo, views=views, incremental=True), "mode": "incremental"}
        start = t_first - pd.Timedelta(seconds=1).to_pytimedelta()
        return {**feast_io.materialize(repo, start=start, views=views), "mode": "window"}


def append_step(ws: Workspace, events: str | Path, seed: int = 0, allow_new_users: bool = False,
                skip_late: bool = False, after_append: Callable[[], None] | None = None) -> dict[str, Any]:
    """Append the events of ``events`` to the Feast sources and materialize the appended window,
    under the ``refresh`` intent. Rerun after a crash it converges: events already appended are
    skipped (not appended twice) and the materialize covers the first of them."""
    flags = {"seed": seed, "allow_new_users": allow_new_users, "skip_late": skip_late}
    # refused input (DataValidationError) is raised before the append writes anything
    with intents.intent(ws.state_dir, "refresh", (DataValidationError,), events=str(events), **flags):
        new = read_events(events)
        app = append_events(new, seed=seed, feast_dir=ws.feast_dir, source=str(events),
                            allow_new_users=allow_new_users, skip_late=skip_late)
        first = app.get("first") or app.get("first_already_appended")
        if first:
            intents.update(ws.state_dir, "refresh", first=first, version=app.get("version"))
        out: dict[str, Any] = {"appended": app}
        if after_append is not None:
            after_append()
        if first:
            mat = materialize_appended(ws, first)
            out["materialized_real"] = {"mode": mat["mode"], **{k: v.get("entities_written") for k, v in mat["views"].items()}}
        return out


# ------------------------------------------------------------------ redo
def _redo_materialize(ws: Workspace, args: dict[str, Any]) -> dict[str, Any]:
    return materialize_step(ws, start=_time(args.get("start")), end=_time(args.get("end")),
                            views=args.get("views"), incremental=bool(args.get("incremental")))


def _redo_publish(ws: Workspace, args: dict[str, Any]) -> dict[str, Any]:
    with ws.online() as url:
        repo = args.get("repo")
        # ecaug's own rendered repo is rendered again (Redis may listen elsewhere now)
        if not repo or Path(repo) == feast_io.default_repo_dir(ws.state_dir):
            repo = ws.feast_repo(url)
        return synth_store.publish(None, Path(repo))


def _redo_refresh(ws: Workspace, args: dict[str, Any]) -> dict[str, Any]:
    events = args.get("events")
    if events and Path(events).exists():
        return append_step(ws, events, seed=_int(args.get("seed")), allow_new_users=bool(args.get("allow_new_users")),
                           skip_late=bool(args.get("skip_late")))
    # the events file is gone: whatever was appended is loaded by a full materialize of the real views
    return materialize_step(ws, views=list(REAL_VIEWS))


def _redo_unknown(ws: Workspace, args: dict[str, Any]) -> dict[str, Any]:
    """A corrupt or unknown record: everything the online store holds is loaded again."""
    return {"materialize": materialize_step(ws), "publish": _redo_publish(ws, {})}


def _redo_publish_items(ws: Workspace, args: dict[str, Any]) -> dict[str, Any]:
    with ws.online() as url:
        return item_runs.publish(ws.feast_repo(url), ws.state_dir)


def _redo_refresh_items(ws: Workspace, args: dict[str, Any]) -> dict[str, Any]:
    from ecaug_feast.jobs.augment_items import refresh_items  # torch: only when there is one to redo

    return refresh_items(ws, seed=_int(args.get("seed")), reason="repair")


REDO: dict[str, Callable[[Workspace, dict[str, Any]], dict[str, Any]]] = {
    "materialize": _redo_materialize, "publish": _redo_publish, "refresh": _redo_refresh,
    item_runs.INTENT: _redo_publish_items, "refresh_items": _redo_refresh_items}


def redo_pending(ws: Workspace, skip: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Redo every interrupted step (intent on record, its process gone), oldest first; ``skip``:
    steps the caller is about to redo anyway. Returns one entry per intent: ``step``,
    ``started_at`` and ``redone`` (False: its process still runs, left alone)."""
    done = []
    for rec in intents.pending(ws.state_dir):
        step = str(rec.get("step"))
        entry = {"step": step, "started_at": rec.get("started_at"), "pid": rec.get("pid")}
        if rec.get("running"):
            done.append({**entry, "redone": False, "reason": f"still running (pid {rec.get('pid')})"})
            continue
        if step in skip:
            continue
        log.warning("redoing the %s interrupted at %s (pid %s)", step, rec.get("started_at"), rec.get("pid"))
        redo = REDO.get(step, _redo_unknown) if not rec.get("corrupt") else _redo_unknown
        try:
            redo(ws, dict(rec.get("args") or {}))
        except EcaugError as exc:
            raise EcaugError(f"repairing the interrupted {step} failed: {exc} (the intent stays; run `ecaug repair` again)") from None
        intents.clear(ws.state_dir, step)  # the redo cleared its own record; an unknown one is dropped here
        done.append({**entry, "redone": True})
    return done


def repair(ws: Workspace) -> dict[str, Any]:
    """``ecaug repair``: redo every interrupted step; returns the summary. With a shop's repo
    (``--repo``): complete its interrupted publish (:func:`ecaug_feast.jobs.repo_runs.repair_repo`;
    ecaug's own steps are left to ``ecaug repair`` without ``--repo``)."""
    if ws.repo_dir is not None:
        from ecaug_feast.jobs.repo_runs import repair_repo  # imports Feast: only for a shop's repo

        return repair_repo(ws.repo_dir)
    done = redo_pending(ws)
    return {"repaired": [d for d in done if d.get("redone")], "running": [d for d in done if not d.get("redone")],
            "pending": [r["step"] for r in intents.pending(ws.state_dir)]}
