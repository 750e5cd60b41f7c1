"""``ecaug train | finetune | experiment``: option parsing and printing over the jobs
(:mod:`ecaug_feast.jobs.train`, :mod:`ecaug_feast.jobs.finetune`). Heavy imports (torch,
torchrec, feast) inside commands.

Progress and logs go to stderr; with ``--json`` the last stdout line is one JSON object.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from ecaug_feast.cli.jsonout import summary_json
from ecaug_feast.errors import EcaugError

err = Console(stderr=True)
log = logging.getLogger("ecaug.recommender")


def _quiet() -> None:
    # torchrec/fbgemm log every kernel they build at INFO and warn about planner internals:
    # muted by module and category in one place, so real warnings stay visible
    from ecaug_feast.noise import quiet_known_noise

    quiet_known_noise()


def _emit(obj: dict[str, Any], as_json: bool, human: str) -> None:
    if as_json:
        typer.echo(summary_json(obj))
    else:
        typer.echo(human)


def _metrics_line(m: dict[str, Any]) -> str:
    line = " ".join(f"{k}={m[k]:.4f}" for k in ("recall@10", "ndcg@10", "recall@20", "ndcg@20") if k in m)
    if "buckets" in m:  # by kept training-history length
        line += "\n  NDCG@10 by history length: " + ", ".join(f"{b}: {r['ndcg@10']:.4f} ({r['users']} users)" for b, r in m["buckets"].items())
    return line


def _epoch_printer(as_json: bool):
    def cb(epoch: int, rec: dict[str, Any]) -> None:
        v = rec.get("valid_ndcg@10")
        err.print(f"epoch {epoch}: loss {rec['loss']:.3f}" + (f"  valid NDCG@10 {v:.4f}" if v is not None else "") + f"  ({rec['train_s']}s)")

    return cb


def train_cmd(
    dataset: str = typer.Option("beauty", "--dataset", "-d", help="An ingested dataset (`ecaug ingest`)."),
    name: str = typer.Option("real", "--name", help="Checkpoint name under <state>/models/."),
    source: str = typer.Option("feast", "--source", help="feast: examples via get_historical_features; memory: same features built in-process."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=8),
    embedding_dim: int = typer.Option(64, "--dim", min=4, help="Embedding and tower output size."),
    seed: int = typer.Option(0, "--seed"),
    model: str = typer.Option("sequence", "--model", help="sequence: self-attention over the ordered history (SASRec-style); bag: mean-of-bags two-tower."),
    max_seconds: Optional[float] = typer.Option(None, "--max-seconds", min=1, help="Wall-clock budget for training; the best epoch so far is kept."),
    bf16: bool = typer.Option(False, "--bf16", help="Sequence model: bfloat16 autocast for the catalogue logits (fast on CPUs with AMX and on GPUs)."),
    lr: Optional[float] = typer.Option(None, "--lr", min=1e-6, help="Sequence model: Adam learning rate (default 2e-3; 1e-3 is SASRec's, about twice the epochs, see the README)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
) -> None:
    """Train a real-only model (early stopping on validation NDCG@10) and save a checkpoint."""
    _quiet()
    from ecaug_feast.jobs.train import train_real
    from ecaug_feast.jobs.workspace import Workspace

    out = train_real(Workspace.from_env(), dataset, name=name, source=source, epochs=epochs, batch_size=batch_size, embedding_dim=embedding_dim,
                     seed=seed, progress=_epoch_printer(as_json), log=err.print, model=model, max_seconds=max_seconds,
                     bf16=bf16, lr=lr)
    _emit(out, as_json, f"saved {out['checkpoint']}  test: {_metrics_line(out['test'])}")


def finetune_cmd(
    from_: str = typer.Option(..., "--from", help="Checkpoint to continue from (dir or name under <state>/models/)."),
    mix_ratio: float = typer.Option(0.5, "--mix-ratio", min=0.0, help="Synthetic rows per real row; for a sequence checkpoint, synthetic histories (of a `--generator sequence` run) per real history (0 = real only)."),
    mode: str = typer.Option("full", "--mode", help="full | towers (freeze embeddings) | adapters (train adapters only)."),
    protocol: str = typer.Option("finetune", "--protocol", help="Sequence checkpoints: finetune (default): continue the checkpoint on real + synthetic histories | pretrain: a fresh model of its shape on real + synthetic, then fine-tuned on real alone (the study's --seq-protocol pretrain; with a `--teacher` run, e.g. --mix-ratio 3)."),
    run_id: Optional[str] = typer.Option(None, "--run", help="Synthetic run id (default: the active run)."),
    dataset: str = typer.Option("beauty", "--dataset", "-d"),
    name: Optional[str] = typer.Option(None, "--name", help="Output checkpoint name (default: <from>-ft-<mode>; sequence: <from>-ft, or <from>-pt with --protocol pretrain)."),
    source: str = typer.Option("feast", "--source", help="feast | memory (real examples)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
) -> None:
    """Continue training a checkpoint on real + synthetic examples (early stopping on validation)."""
    _quiet()
    from ecaug_feast.jobs.finetune import finetune
    from ecaug_feast.jobs.workspace import Workspace

    out = finetune(Workspace.from_env(), from_, mix_ratio=mix_ratio, mode=mode, run_id=run_id, dataset=dataset, name=name,
                   source=source, epochs=epochs, seed=seed, progress=_epoch_printer(as_json), log=err.print, protocol=protocol)
    _emit(out, as_json, f"saved {out['checkpoint']}  valid NDCG@10 {out['valid_before']['ndcg@10']:.4f} -> "
                        f"{out['valid'].get('ndcg@10', float('nan')):.4f}  test: {_metrics_line(out['test'])}")


def experiment_cmd(
    dataset: str = typer.Option("beauty", "--dataset", "-d", help="An ingested dataset (`ecaug ingest --dataset NAME` or `--interactions ... --map ...`)."),
    quick: bool = typer.Option(False, "--quick", help="Small preset for tests and the demo (a user subsample, tiny model)."),
    fractions: Optional[str] = typer.Option(None, "--fractions", help="Comma-separated history fractions, e.g. 0.25,1.0."),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="Seeds per configuration (default 3)."),
    model: str = typer.Option("sequence", "--model", help="sequence (default) or bag; the column methods (column_gan, oversample, smote) need bag; seq_ops, pseudo_prior, gan_augmented (sequence GAN) need sequence."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Subset of popularity,real_only,seq_ops,pseudo_prior,gan_augmented,distilled (sequence; distilled needs --seq-distill) or column_gan,oversample,smote (bag); default: all the model supports."),
    workers: int = typer.Option(2, "--workers", min=1, help="Parallel processes (one thread each)."),
    max_users: Optional[int] = typer.Option(None, "--max-users", min=20, help="Subsample this many users (default: all; --quick: 1500)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default <state>/experiments/<dataset>-<time>)."),
    source: str = typer.Option("feast", "--source", help="feast (default: each fraction's features through a private Feast repo) | memory (the same rows built in pandas)."),
    seq_protocol: str = typer.Option("finetune", "--seq-protocol", help="Sequence model: how augmented histories are used. finetune (default): real-only's model fine-tuned on real + augmented; pretrain (ASReP's order): a fresh model on real + augmented, then fine-tuned on real alone."),
    seq_targets: str = typer.Option("all", "--seq-targets", help="Sequence model, pseudo_prior and gan_augmented: which items of a generated history are training targets. all (default) | real: generated items are context only (expansions train on their real items; whole synthetic users are left out)."),
    seq_inference: str = typer.Option("real", "--seq-inference", help="Sequence model, pseudo_prior and gan_augmented: what the user tower reads at validation and test. real (default) | expanded (ASReP's evaluation): an expanded user reads its generated earlier items + its real history; validation chooses."),
    seq_teacher: str = typer.Option("none", "--seq-teacher", help="Sequence model, gan_augmented: where expansions come from. none (default): the generator's network, earlier items | recommender: real-only's model as the teacher, continuations drawn from its scores under the generator's sampling settings."),
    seq_teacher_rounds: int = typer.Option(1, "--seq-teacher-rounds", min=1, help="Sequence model, gan_augmented with --seq-teacher recommender: rounds of teaching (default 1). Round k > 1 draws a new pool from the model validation chose in round k - 1 (born-again) and trains it the same way; validation chooses among all rounds. Stops when a round does not beat the one before."),
    seq_aug: Optional[str] = typer.Option(None, "--seq-aug", help='Sequence model, pseudo_prior and gan_augmented: pipeline settings as JSON, e.g. \'{"n_new": 2, "synthetic_share": 0}\' (keys: expand_below, n_new, synthetic_share, sparse_share, expansions).'),
    seq_gan: Optional[str] = typer.Option(None, "--seq-gan", help='Sequence model, pseudo_prior and gan_augmented: generator settings (SeqGANConfig) as JSON over the preset\'s, e.g. \'{"transition_mix": 0}\' (sampling: temperature, transition_mix, popularity_bias, top_p, epsilon, attr_coherence).'),
    seq_distill: Optional[str] = typer.Option(None, "--seq-distill", help='Sequence model, with --seq-teacher recommender: knowledge distillation as JSON, e.g. \'{"distill": 0.5, "distill_temperature": 1}\': every model gan_augmented trains also learns the teacher\'s soft next-item distribution (weight distill), and the control method distilled (the same teaching on real histories alone, no pool) runs beside it.'),
    seq_ratios: Optional[str] = typer.Option(None, "--seq-ratios", help="Sequence model: augmented histories per real one to try, e.g. 1,3 (validation chooses; 0 = keep real-only is always a candidate). Default: the preset's (full: 1)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
) -> None:
    """Real-only vs GAN-augmented vs naive augmentation over history fractions and seeds."""
    _quiet()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ecaug_feast.jobs.presets import make_config
    from ecaug_feast.jobs.study import run_study, table_markdown
    from ecaug_feast.jobs.workspace import Workspace

    fr = _numbers("--fractions", fractions, "0.25,1.0")
    ms = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    sr = _numbers("--seq-ratios", seq_ratios, "1,3")
    aug, gan = _json_object("--seq-aug", seq_aug), _json_object("--seq-gan", seq_gan)
    dist = _json_object("--seq-distill", seq_distill)
    cfg = make_config("quick" if quick else "full", dataset=dataset, fractions=fr, seeds=seeds, methods=ms, workers=workers,
                      max_users=max_users, model_type=model, source=source, seq_protocol=seq_protocol,
                      seq_targets=seq_targets, seq_inference=seq_inference, seq_teacher=seq_teacher, seq_teacher_rounds=seq_teacher_rounds, seq_aug=aug,
                      seq_gan=gan, seq_distill=dist,
                      seq_ratios=sr)
    with Progress(TextColumn("[bold]experiment"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=err, transient=True) as prog:
        task = prog.add_task("", total=len(cfg.fractions) * cfg.seeds)
        summary = run_study(Workspace.from_env(), cfg, out, progress=lambda d, t, what: prog.update(task, completed=d, description=what))
    js = {k: summary[k] for k in ("dataset", "data", "results", "verdict", "seconds", "out_dir")}
    js["model"] = cfg.model_type
    js["fractions"], js["seeds"] = cfg.fractions, cfg.seeds
    _emit(js, as_json, table_markdown(summary["results"]) + f"\nreport: {summary['out_dir']}/report.md")


def _json_object(flag: str, text: str | None) -> dict | None:
    """A JSON object from the command line (None when not given); one-line error."""
    if text is None:
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise EcaugError(f"{flag}: expected a JSON object, got {text!r}")
    return obj


def _numbers(flag: str, text: str | None, example: str) -> list[float] | None:
    """A comma-separated list of numbers from the command line (None when not given); one-line error."""
    if not text:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise EcaugError(f"{flag}: expected numbers like {example}, got {text!r}") from None


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("finetune")(finetune_cmd)
    app.command("experiment")(experiment_cmd)
