"""``ecaug drift`` and ``ecaug refresh`` as functions (the jobs behind the CLI).

* :func:`drift_job`: recent real training examples from the offline store against the rows the
  active run was fitted on (its manifest's ``lineage.fit_window``), scored by
  :func:`ecaug_feast.drift.compare`; a report (markdown, JSON, PNG plots) in
  ``<state>/drift/<time>/``.
* the append of new events and the materialize of the appended window are one step under an
  intent record (:func:`ecaug_feast.jobs.repair.append_step`), redone after a crash.
* :func:`refresh_job`: append (optional; new items in the events get their generated item
  vectors written and materialized: :func:`ecaug_feast.jobs.augment_items.refresh_items`), drift
  check, then a new run warm-started from the active run's generator, gated, compared with the
  active run on the quick study, activated only if both pass; ``parent_run_id`` in its lineage.
  Any failure before the switch leaves the active run (and Redis) as it was; a failure while
  publishing switches back to the parent and re-publishes it.

The offline store is duckdb over the parquet sources in ``<state>/feast/``; the windows are read
from those files directly, joined on (user, event time): the feature builder writes one
``user_features`` row per training event time, so this equals Feast's point-in-time join (same
argument as :func:`ecaug_feast.synth.pipeline.examples_from_parquet`).
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ecaug_feast import feast_io, paths, synth_store
from ecaug_feast.drift import DriftResult, DriftThresholds, compare, limit_of
from ecaug_feast.errors import DataValidationError, EcaugError
from ecaug_feast.features.append import checked_feast_dir, store_events
from ecaug_feast.jobs import repair
from ecaug_feast.jobs.runs import materialized
from ecaug_feast.jobs.workspace import Workspace
from ecaug_feast.schema import USER_SCALAR_COLUMNS

log = logging.getLogger(__name__)

DRIFT_EXIT = 3  # threshold crossed (2 is a usage/input error)
SCALARS = USER_SCALAR_COLUMNS


# ------------------------------------------------------------------ config and windows
def load_thresholds(config: str | Path | None = None, state_dir: Path | None = None) -> tuple[DriftThresholds, str | None]:
    """Thresholds from ``config`` (must exist), else ``<state>/drift.yaml`` if present, else defaults."""
    import yaml

    path = Path(config) if config else (state_dir or paths.state_dir()) / "drift.yaml"
    if not path.exists():
        if config:
            raise DataValidationError(path, None, "drift config not found")
        return DriftThresholds(), None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataValidationError(path, None, f"not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is not None and not isinstance(data, dict):
        raise DataValidationError(path, None, "must be a mapping of threshold names to values")
    return DriftThresholds.from_mapping(data, path), str(path)


def parse_window(text: str) -> pd.Timedelta:
    """``30d``, ``2w``, ``12h`` -> a Timedelta."""
    m = re.fullmatch(r"\s*(\d+)\s*([hdw])\s*", str(text))
    if not m or int(m.group(1)) == 0:
        raise DataValidationError(None, "--window", f"expected <n>h, <n>d or <n>w (e.g. 30d), got {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    return pd.Timedelta(hours=n) if unit == "h" else pd.Timedelta(days=n * (7 if unit == "w" else 1))


def parse_since(text: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        ts = None
    if ts is None or ts is pd.NaT:
        raise DataValidationError(None, "--since", f"unparseable date {text!r} (use YYYY-MM-DD or ISO-8601)")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def window_examples(events: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None,
                    max_rows: int, seed: int, feast_dir: Path | None = None) -> pd.DataFrame:
    """Training examples with ``start < event_timestamp <= end`` (subsampled to ``max_rows``) and
    their ``user_features`` at that time."""
    ts = events["event_timestamp"]
    m = np.ones(len(events), bool)
    if start is not None:
        m &= (ts > start).to_numpy()
    if end is not None:
        m &= (ts <= end).to_numpy()
    ent = events[m]
    if len(ent) > max_rows:
        rng = np.random.default_rng(seed)
        ent = ent.iloc[np.sort(rng.choice(len(ent), max_rows, replace=False))]
    uf = feast_io.source_rows(feast_io.source_file(checked_feast_dir(feast_dir), feast_io.USER_VIEW),
                              ["user_id", "event_timestamp"] + SCALARS)  # timestamps UTC, as ent's
    uf = uf[uf["user_id"].isin(ent["user_id"].unique())]  # the window's users only
    return ent.merge(uf, on=["user_id", "event_timestamp"], how="left").reset_index(drop=True)


def _active_parent() -> Any:
    from ecaug_feast import synth_store

    rid = synth_store.active_run()
    if rid is None:
        raise EcaugError("no synthetic run is active: run `ecaug augment` first (drift compares with the active run's fit data)")
    return synth_store.load_run(rid)


def _fit_window(run: Any, events: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp]:
    fw = run.manifest.get("lineage", {}).get("fit_window") or {}
    if fw.get("start") and fw.get("end"):
        return pd.Timestamp(fw["start"]), pd.Timestamp(fw["end"])
    # a run written before fit windows were recorded: it saw the store as it was when created
    created = pd.Timestamp(run.manifest.get("created") or events["event_timestamp"].max())
    end = min(events["event_timestamp"].max(), created if created.tzinfo else created.tz_localize("UTC"))
    return events["event_timestamp"].min(), end


def _generator_items(run: Any) -> np.ndarray | None:
    """Item ids the run's generator can emit (its encoder's ``item_id`` categories)."""
    try:
        info = json.loads((run.path / "model" / "gan.json").read_text())
        for col in info["transformer"]["columns"]:
            if col.get("name") == "item_id" and col.get("categories"):
                return np.asarray(col["categories"], np.int64)
    except (OSError, KeyError, TypeError, ValueError, json.JSONDecodeError):
        pass
    return None


# ------------------------------------------------------------------ drift
def drift_job(ws: Workspace, since: str | None = None, window: str | None = None, config: str | Path | None = None,
              max_rows: int = 20_000, write_report: bool = True) -> dict[str, Any]:
    """Compare recent rows with the active run's fit rows; returns the ``--json`` summary.

    Recent window: ``--since DATE`` (events after it), ``--window 30d`` (the last 30 days up to
    the newest event in the store), default: events after the active run's fit window. The
    reference is the fit window minus the recent window."""
    if since and window:
        raise DataValidationError(None, "--since", "give --since or --window, not both")
    th, config_path = load_thresholds(config, ws.state_dir)
    run = _active_parent()
    feast_dir = ws.feast_dir
    events = store_events(feast_dir)
    fit_start, fit_end = _fit_window(run, events)
    newest = events["event_timestamp"].max()
    if since:
        rec_start = parse_since(since)
    elif window:
        rec_start = newest - parse_window(window)
    else:
        rec_start = fit_end
    ref_end = min(fit_end, rec_start)
    recent = window_examples(events, rec_start, None, max_rows, th.seed, feast_dir)
    reference = window_examples(events, fit_start - pd.Timedelta(microseconds=1), ref_end, max_rows, th.seed + 1, feast_dir)
    out: dict[str, Any] = {"active_run": run.run_id, "thresholds": th.to_json(), "config": config_path,
                           "windows": {"reference": [str(fit_start), str(ref_end)], "recent": [str(rec_start), str(newest)]},
                           "rows": {"reference": int(len(reference)), "recent": int(len(recent))}}
    if len(recent) < th.min_rows or len(reference) < th.min_rows:
        # nothing (or too little) new to judge: not drift, and said so
        out.update(drifted=False, scores={}, excess={}, crossed=[], report=None,
                   reason=f"too few rows (recent {len(recent)}, reference {len(reference)}; min_rows {th.min_rows})")
        return out
    res = compare(reference, recent, th, vocabulary=_generator_items(run))
    out.update(drifted=res.drifted, scores=res.scores, excess=res.excess, null=res.null, crossed=res.crossed, reason=None)
    out["report"] = str(write_drift_report(res, th, reference, recent, out, ws.state_dir / "drift")) if write_report else None
    return out


def write_drift_report(res: DriftResult, th: DriftThresholds, reference: pd.DataFrame, recent: pd.DataFrame,
                       summary: dict[str, Any], root: Path | None = None, plots: bool = True) -> Path:
    """``<state>/drift/<time>/``: report.md, drift.json, plots/scores.png, plots/features.png,
    plots/items.png (without ``plots``: the report and the JSON only, no matplotlib: a refresh's
    check). Written to a temp folder and renamed."""
    import os
    import shutil

    base = Path(root) if root else paths.state_dir() / "drift"
    base.mkdir(parents=True, exist_ok=True)
    name = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{os.getpid()}"
    tmp, final = base / f".tmp-{name}", base / name
    (tmp / "plots" if plots else tmp).mkdir(parents=True)
    try:
        if plots:
            _drift_plots(res, th, reference, recent, tmp / "plots")
        lines = _drift_lines(res, th, summary, plots)
        (tmp / "report.md").write_text("\n".join(lines), encoding="utf-8")
        (tmp / "drift.json").write_text(json.dumps({**summary, "report": str(final)}, indent=1, default=str))
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _drift_plots(res: DriftResult, th: DriftThresholds, reference: pd.DataFrame, recent: pd.DataFrame, out: Path) -> None:
    """scores.png, features.png, items.png of a drift report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in res.excess if n != "c2st_auc"]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1.5))
    vals = [res.excess[n] for n in names]
    lims = [limit_of(n, th) for n in names]
    ax.barh(names, vals, color=["tab:red" if n in res.crossed else "tab:blue" for n in names])
    for i, lim in enumerate(lims):
        if lim is not None:
            ax.plot([lim, lim], [i - 0.4, i + 0.4], "k-")
    ax.set_xlabel("excess over the permutation null (black: threshold)")
    ax.set_title(f"drift scores (C2ST AUC {res.scores.get('c2st_auc', float('nan')):.3f}, limit {th.c2st_auc})")
    fig.tight_layout()
    fig.savefig(out / "scores.png", dpi=90)
    plt.close(fig)

    feats = [c for c in th.features if c in reference.columns]
    if feats:
        fig, axes = plt.subplots(1, len(feats), figsize=(4 * len(feats), 3), squeeze=False)
        for ax, c in zip(axes[0], feats):
            a, b = reference[c].astype(float).dropna(), recent[c].astype(float).dropna()
            bins = np.unique(np.quantile(np.concatenate([a, b]), np.linspace(0, 1, 31)))
            if len(bins) < 2:
                bins = 10
            ax.hist(a, bins=bins, alpha=0.5, density=True, label="reference (fit)")
            ax.hist(b, bins=bins, alpha=0.5, density=True, label="recent")
            ax.set_title(c, fontsize=9)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "features.png", dpi=90)
        plt.close(fig)

    if "item_id" in reference.columns:
        pr = reference["item_id"].value_counts(normalize=True)
        rr = recent["item_id"].value_counts(normalize=True)
        top = pr.index[: th.top_k]
        fig, ax = plt.subplots(figsize=(8, 3))
        x = np.arange(len(top))
        ax.bar(x - 0.2, pr.reindex(top).fillna(0).to_numpy(), 0.4, label="reference (fit)")
        ax.bar(x + 0.2, rr.reindex(top).fillna(0).to_numpy(), 0.4, label="recent")
        ax.set_title(f"share of rows of the reference's top {len(top)} items")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "items.png", dpi=90)
        plt.close(fig)


