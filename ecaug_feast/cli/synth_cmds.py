"""``ecaug augment`` and ``ecaug runs list|show|rollback``.

Progress goes to stderr; with ``--json`` the last stdout line is one JSON object.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import typer
from rich.console import Console

from ecaug_feast.cli.jsonout import summary_json
from ecaug_feast.names import check_name

err = Console(stderr=True)
runs_app = typer.Typer(help="Synthetic runs: list, show, roll back the active one.", no_args_is_help=True)


def _emit(obj: dict[str, Any], as_json: bool, human: str) -> None:
    typer.echo(summary_json(obj) if as_json else human)


def augment(
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Dataset the Feast sources must hold (default: whatever was ingested)."),
    rows: int = typer.Option(10_000, "--rows", "-n", min=1, help="Synthetic examples to accept."),
    segment: Optional[str] = typer.Option(None, "--segment", help="cold_users | long_tail_items | attr=<id> | <column>=<value>."),
    seed: int = typer.Option(0, "--seed", help="Seed (GAN, labeler, sampling)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=50, help="Max GAN steps (default 1500; early stopping on fidelity)."),
    max_c2st: Optional[float] = typer.Option(None, "--max-c2st", help="Gate: maximum C2ST AUC (default 0.80)."),
    no_publish: bool = typer.Option(False, "--no-publish", help="Write the run but do not activate/materialize it."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
    repo: Optional[str] = typer.Option(None, "--repo", help="A shop's own Feast repo to expand (docs/plugin.md); needs --entity and --view."),
    entity: Optional[str] = typer.Option(None, "--entity", help="With --repo: the entity of the view."),
    view: Optional[str] = typer.Option(None, "--view", help="With --repo: the real feature view whose twin gets the run."),
    service: Optional[str] = typer.Option(None, "--service", help="With --repo: the feature service training reads (checked to serve the view)."),
) -> None:
    """Fit the GAN on real training examples from Feast, generate, label, gate; write the run and,
    if its gate passes, register and materialize the synthetic feature views. With --repo: the same
    for one view of a shop's own Feast repo (its twin view only)."""
    if repo is not None or entity is not None or view is not None or service is not None:
        from ecaug_feast.errors import EcaugError
        from ecaug_feast.jobs.augment_repo import augment_repo

        if not (repo and entity and view):
            raise EcaugError("--repo, --entity and --view go together (and --service with them)")
        if dataset or segment:
            raise EcaugError("--dataset and --segment apply to ecaug's own repo, not with --repo")
        out = augment_repo(repo, entity, view, service, rows=rows, seed=seed, steps=steps, max_c2st=max_c2st,
                           publish=not no_publish)
        _emit(out, as_json, f"run {out['run_id']} of {out['twin']}: gate {out['gate']}, "
                            f"{out['rows_accepted']}/{out['rows_generated']} rows accepted"
                            + (", active and materialized" if out["activated"] else ", not materialized"))
        if out["gate"] != "pass":
            raise typer.Exit(1)
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ecaug_feast.quality.gates import GateConfig
    from ecaug_feast.synth.gan import GANConfig
    from ecaug_feast.synth.pipeline import AugmentConfig
    from ecaug_feast.jobs.augment import augment_run
    from ecaug_feast.jobs.workspace import Workspace

    gan = GANConfig(**({"max_steps": steps} if steps else {}))
    gates = GateConfig(seed=seed, **({"max_c2st_auc": max_c2st} if max_c2st is not None else {}))
    cfg = AugmentConfig(gan=gan, gates=gates)
    from ecaug_feast.cli.progress import PlainProgress, is_terminal

    ws = Workspace.from_env()

    def run(progress):
        return augment_run(ws, rows=rows, segment=segment, seed=seed, dataset=dataset, config=cfg, publish=not no_publish,
                           progress=progress)

    if not is_terminal():  # CI, logs: plain lines every 10% of the GAN's step budget
        plain = PlainProgress("augment: GAN")
        out = run(lambda r: plain.update(r["step"], gan.max_steps, f"fidelity {r['fidelity']:.3f}"))
    else:
        with Progress(TextColumn("[bold]GAN"), BarColumn(), TextColumn("step {task.completed}/{task.total}"),
                      TextColumn("fidelity {task.fields[fid]}"), TimeElapsedColumn(), console=err, transient=True) as prog:
            task = prog.add_task("gan", total=gan.max_steps, fid="-")
            out = run(lambda r: prog.update(task, completed=r["step"], fid=f"{r['fidelity']:.3f}"))
    human = (f"run {out['run_id']}: gate {out['gate']}, {out['rows_accepted']}/{out['rows_generated']} rows accepted, "
             f"C2ST AUC {out['c2st_auc']:.3f}, shapes {out['column_shapes']:.3f}, trends {out['pair_trends']:.3f}"
             + ("" if out["gate"] == "pass" else f" ({'; '.join(out['gate_reasons'])}); not materialized")
             + (", active and materialized" if out.get("activated") else ""))
    _emit(out, as_json, human)
    if out["gate"] != "pass":
        raise typer.Exit(1)


@runs_app.command("list")
def runs_list(as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line.")) -> None:
    """All synthetic runs, oldest first (* = active)."""
    from ecaug_feast import synth_store

    runs = [r.summary() for r in synth_store.list_runs()]
    lines = [f"{'*' if r['active'] else ' '} {r['run_id']}  gate={r['gate']}  rows={r['rows_accepted']}  "
             f"c2st={r['c2st_auc'] if r['c2st_auc'] is None else round(r['c2st_auc'], 3)}  segment={r['segment']}" for r in runs]
    _emit({"runs": runs, "active": synth_store.active_run()}, as_json, "\n".join(lines) or "no runs")


@runs_app.command("show")
def runs_show(run_id: str = typer.Argument(..., help="Run id (see `ecaug runs list`)."),
              as_json: bool = typer.Option(False, "--json", help="Print the manifest as the last stdout line.")) -> None:
    """Manifest of one run (config, metrics, gate, lineage) and where its report is."""
    from ecaug_feast import synth_store

    run = synth_store.load_run(check_name(run_id, "run id"))
    man = {k: v for k, v in run.manifest.items() if k != "metrics"}
    man["metrics"] = {k: v for k, v in run.manifest.get("metrics", {}).items() if k != "gan_history"}
    man["active"], man["report"] = run.active, str(run.path / "report.md")
    _emit(man, as_json, json.dumps(man, indent=1, default=str))


@runs_app.command("rollback")
def runs_rollback(to: Optional[str] = typer.Option(None, "--to", help="Run to activate (default: the previous passing run)."),
                  as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line.")) -> None:
    """Point the synthetic views at an earlier run (or none) and re-materialize them."""
    from ecaug_feast.jobs.augment import rollback
    from ecaug_feast.jobs.workspace import Workspace

    if to is not None:
        check_name(to, "--to")
    out = rollback(Workspace.from_env(), to)
    now, before = out["active"], out["previous"]
    _emit(out, as_json, f"active run: {now or 'none (empty synthetic views)'} (was {before}); "
                        f"{out['removed_keys']} synthetic keys removed from the online store")


def register(app: typer.Typer) -> None:
    app.command("augment")(augment)
    app.add_typer(runs_app, name="runs")
