"""``ecaug augment``, ``ecaug augment-items`` and ``ecaug runs list|show|rollback`` (``--items``: the item runs).

Progress goes to stderr; with ``--json`` the last stdout line is one JSON object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ecaug_feast.cli.jsonout import summary_json
from ecaug_feast.cli.progress import PlainProgress, is_terminal
from ecaug_feast.jobs.workspace import Workspace
from ecaug_feast.names import check_name
from ecaug_feast.repo_check import check_repo

err = Console(stderr=True)
runs_app = typer.Typer(help="Synthetic runs: list, show, roll back the active one.", no_args_is_help=True)


def _emit(obj: dict[str, Any], as_json: bool, human: str) -> None:
    typer.echo(summary_json(obj) if as_json else human)


def augment(
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Dataset the Feast sources must hold (default: whatever was ingested)."),
    generator: Optional[str] = typer.Option(None, "--generator", help="sequence (the default: item histories; expands short real histories, as continuations drawn by the trained recommender when there is one) | column (per-user feature rows of the column GAN, what `--model bag` reads; the only one for --repo, and its default there)."),
    teacher: Optional[str] = typer.Option(None, "--teacher", help="Sequence generator: the real-only sequence checkpoint whose next-item scores draw the continuations. Default: <state>/models/real, the checkpoint `ecaug train` wrote, when it is a sequence model of the ingested dataset (the run's lineage says which was used and why). Its settings (distill_priors, the study's choice on validation): 2 items, 3 expansions per short history kept at random, no whole synthetic users, the generator's sampling priors (transition mix .08) (--config overrides; refine {steps: 150, lr: 2e-4, beta: 0.1} and keep discriminator in it: gan_disc_select, the adversarial stage and its discriminator's pick)."),
    no_teacher: bool = typer.Option(False, "--no-teacher", help="Sequence generator: no teacher; the generator's own network draws (10 earlier items, whole synthetic users for sparse segments)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Sequence generator settings: a JSON file of SeqAugmentConfig fields (gan: SeqGANConfig, labeler: SeqLabelerConfig fields), e.g. a small model for a quick run."),
    seed: int = typer.Option(0, "--seed", help="Seed (generator, labeler, sampling)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Generator steps (sequence: adversarial steps, default 60; column: max GAN steps, default 1500, at least 50, early stopping on fidelity)."),
    max_c2st: Optional[float] = typer.Option(None, "--max-c2st", help="Gate: maximum C2ST AUC (default 0.80; sequence: on histories and on their feature rows)."),
    no_publish: bool = typer.Option(False, "--no-publish", help="Write the run but do not activate/materialize it."),
    rows: Optional[int] = typer.Option(None, "--rows", "-n", min=1, help="Column generator: synthetic examples to accept (default 10000)."),
    segment: Optional[str] = typer.Option(None, "--segment", help="Column generator: cold_users | long_tail_items | attr=<id> | <column>=<value>."),
    repo: Optional[str] = typer.Option(None, "--repo", help="Column generator: a shop's own Feast repo to expand (docs/guide/plugin.md); needs --entity and --view."),
    entity: Optional[str] = typer.Option(None, "--entity", help="With --repo: the entity of the view."),
    view: Optional[str] = typer.Option(None, "--view", help="With --repo: the real feature view whose twin gets the run."),
    service: Optional[str] = typer.Option(None, "--service", help="With --repo: the feature service training reads (checked to serve the view)."),
    events: Optional[str] = typer.Option(None, "--events", help="With --repo: the shop's event source (a DataSource whose twin the repo declares with synthetic_events); the sequence generator expands its train-only histories."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
) -> None:
    """Fit a generator on the real training data in Feast, generate, label, gate; write the run and,
    if its gate passes, register and materialize the synthetic feature views. Then `ecaug finetune`
    trains on it. With --repo: the column GAN on one view of a shop's own Feast repo (its twin view only)."""
    if repo is not None:  # names, key types, sources, feature types: refused in seconds, before Feast and torch load
        check_repo(repo, events=events, views=[view] if events and view else (), entity=entity,
                   view=None if events else view, service=service)
    from ecaug_feast.jobs.augment import DEFAULT_GENERATOR, GENERATORS, AugmentRequest
    from ecaug_feast.jobs.augment import augment as augment_job

    name = generator or ("column" if repo is not None and events is None else DEFAULT_GENERATOR)  # a shop's view: feature rows
    req = AugmentRequest(dataset=dataset, seed=seed, steps=steps, max_c2st=max_c2st, publish=not no_publish, rows=rows,
                         segment=segment, repo=repo, entity=entity, view=view, service=service, events=events, config=config,
                         teacher=teacher, no_teacher=no_teacher, log=err.print)
    ws = Workspace.from_env()
    if not is_terminal():  # CI, logs: plain lines every 10 % of the GAN's step budget
        plain = PlainProgress("augment: GAN")
        req.progress = lambda done, total, text: plain.update(done, total, text)
        out = augment_job(ws, name, req)
    else:
        with Progress(TextColumn("[bold]GAN"), BarColumn(), TextColumn("step {task.completed}/{task.total}"),
                      TextColumn("{task.fields[text]}"), TimeElapsedColumn(), console=err, transient=True) as prog:
            task = prog.add_task("gan", total=None, text="", visible=False)
            req.progress = lambda done, total, text: prog.update(task, completed=done, total=total, text=text, visible=True)
            out = augment_job(ws, name, req)
    spec = GENERATORS[name]
    _emit_run(out, as_json, spec.headline(out))