def _drift_lines(res: DriftResult, th: DriftThresholds, summary: dict[str, Any], plots: bool) -> list[str]:
    """report.md of a drift report."""
    lines = [f"# Drift report ({'DRIFT' if res.drifted else 'no drift'})", "",
             f"- active run: `{summary.get('active_run')}`",
             f"- reference (fit window): {summary['windows']['reference'][0]} .. {summary['windows']['reference'][1]}, {res.rows['reference']} rows",
             f"- recent: {summary['windows']['recent'][0]} .. {summary['windows']['recent'][1]}, {res.rows['recent']} rows",
             f"- crossed: {', '.join(res.crossed) or 'none'}", "",
             "| score | observed | permutation null | excess | threshold | crossed |", "|---|---|---|---|---|---|"]
    for n, v in res.scores.items():
        lim = th.c2st_auc if n == "c2st_auc" else limit_of(n, th)
        lines.append(f"| {n} | {v} | {res.null.get(n, '')} | {res.excess.get(n, '')} | "
                     f"{'' if lim is None else lim} | {'**yes**' if n in res.crossed else ''} |")
    lines += ["", "Thresholds apply to the excess over the permutation null (C2ST: to the AUC).", ""]
    lines += (["![scores](plots/scores.png)", "", "![features](plots/features.png)", "", "![items](plots/items.png)", ""]
              if plots else ["(no plots: `ecaug drift` draws them)", ""])
    return lines


