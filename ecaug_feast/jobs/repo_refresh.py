"""``ecaug drift --repo R --events SRC`` and ``ecaug refresh --repo R --events SRC``: drift and
refresh of a shop's sequence runs (issue 31 item 5), the runs ``ecaug augment --repo R --events SRC``
(:mod:`ecaug_feast.jobs.augment_events`) writes.

* :func:`repo_drift`: the shop's events after the active run's fit window (its manifest's
  ``lineage.fit_window``: the events it was built on) against the events of that window, as
  training examples (user, item, the user's event count so far, days since the user's previous
  event), scored by :func:`ecaug_feast.drift.compare` (permutation nulls, C2ST, item JS, new items
  against the generator's vocabulary); a report under ``<state>/repos/<project>/drift/<time>/``.
* :func:`repo_refresh`: the drift check, then (drifted, or ``force``) a new run whose generator
  and discriminator continue from the active run's (``<run>/model/``: weights and the shop's item
  key of each vocabulary entry, so items are matched by key when the catalogue changed; new items
  start fresh), a short fit (``epochs`` MLE epochs, ``steps`` adversarial steps), the labeler's
  cluster count taken from the active run, the teacher (the shop's trained recommender) reused
  as it is; the same gates as a full build. Published only when its gate passes; a failed gate or
  a failure while publishing leaves the active run active (a failed publish switches back).

The registry is read as it is (no ``feast apply``): the active run was built from it. New events
arrive in the shop's own source; nothing is appended by ecaug.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ecaug_feast import paths, synth_store
from ecaug_feast import schema as S
from ecaug_feast.drift import compare
from ecaug_feast.errors import EcaugError
from ecaug_feast.jobs.augment_events import (MODEL_DIR, EventsInput, Teacher, build_run, feature_functions, prepare,
                                             repo_teacher)

__all__ = ["repo_drift", "repo_refresh", "repo_teacher", "REFRESH_STEPS"]
from ecaug_feast.jobs.augment_seq import seq_config
from ecaug_feast.jobs.refresh import load_thresholds, parse_since, parse_window, write_drift_report
from ecaug_feast.jobs.repo_runs import switch_active

log = logging.getLogger(__name__)

REFRESH_EPOCHS = 1   # MLE epochs of a warm refresh (a full build: up to 20, early-stopped)
REFRESH_STEPS = 10   # adversarial steps of a warm refresh (a full build: 60)


# ------------------------------------------------------------------ the active run
def active_parent(inp: EventsInput) -> Any:
    """The active run of the event twin's runs folder (one line when there is none or it was
    built from another source)."""
    rid = synth_store.active_run(inp.root)
    if rid is None:
        raise EcaugError(f"{inp.root}: no synthetic run is active; run `ecaug augment --repo {inp.repo} --events {inp.events}` first")
    runs = {r.run_id: r for r in synth_store.list_runs(inp.root)}
    run = runs.get(rid)
    if run is None:
        raise EcaugError(f"{inp.root}: the active run {rid} has no readable manifest")
    built_on = (run.manifest.get("lineage") or {}).get("events")
    if built_on != inp.events:
        raise EcaugError(f"--events {inp.events}: the active run {rid} of {inp.root} was built from {built_on!r}")
    return run


# ------------------------------------------------------------------ drift
def event_examples(ev: pd.DataFrame, user: str, item: str, ts: str) -> pd.DataFrame:
    """One row per event, in the columns :func:`ecaug_feast.drift.compare` reads: ``user_id`` /
    ``item_id`` (codes of the keys, the same over every window cut from these rows),
    ``event_timestamp``, ``n_interactions`` (the user's events so far, this one included) and
    ``days_since_last`` (since the user's previous event; -1 on a first event)."""
    df = pd.DataFrame({"u": ev[user].to_numpy(), "i": ev[item].to_numpy(), S.EVENT_TIMESTAMP: pd.to_datetime(ev[ts], utc=True)})
    df = df.sort_values(["u", S.EVENT_TIMESTAMP], kind="stable").reset_index(drop=True) if len(df) else df
    out = pd.DataFrame({S.USER_ID: pd.factorize(df["u"], sort=True)[0].astype(np.int64),
                        S.ITEM_ID: pd.factorize(df["i"], sort=True)[0].astype(np.int64) + 1,
                        S.EVENT_TIMESTAMP: df[S.EVENT_TIMESTAMP], "_key": df["i"].to_numpy()})
    out[S.N_INTERACTIONS] = out.groupby(S.USER_ID).cumcount().astype(float) + 1
    gap = out.groupby(S.USER_ID)[S.EVENT_TIMESTAMP].diff().dt.total_seconds() / 86400.0
    out[S.DAYS_SINCE_LAST] = gap.fillna(-1.0).astype(float)
    return out


def _window(rows: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None, max_rows: int, seed: int,
            include_start: bool = False) -> pd.DataFrame:
    t = rows[S.EVENT_TIMESTAMP]
    m = np.ones(len(rows), bool)
    if start is not None:
        m &= ((t >= start) if include_start else (t > start)).to_numpy()
    if end is not None:
        m &= (t <= end).to_numpy()
    out = rows[m]
    if len(out) > max_rows:
        out = out.iloc[np.sort(np.random.default_rng(seed).choice(len(out), max_rows, replace=False))]
    return out.reset_index(drop=True)


def _vocabulary(run: Any, rows: pd.DataFrame) -> np.ndarray | None:
    """The codes (as in ``rows``) of the items the run's generator can emit (its saved item keys)."""
    from recommender.item_keys import ItemKeys

    try:
        keys = ItemKeys.load(run.path / MODEL_DIR)
    except (OSError, ValueError, KeyError):
        keys = None
    if keys is None:
        return None
    code = dict(zip(map(keys._norm, rows["_key"]), rows[S.ITEM_ID]))
    return np.array([code[k] for k in keys.keys if k in code], np.int64)


def drift_dir(inp: EventsInput) -> Path:
    """``<state>/repos/<feast project>/drift``: a shop's reports live in ecaug's state, never in its repo."""
    return paths.state_dir() / "repos" / str(inp.store.config.project) / "drift"


def repo_drift(repo: str | Path, events: str, since: str | None = None, window: str | None = None,
               config: str | Path | None = None, max_rows: int = 20_000, write_report: bool = True,
               inp: EventsInput | None = None, plots: bool = True) -> dict[str, Any]:
    """``ecaug drift --repo R --events SRC``: recent events against the active run's fit window.
    Recent: ``since`` (events after it), ``window`` (the last ``30d`` up to the newest event), by
    default the events after the fit window. Reference: the fit window up to the recent start.
    ``plots``: the report's figures (a refresh's check writes the report and JSON only)."""
    if since and window:
        raise EcaugError("give --since or --window, not both")
    inp = inp or prepare(repo, events, apply=False)
    th, config_path = load_thresholds(config)
    run = active_parent(inp)
    fw = (run.manifest.get("lineage") or {}).get("fit_window") or {}
    if not (fw.get("start") and fw.get("end")):
        raise EcaugError(f"run {run.run_id}: its manifest records no fit window (a run written before drift "
                         f"was supported); run `ecaug augment --repo {inp.repo} --events {events}` once")
    rows = event_examples(inp.ev, inp.space.column, inp.item, inp.source.timestamp_field)
    fit_start, fit_end = pd.Timestamp(fw["start"]), pd.Timestamp(fw["end"])
    newest = rows[S.EVENT_TIMESTAMP].max() if len(rows) else fit_end
    rec_start = parse_since(since) if since else (newest - parse_window(window)) if window else fit_end
    ref_end = min(fit_end, rec_start)
    recent = _window(rows, rec_start, None, max_rows, th.seed)
    reference = _window(rows, fit_start, ref_end, max_rows, th.seed + 1, include_start=True)
    out: dict[str, Any] = {"repo": str(inp.repo), "events": events, "active_run": run.run_id, "thresholds": th.to_json(),
                           "config": config_path, "windows": {"reference": [str(fit_start), str(ref_end)],
                                                              "recent": [str(rec_start), str(newest)]},
                           "rows": {"reference": int(len(reference)), "recent": int(len(recent))}}
    if len(recent) < th.min_rows or len(reference) < th.min_rows:
        out.update(drifted=False, scores={}, excess={}, crossed=[], report=None,
                   reason=f"too few rows (recent {len(recent)}, reference {len(reference)}; min_rows {th.min_rows})")
        return out
    res = compare(reference.drop(columns="_key"), recent.drop(columns="_key"), th, vocabulary=_vocabulary(run, rows))
    out.update(drifted=res.drifted, scores=res.scores, excess=res.excess, null=res.null, crossed=res.crossed, reason=None)
    out["report"] = (str(write_drift_report(res, th, reference, recent, out, drift_dir(inp), plots=plots)) if write_report else None)
    return out


# ------------------------------------------------------------------ refresh
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def warm_start_of(run: Any) -> tuple[Callable[[np.ndarray], Any], dict[str, Any]]:
    """``(item_keys -> WarmStart, lineage)`` from the run's ``model/`` folder: its generator and
    discriminator weights, its vocabulary matched by the shop's item keys to the new numbering
    (``item_keys[i]``: the key of item id ``i``; -1 for a key the new events lack)."""
    import torch

    from ecaug_feast.synth.seq_gan import WarmStart
    from recommender.item_keys import ItemKeys

    d = run.path / MODEL_DIR
    need = [d / "generator.pt", d / "discriminator.pt", d / "item_keys.json"]
    missing = [p.name for p in need if not p.exists()]
    if missing:
        raise EcaugError(f"run {run.run_id}: no saved generator to warm-start from ({', '.join(missing)} missing in {d}); "
                         "run `ecaug augment --repo ... --events ...` (a full build) once")
    try:
        keys = ItemKeys.load(d)
        gen = torch.load(d / "generator.pt", map_location="cpu", weights_only=True)
        disc = torch.load(d / "discriminator.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file: one line
        raise EcaugError(f"run {run.run_id}: its saved generator in {d} cannot be read ({type(exc).__name__}: {exc})") from None
    lineage = {"run": run.run_id, "generator_sha256": _sha256(need[0]), "discriminator_sha256": _sha256(need[1]),
               "vocabulary": keys.num_items}

    def warm_for(item_keys: np.ndarray) -> Any:
        now = ItemKeys(tuple(item_keys[1:]), keys.dtype)  # item id i <-> item_keys[i] (0: none)
        ids = now.index_of(keys.keys)
        return WarmStart(gen, np.where(ids > 0, ids, -1), disc, source=run.run_id)

    return warm_for, lineage


def refresh_config(run: Any, seed: int, epochs: int, steps: int, max_c2st: float | None) -> Any:
    """The active run's settings with a short fit: ``epochs`` MLE epochs (patience 1), ``steps``
    adversarial steps, the labeler's cluster count fixed to the run's (no silhouette search)."""
    saved = dict((run.manifest.get("config") or {}).get("seq_config") or {})
    if not saved:
        raise EcaugError(f"run {run.run_id}: its manifest records no generator settings; run a full `ecaug augment --repo` once")
    saved.pop("seed", None)
    for part in ("gan", "labeler"):
        saved[part] = {k: v for k, v in (saved.get(part) or {}).items() if k != "seed"}
    cfg = seq_config(saved, seed=seed, source=f"run {run.run_id}")
    cfg.gan.mle_epochs, cfg.gan.patience, cfg.gan.adv_steps = int(epochs), 1, int(steps)
    cfg.labeler.k_range = tuple(cfg.labeler.k_range)
    k = (run.manifest.get("metrics") or {}).get("labeler_k")
    if k:
        cfg.labeler.k_range = (int(k), int(k))
    if max_c2st is not None:
        cfg.max_c2st_auc = max_c2st
    return cfg


def repo_refresh(repo: str | Path, events: str, force: bool = False, seed: int = 0, config: str | Path | None = None,
                 epochs: int = REFRESH_EPOCHS, steps: int = REFRESH_STEPS, max_c2st: float | None = None,
                 teacher_for: Callable[[np.ndarray], Teacher | None] | None = None,
                 teacher_choice: str | None = None,
                 hooks: dict[str, Callable[[], None]] | None = None) -> dict[str, Any]:
    """``ecaug refresh --repo R --events SRC``; returns the ``--json`` summary (``run_id``,
    ``parent_run_id``, ``warm_started``, ``gate``, ``activated``, ``seconds``, the drift check).
    ``hooks``: called by name at ``before_publish`` (tests inject a failure there)."""
    t0 = time.perf_counter()
    hook = (lambda name: (hooks or {}).get(name, lambda: None)())
    inp = prepare(repo, events, apply=False)
    parent = active_parent(inp)
    views = tuple((parent.manifest.get("lineage") or {}).get("views") or ())
    if views:  # the parent's views follow the new behaviour (their functions checked before any fitting)
        inp.fns, inp.views = feature_functions(inp.store, views, inp.space, inp.item, inp.twin.timestamp_field), views
    out: dict[str, Any] = {"repo": str(inp.repo), "events": events, "run_id": None, "parent_run_id": parent.run_id,
                           "activated": False, "warm_started": False}
    drift = repo_drift(repo, events, config=config, inp=inp, plots=False)  # figures: `ecaug drift --repo`
    out["drift"] = {k: drift.get(k) for k in ("drifted", "crossed", "scores", "report", "reason", "rows")}
    if not (force or drift["drifted"]):
        out.update(reason="no drift over the thresholds (use --force to refresh anyway)", seconds=round(time.perf_counter() - t0, 2))
        return out
    cfg = refresh_config(parent, seed, epochs, steps, max_c2st)
    if teacher_for is not None and not (parent.manifest.get("lineage") or {}).get("teacher"):
        # its generator was fitted to draw without one (earlier items, whole users): keep it so
        teacher_for, teacher_choice = None, (f"the active run {parent.run_id} was built without a teacher; "
                                             "a full `ecaug augment --repo` uses the trained recommender")
    warm_for, warm = warm_start_of(parent)
    lineage = {"parent_run_id": parent.run_id, "warm_start": warm,
               "refresh": {"drift_crossed": drift.get("crossed"), "forced": force, "drift_report": drift.get("report"),
                           "epochs": int(epochs), "steps": int(steps)}}
    if teacher_choice is not None:
        lineage["teacher_choice"] = teacher_choice
    res = build_run(inp, cfg, publish=False, warm_for=warm_for, lineage_extra=lineage, teacher_for=teacher_for)
    out.update(run_id=res["run_id"], run_dir=res["run_dir"], gate=res["gate"], gate_reasons=res["gate_reasons"],
               warm_started=True, warm_start=warm, histories_accepted=res["histories_accepted"],
               c2st_auc_sequences=res["c2st_auc_sequences"], fit_seconds=res.get("fit_seconds"), teacher=res.get("teacher"))
    if res["gate"] != "pass":
        out.update(reason="; ".join(res["gate_reasons"]) or "gate failed", seconds=round(time.perf_counter() - t0, 2))
        return out
    pub = _switch(inp, parent.run_id, res["run_id"], lambda: hook("before_publish"))
    if pub is None:
        out.update(reason=f"the active run changed during the refresh; {res['run_id']} not activated",
                   seconds=round(time.perf_counter() - t0, 2))
        return out
    out.update(activated=True, previous_run=pub["previous"], materialized=pub["materialized"],
               seconds=round(time.perf_counter() - t0, 2))
    return out


def _switch(inp: EventsInput, parent_id: str, new_id: str, before_publish: Callable[[], None]) -> dict[str, Any] | None:
    """Activate ``new_id`` if ``parent_id`` is still the active run (else None); a failure while
    publishing switches back to the parent, online store included, before the error goes up."""
    with synth_store.runs_lock(inp.root):
        if synth_store.active_run(inp.root) != parent_id:
            return None
        try:
            before_publish()
            return switch_active(inp.store, inp.root, new_id)
        except BaseException:
            if synth_store.active_run(inp.root) != parent_id:
                switch_active(inp.store, inp.root, parent_id)
            raise
