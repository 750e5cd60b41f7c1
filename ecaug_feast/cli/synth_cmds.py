"""``ecaug augment`` and ``ecaug runs list|show|rollback``.

Progress goes to stderr; with ``--json`` the last stdout line is one JSON object.
"""

from __future__ import annotations

import json
from pathlib import Path
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
    generator: str = typer.Option("column", "--generator", help="column (per-user feature rows, the default) | sequence (item histories: expands short real histories, creates users for sparse segments)."),
    rows: Optional[int] = typer.Option(None, "--rows", "-n", min=1, help="Synthetic examples to accept (column generator; default 10000)."),
    segment: Optional[str] = typer.Option(None, "--segment", help="cold_users | long_tail_items | attr=<id> | <column>=<value>."),
    seed: int = typer.Option(0, "--seed", help="Seed (GAN, labeler, sampling)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Max GAN steps (column: default 1500, at least 50, early stopping on fidelity; sequence: adversarial steps, default 60)."),
    max_c2st: Optional[float] = typer.Option(None, "--max-c2st", help="Gate: maximum C2ST AUC (default 0.80; sequence: on histories and on their feature rows)."),
    no_publish: bool = typer.Option(False, "--no-publish", help="Write the run but do not activate/materialize it."),
    config: Optional[Path] = typer.Option(None, "--config", help="Sequence generator settings: a JSON file of SeqAugmentConfig fields (gan: SeqGANConfig, labeler: SeqLabelerConfig fields), e.g. a small model for a quick run."),
    teacher: Optional[str] = typer.Option(None, "--teacher", help="Sequence generator: a real-only sequence checkpoint (`ecaug train --model sequence`) whose next-item scores draw the expansions, as continuations under the generator's sampling settings. Defaults then: 2 items, 3 expansions per short history, no whole synthetic users (--config overrides). Use the run with `ecaug finetune --protocol pretrain`."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
    repo: Optional[str] = typer.Option(None, "--repo", help="A shop's own Feast repo to expand (docs/guide/plugin.md); needs --entity and --view."),
    entity: Optional[str] = typer.Option(None, "--entity", help="With --repo: the entity of the view."),
    view: Optional[str] = typer.Option(None, "--view", help="With --repo: the real feature view whose twin gets the run."),
    service: Optional[str] = typer.Option(None, "--service", help="With --repo: the feature service training reads (checked to serve the view)."),
) -> None:
    """Fit the GAN on real training examples from Feast, generate, label, gate; write the run and,
    if its gate passes, register and materialize the synthetic feature views. With --repo: the same
    for one view of a shop's own Feast repo (its twin view only). With --generator sequence: the
    sequence GAN on the real training histories (runs, gate and publication as for column runs)."""
    from ecaug_feast.errors import EcaugError

    if generator not in ("column", "sequence"):
        raise EcaugError(f"--generator must be column or sequence, got {generator!r}")
    if generator == "sequence":
        if repo is not None or entity is not None or view is not None or service is not None:
            raise EcaugError("--generator sequence expands ecaug's own repo; --repo/--entity/--view go with the column generator")
        if segment is not None or rows is not None:
            raise EcaugError("--segment and --rows go with the column generator; the sequence generator expands short "
                             "histories and adds users for the sparse segments it finds")
        _augment_sequence(dataset, seed, steps, max_c2st, config, not no_publish, as_json, teacher)
        return
    if config is not None or teacher is not None:
        raise EcaugError("--config and --teacher go with the sequence generator: use them with --generator sequence")
    rows = 10_000 if rows is None else rows
    if steps is not None and steps < 50:
        raise EcaugError(f"--steps {steps}: the column GAN needs at least 50")
    if repo is not None or entity is not None or view is not None or service is not None:
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
    _emit_run(out, as_json, f"run {out['run_id']}: gate {out['gate']}, {out['rows_accepted']}/{out['rows_generated']} rows accepted, "
                            f"C2ST AUC {out['c2st_auc']:.3f}, shapes {out['column_shapes']:.3f}, trends {out['pair_trends']:.3f}")


def _emit_run(out: dict[str, Any], as_json: bool, head: str) -> None:
    """Print an augmentation run's summary (``head`` + gate outcome); exit 1 when its gate failed."""
    human = (head + ("" if out["gate"] == "pass" else f" ({'; '.join(out['gate_reasons'])}); not materialized")
             + (", active and materialized" if out.get("activated") else ""))
    _emit(out, as_json, human)
    if out["gate"] != "pass":
        raise typer.Exit(1)


def _augment_sequence(dataset: Optional[str], seed: int, steps: Optional[int], max_c2st: Optional[float],
                      config: Optional[Path], publish: bool, as_json: bool, teacher: Optional[str] = None) -> None:
    """``ecaug augment --generator sequence``: the job, its summary, exit 1 when the gate failed."""
    from ecaug_feast.jobs.augment_seq import TEACHER_DEFAULTS, augment_seq_run, seq_config_file
    from ecaug_feast.jobs.workspace import Workspace

    cfg = seq_config_file(config, seed=seed, defaults=TEACHER_DEFAULTS if teacher is not None else None)
    if steps is not None:
        cfg.gan.adv_steps = steps
    if max_c2st is not None:
        cfg.max_c2st_auc = max_c2st
    err.print("augment: fitting the sequence GAN on the training histories (MLE, then adversarial), generating"
              + (f" (continuations from the teacher {teacher})" if teacher is not None else "") + ", labelling")
    out = augment_seq_run(Workspace.from_env(), cfg, seed=seed, dataset=dataset, publish=publish, teacher=teacher)
    _emit_run(out, as_json, f"run {out['run_id']} (sequence): gate {out['gate']}, {out['rows_accepted']}/{out['rows_generated']} "
                            f"histories accepted ({out['interactions_accepted']} interactions), C2ST AUC histories "
                            f"{out['c2st_auc_sequences']}, features {out['c2st_auc']}, catalogue coverage "
                            f"{out['catalogue_coverage']}, tail share {out['tail_share']}")


@runs_app.command("list")
def runs_list(as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line.")) -> None:
    """All synthetic runs, oldest first (* = active); a run whose manifest is missing or corrupt
    is listed as BROKEN with the reason."""
    from ecaug_feast import synth_store

    runs = [r.summary() for r in synth_store.list_runs()]
    lines = [f"{'*' if r['active'] else ' '} {r['run_id']}  BROKEN: {r['broken']}" if r["broken"] else
             f"{'*' if r['active'] else ' '} {r['run_id']}  gate={r['gate']}  rows={r['rows_accepted']}  "
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