# ------------------------------------------------------------------ quick study
QUICK_COLS = [*USER_SCALAR_COLUMNS, "item_pop"]
MIN_QUICK_ROWS = 20  # fewer synthetic examples than this cannot be compared (TSTR is not fitted)


def run_examples(run: Any) -> pd.DataFrame:
    """A run's synthetic training examples: its interactions joined with its user features."""
    inter = run.interactions()[["user_id", "item_id", "label"]]
    users = run.user_features()[["user_id"] + SCALARS]
    return inter.merge(users, on="user_id", how="inner")


def quick_study(new_run: Any, old_run: Any, recent: pd.DataFrame, reference: pd.DataFrame,
                tolerance: float = 0.02, seed: int = 0) -> dict[str, Any]:
    """The refresh's quick study (seconds, no two-tower training): for each run,

    * ``tstr_auc``: train on synthetic, test on real: a gradient-boosted classifier fitted on the
      run's labelled synthetic examples predicts the labels of the recent real examples (ROC AUC);
    * ``c2st_auc``: how well a classifier tells the run's rows from the recent real rows.

    ``item_pop`` = the item's count among the reference rows (same map for all). The new run passes
    when it is not worse than the active run by more than ``tolerance`` on both."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    from ecaug_feast.quality.metrics import c2st_auc
    from ecaug_feast.threads import single_thread

    pop = reference["item_id"].value_counts()

    def prep(df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(item_pop=df["item_id"].map(pop).fillna(0).to_numpy(float))

    real = prep(recent).dropna(subset=SCALARS)
    res: dict[str, Any] = {"recent_rows": int(len(real)), "tolerance": tolerance}
    for tag, run in (("new", new_run), ("old", old_run)):
        syn = prep(run_examples(run))
        r: dict[str, Any] = {"run_id": run.run_id, "rows": int(len(syn))}
        if len(syn) >= MIN_QUICK_ROWS and syn["label"].nunique() == 2 and real["label"].nunique() == 2:
            clf = HistGradientBoostingClassifier(max_iter=100, random_state=seed)
            with single_thread():
                clf.fit(syn[QUICK_COLS].to_numpy(float), syn["label"].to_numpy())
                r["tstr_auc"] = round(float(roc_auc_score(real["label"], clf.predict_proba(real[QUICK_COLS].to_numpy(float))[:, 1])), 4)
        else:
            r["tstr_auc"] = float("nan")
        r["c2st_auc"] = round(c2st_auc(real[QUICK_COLS], syn[QUICK_COLS], max_rows=3000, seed=seed), 4)
        res[tag] = r
    n, o = res["new"], res["old"]

    def no_worse(new: float, old: float, better_high: bool) -> bool:
        if old != old:  # the active run has no figure: nothing to compare with
            return True
        if new != new:  # the new run has none where the active run has one: it is not comparable
            return False
        return new >= old - tolerance if better_high else new <= old + tolerance

    ok_rows = n["rows"] >= MIN_QUICK_ROWS
    ok_tstr = no_worse(n["tstr_auc"], o["tstr_auc"], True)
    ok_c2st = no_worse(n["c2st_auc"], o["c2st_auc"], False)
    res["passed"] = bool(ok_rows and ok_tstr and ok_c2st)
    res["reasons"] = ([] if ok_rows else [f"new run has {n['rows']} examples (< {MIN_QUICK_ROWS})"]) + \
                     ([] if ok_tstr else [f"TSTR AUC {n['tstr_auc']} < active {o['tstr_auc']} - {tolerance}"]) + \
                     ([] if ok_c2st else [f"C2ST AUC vs recent {n['c2st_auc']} > active {o['c2st_auc']} + {tolerance}"])
    return res


# ------------------------------------------------------------------ refresh
def refresh_job(ws: Workspace, force: bool = False, events: str | Path | None = None, rows: int | None = None, steps: int = 500,
                seed: int = 0, max_c2st: float | None = None, config: str | Path | None = None,
                tolerance: float = 0.02, augment: Callable[..., dict[str, Any]] | None = None,
                hooks: dict[str, Callable[[], None]] | None = None, allow_new_users: bool = False,
                skip_late: bool = False) -> dict[str, Any]:
    """``ecaug refresh``; returns the ``--json`` summary (``run_id``, ``parent_run_id``,
    ``activated``, ``seconds`` and the steps' details).

    ``augment``: the run builder (default :func:`ecaug_feast.jobs.augment.augment_run`); it gets
    the workspace, ``config`` (an ``AugmentConfig`` whose ``gan.warm_start`` names the parent's saved generator),
    ``publish=False`` and ``lineage_extra``; another generator plugs in here. ``hooks``: called by
    name at ``after_append``, ``after_fit``, ``before_publish`` (tests inject failures there).
    ``allow_new_users``: events of users the store does not know are appended as new users (else
    refused); ``skip_late``: events at or before the store's last event are skipped (else refused)."""
    t0 = time.perf_counter()
    feast_dir = ws.feast_dir
    hook = (lambda name: (hooks or {}).get(name, lambda: None)())
    parent = _active_parent()
    out: dict[str, Any] = {"run_id": None, "parent_run_id": parent.run_id, "activated": False}
    # an interrupted materialize/publish/refresh is redone first, so a rerun after a crash converges
    repaired = repair.redo_pending(ws)
    if repaired:
        out["repaired"] = repaired
    if events is not None:
        out.update(repair.append_step(ws, events, seed=seed, allow_new_users=allow_new_users, skip_late=skip_late,
                                      after_append=lambda: hook("after_append")))
        # new items in the events: their generated vectors written and materialized now, whatever
        # the drift verdict (serving ranks them from the next request on)
        from ecaug_feast.jobs.augment_items import refresh_items

        out["items"] = refresh_items(ws, seed=seed, reason="refresh")
    drift = drift_job(ws, config=config)
    out["drift"] = {k: drift.get(k) for k in ("drifted", "crossed", "scores", "report", "reason")}
    if not (force or drift["drifted"]):
        out.update(reason="no drift over the thresholds (use --force to refresh anyway)", seconds=round(time.perf_counter() - t0, 2))
        return out

    if augment is None:  # here, not at the top: the generators pull in torch, which `ecaug drift` never needs
        from ecaug_feast.jobs.augment import augment_run as augment
    pcfg = parent.manifest.get("config", {})
    cfg = _refresh_config(parent, steps, max_c2st, seed)
    n_rows = rows or int(parent.manifest.get("metrics", {}).get("rows_accepted") or 10_000)
    res = augment(ws, rows=n_rows, seed=seed, config=cfg, publish=False,
                  segment=pcfg.get("segment"),
                  lineage_extra={"parent_run_id": parent.run_id, "refresh": {
                      "drift_crossed": drift.get("crossed"), "forced": force, "drift_report": drift.get("report"),
                      "appended_version": (out.get("appended") or {}).get("version")}})
    out["run_id"] = res["run_id"]
    out["gate"] = res["gate"]
    hook("after_fit")
    new_run = synth_store.load_run(res["run_id"])
    out["warm_started"] = bool(new_run.manifest.get("lineage", {}).get("warm_started"))

    th, _ = load_thresholds(config, ws.state_dir)
    ev = store_events(feast_dir)
    fit_start, fit_end = _fit_window(parent, ev)
    recent = window_examples(ev, fit_end, None, 5000, seed, feast_dir)
    if len(recent) < 50:  # nothing appended since the parent was fitted: judge on the newest rows
        recent = window_examples(ev, ev["event_timestamp"].max() - pd.Timedelta(days=30), None, 5000, seed, feast_dir)
    reference = window_examples(ev, None, fit_end, 20_000, seed + 1, feast_dir)
    study = quick_study(new_run, parent, recent, reference, tolerance, seed)
    out["quick_study"] = study
    synth_store._update_manifest(new_run.run_id, quick_study=study)
    if res["gate"] != "pass" or not study["passed"]:
        out.update(reason="; ".join((res.get("gate_reasons") or []) + study["reasons"]) or "gate failed",
                   seconds=round(time.perf_counter() - t0, 2))
        return out

    pub = _switch(ws, parent.run_id, new_run.run_id, lambda: hook("before_publish"))
    if pub is None:
        out.update(reason=f"the active run changed to {synth_store.active_run()} during the refresh; not switched",
                   seconds=round(time.perf_counter() - t0, 2))
        return out
    out.update(activated=True, materialized=materialized(pub), seconds=round(time.perf_counter() - t0, 2))
    return out


def _refresh_config(parent: Any, steps: int, max_c2st: float | None, seed: int) -> Any:
    """The parent run's settings, its saved generator as the warm start, ``steps`` GAN steps."""
    from ecaug_feast.quality.gates import GateConfig  # the GAN's modules (torch): see refresh_job
    from ecaug_feast.synth.gan import GANConfig
    from ecaug_feast.synth.pipeline import AugmentConfig

    pcfg = parent.manifest.get("config", {})
    gan_kw = {k: v for k, v in (pcfg.get("gan") or {}).items() if k in GANConfig.__dataclass_fields__}
    for k in ("gen_hidden", "dis_hidden"):
        if k in gan_kw:
            gan_kw[k] = tuple(gan_kw[k])
    model = parent.path / "model"
    gan_kw.update(max_steps=steps, warm_start=str(model) if (model / "generator.pt").exists() else None)
    gates_kw = dict(pcfg.get("gates") or {})
    if max_c2st is not None:
        gates_kw["max_c2st_auc"] = max_c2st
    return AugmentConfig(gan=GANConfig(**gan_kw), gates=GateConfig(**{**gates_kw, "seed": seed}),
                         **{k: pcfg[k] for k in ("k_recent", "k_attr", "max_fit_rows", "holdout_rows", "oversample") if k in pcfg})


def _switch(ws: Workspace, parent_id: str, new_id: str, before_publish: Callable[[], None]) -> dict[str, Any] | None:
    """Activate ``new_id`` and publish it, as one exclusive step, if ``parent_id`` is still the
    active run (else None: nothing switched); a failed publish goes back to the parent, online
    store included, before the error goes up."""
    with ws.online() as url, synth_store.runs_lock():
        repo = ws.feast_repo(url)
        if synth_store.active_run() != parent_id:
            return None
        synth_store.activate(new_id)
        try:
            before_publish()
            return synth_store.publish(new_id, repo)
        except BaseException:
            synth_store.activate(parent_id)
            synth_store.publish(parent_id, repo)
            raise