def _emit_run(out: dict[str, Any], as_json: bool, head: str) -> None:
    """Print an augmentation run's summary (``head`` + gate outcome); exit 1 when its gate failed."""
    human = (head + ("" if out["gate"] == "pass" else f" ({'; '.join(out['gate_reasons'])}); not materialized")
             + (", active and materialized" if out.get("activated") else ""))
    _emit(out, as_json, human)
    if out["gate"] != "pass":
        raise typer.Exit(1)


def augment_items(
    model: str = typer.Option("latest", "--model", help="The sequence checkpoint whose item space the vectors lie in: a path, a name under <state>/models, or latest (the one `ecaug serve` serves)."),
    generator: Optional[str] = typer.Option(None, "--generator", help="Item generator (ecaug_feast.synth.item_gen): gar (adversarial, the default when present) or attr_mean."),
    config: Optional[Path] = typer.Option(None, "--config", help="A JSON file of the generator's config fields."),
    seed: int = typer.Option(0, "--seed", help="Seed (generator, sampled histories)."),
    no_publish: bool = typer.Option(False, "--no-publish", help="Write the run but do not activate/materialize it."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
) -> None:
    """Generated item vectors for the items the checkpoint never trained on (cold and new items):
    an item generator fitted on the warm items' trained vectors, a run of the item_features_synth
    view (lineage, rollback with `ecaug runs rollback --items`), activated and materialized. Serving
    scores those items with them."""
    from ecaug_feast.jobs.augment_items import augment_items as job
    from ecaug_feast.jobs.augment_items import read_config_file

    cfg = read_config_file(config) if config is not None else None
    out = job(Workspace.from_env(), model=model, generator=generator, seed=seed, config=cfg, publish=not no_publish,
              log_fn=err.print)
    human = (f"item run {out['run_id']} ({out['generator']}, {out['model_version']}): {out['rows']} items "
             f"({out['new_items']} new since training), {out['warm_items']} warm items learnt from")
    _emit_run(out, as_json, human)


_REPO_RUNS = "A shop's own Feast repo: its twins' runs folder instead of ecaug's."
_ITEM_RUNS = "The item runs (item_features_synth, `ecaug augment-items`) instead of the user runs."


@runs_app.command("list")
def runs_list(as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
              repo: Optional[str] = typer.Option(None, "--repo", help=_REPO_RUNS),
              items: bool = typer.Option(False, "--items", help=_ITEM_RUNS)) -> None:
    """All synthetic runs, oldest first (* = active); a run whose manifest is missing or corrupt
    is listed as BROKEN with the reason."""
    from ecaug_feast import synth_store

    if items:
        from ecaug_feast import item_runs

        out = {"runs": [_item_summary(r) for r in item_runs.list_runs()], "active": item_runs.active_run()}
        lines = [f"{'*' if r['active'] else ' '} {r['run_id']}  BROKEN: {r['broken']}" if r.get("broken") else
                 f"{'*' if r['active'] else ' '} {r['run_id']}  gate={r['gate']}  items={r['rows']}  "
                 f"generator={r['generator']}  model={r['model_version']}  parent={r['parent_run_id']}" for r in out["runs"]]
        _emit(out, as_json, "\n".join(lines) or "no item runs")
        return
    if repo is not None:
        from ecaug_feast.jobs.repo_runs import list_repo_runs

        out = list_repo_runs(repo)
    else:
        out = {"runs": [r.summary() for r in synth_store.list_runs()], "active": synth_store.active_run()}
    lines = [f"{'*' if r['active'] else ' '} {r['run_id']}  BROKEN: {r['broken']}" if r.get("broken") else
             f"{'*' if r['active'] else ' '} {r['run_id']}  gate={r['gate']}  rows={r['rows_accepted']}  "
             f"c2st={r['c2st_auc'] if r['c2st_auc'] is None else round(r['c2st_auc'], 3)}  "
             + (f"twin={r['twin']}" if repo is not None else f"segment={r['segment']}") for r in out["runs"]]
    _emit(out, as_json, "\n".join(lines) or "no runs")


def _item_summary(r) -> dict[str, Any]:
    lin = r.manifest.get("lineage", {})
    return {"run_id": r.run_id, "active": r.active, "created": r.manifest.get("created"), "gate": r.manifest.get("gate"),
            "rows": r.manifest.get("rows"), "generator": r.manifest.get("config", {}).get("generator"),
            "model_version": lin.get("model_version"), "parent_run_id": lin.get("parent_run_id"), "reason": lin.get("reason"),
            "path": str(r.path), "broken": r.broken}


@runs_app.command("show")
def runs_show(run_id: str = typer.Argument(..., help="Run id (see `ecaug runs list`)."),
              as_json: bool = typer.Option(False, "--json", help="Print the manifest as the last stdout line."),
              repo: Optional[str] = typer.Option(None, "--repo", help=_REPO_RUNS),
              items: bool = typer.Option(False, "--items", help=_ITEM_RUNS)) -> None:
    """Manifest of one run (config, metrics, gate, lineage) and where its report is."""
    from ecaug_feast import synth_store

    if items:
        from ecaug_feast import item_runs

        run = item_runs.load_run(check_name(run_id, "run id"))
        man = {**run.manifest, "active": run.active, "path": str(run.path)}
        _emit(man, as_json, json.dumps(man, indent=1, default=str))
        return
    if repo is not None:
        from ecaug_feast.jobs.repo_runs import show_repo_run

        man = show_repo_run(repo, check_name(run_id, "run id"))
    else:
        run = synth_store.load_run(check_name(run_id, "run id"))
        man = {k: v for k, v in run.manifest.items() if k != "metrics"}
        man["metrics"] = {k: v for k, v in run.manifest.get("metrics", {}).items() if k != "gan_history"}
        man["active"], man["report"] = run.active, str(run.path / "report.md")
    _emit(man, as_json, json.dumps(man, indent=1, default=str))


@runs_app.command("rollback")
def runs_rollback(to: Optional[str] = typer.Option(None, "--to", help="Run to activate (default: the previous passing run)."),
                  as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
                  repo: Optional[str] = typer.Option(None, "--repo", help=_REPO_RUNS),
                  items: bool = typer.Option(False, "--items", help=_ITEM_RUNS)) -> None:
    """Point the synthetic views at an earlier run (or none) and re-materialize them."""
    if to is not None:
        check_name(to, "--to")
    if items:
        from ecaug_feast.jobs.augment_items import rollback_items

        out = rollback_items(Workspace.from_env(), to)
        _emit(out, as_json, f"active item run: {out['active'] or 'none (no generated item vectors)'} (was {out['previous']}); "
                            f"{out['removed_keys']} item rows removed from the online store")
        return
    if repo is not None:
        from ecaug_feast.jobs.repo_runs import rollback_repo

        out = rollback_repo(repo, to)
    else:
        from ecaug_feast.jobs.augment import rollback

        out = rollback(Workspace.from_env(), to)
    now, before = out["active"], out["previous"]
    _emit(out, as_json, f"active run: {now or 'none (empty synthetic views)'} (was {before}); "
                        f"{out['removed_keys']} synthetic keys removed from the online store")


def register(app: typer.Typer) -> None:
    app.command("augment")(augment)
    app.command("augment-items")(augment_items)
    app.add_typer(runs_app, name="runs")
