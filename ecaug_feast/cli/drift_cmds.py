"""``ecaug drift`` and ``ecaug refresh`` (thin wrappers over :mod:`ecaug_feast.jobs.refresh`).

Exit codes: 0 fine, 2 bad input, 3 ``drift`` found a threshold crossed. With ``--json`` the last
stdout line is one JSON object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ecaug_feast.cli.jsonout import summary_json
from ecaug_feast.errors import EcaugError
from ecaug_feast.jobs.workspace import Workspace
from ecaug_feast.repo_check import check_repo


def drift(
    repo: Optional[str] = typer.Option(None, "--repo", help="A shop's own Feast repo: compare its event source's recent events with the active sequence run's (needs --events)."),
    events: Optional[str] = typer.Option(None, "--events", help="With --repo: the shop's event source the run was built from."),
    since: Optional[str] = typer.Option(None, "--since", help="Recent window: events after this date (YYYY-MM-DD or ISO-8601)."),
    window: Optional[str] = typer.Option(None, "--window", help="Recent window: the last <n>d / <n>w / <n>h up to the newest event in the store."),
    config: Optional[Path] = typer.Option(None, "--config", help="Thresholds YAML (default: <state>/drift.yaml if present, else built-in)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
) -> None:
    """Compare recent real data in the offline store with what the active run was fitted on
    (default recent window: everything after its fit window). Writes <state>/drift/<time>/ and
    exits 3 when a threshold is crossed. With --repo R --events SRC: the shop's events after the
    active run's fit window against that window; the report goes to <state>/repos/<project>/drift/."""
    from ecaug_feast.jobs.refresh import DRIFT_EXIT

    if repo is not None or events is not None:
        if not (repo and events):
            raise EcaugError("--repo and --events go together")
        check_repo(repo, events)
        from ecaug_feast.jobs.repo_refresh import repo_drift

        out = repo_drift(repo, events, since=since, window=window, config=config)
    else:
        from ecaug_feast.jobs.refresh import drift_job

        out = drift_job(Workspace.from_env(), since=since, window=window, config=config)
    js = {"drifted": out["drifted"], "scores": out["scores"], "excess": out["excess"], "crossed": out["crossed"],
          "thresholds": out["thresholds"], "report": out["report"], "rows": out["rows"], "windows": out["windows"],
          "active_run": out["active_run"], "reason": out.get("reason")}
    human = (f"drift: {'YES' if out['drifted'] else 'no'} vs run {out['active_run']} "
             f"(recent {out['rows']['recent']} rows, reference {out['rows']['reference']}); "
             + (f"crossed: {', '.join(out['crossed'])}; " if out["crossed"] else "")
             + (f"C2ST AUC {out['scores']['c2st_auc']:.3f}; " if "c2st_auc" in out["scores"] else "")
             + (out.get("reason") or f"report {out['report']}"))
    typer.echo(summary_json(js) if as_json else human)
    if out["drifted"]:
        raise typer.Exit(DRIFT_EXIT)


def refresh(
    repo: Optional[str] = typer.Option(None, "--repo", help="A shop's own Feast repo: refresh its active sequence run (needs --events naming the event source; its new events are already in that source)."),
    force: bool = typer.Option(False, "--force", help="Re-expand even when no drift threshold is crossed."),
    events: Optional[Path] = typer.Option(None, "--events", help="New events to append first (CSV/parquet file or folder: user_id, item_id, event_timestamp[, label][, attributes: the attribute ids of a new item, which the append adds to the catalogue and gives a generated vector]). With --repo: the shop's event source name."),
    rows: Optional[int] = typer.Option(None, "--rows", min=1, help="Synthetic examples (default: as many as the active run accepted)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Steps of the warm-started fit (default 500 GAN steps; with --repo 10 adversarial steps)."),
    no_teacher: bool = typer.Option(False, "--no-teacher", help="With --repo: no teacher, even when the repo has a trained recommender."),
    seed: int = typer.Option(0, "--seed"),
    max_c2st: Optional[float] = typer.Option(None, "--max-c2st", help="Gate: maximum C2ST AUC (default: the active run's)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Drift thresholds YAML."),
    allow_new_users: bool = typer.Option(False, "--allow-new-users", help="Append events of users the store does not know as new users (default: refused)."),
    skip_late: bool = typer.Option(False, "--skip-late", help="Leave out events at or before the store's last event (default: refused)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
) -> None:
    """Append new events (incrementally), check drift, and when it crossed a threshold (or with
    --force) fit a new run warm-started from the active one, gate it, compare it with the active
    run on the quick study and activate it only if both pass. With --repo R --events SRC: the
    shop's active sequence run, its generator and discriminator warm-started, its gate as a full
    build's; activated only if the gate passes."""
    if repo is not None:
        if events is None:
            raise EcaugError("--repo needs --events (the shop's event source)")
        if rows is not None or allow_new_users or skip_late:
            raise EcaugError("--rows, --allow-new-users and --skip-late apply to ecaug's own repo, not with --repo")
        check_repo(repo, str(events))
        from ecaug_feast.jobs.repo_refresh import REFRESH_STEPS, repo_refresh, repo_teacher

        teacher_for, why = repo_teacher(repo, str(events), no_teacher)
        out = repo_refresh(repo, str(events), force=force, seed=seed, config=config, steps=steps or REFRESH_STEPS,
                           max_c2st=max_c2st, teacher_for=teacher_for, teacher_choice=why)
    else:
        if no_teacher:
            raise EcaugError("--no-teacher applies with --repo")
        from ecaug_feast.jobs.refresh import refresh_job

        out = refresh_job(Workspace.from_env(), force=force, events=events, rows=rows, steps=steps or 500, seed=seed,
                          max_c2st=max_c2st, config=config, allow_new_users=allow_new_users, skip_late=skip_late)
    human = (f"refresh: run {out['run_id'] or '-'} (parent {out['parent_run_id']}), "
             f"{'activated' if out['activated'] else 'not activated'} in {out['seconds']} s"
             + (f": {out['reason']}" if out.get("reason") else ""))
    typer.echo(summary_json(out) if as_json else human)


def register(app: typer.Typer) -> None:
    app.command("drift")(drift)
    app.command("refresh")(refresh)
