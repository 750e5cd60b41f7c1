"""``ecaug train | finetune``: option parsing and printing over the jobs
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
from ecaug_feast.jobs.workspace import Workspace
from ecaug_feast.names import check_name
from ecaug_feast.noise import quiet_known_noise
from ecaug_feast.repo_check import check_repo

err = Console(stderr=True)
log = logging.getLogger("ecaug.recommender")


def _quiet() -> None:
    # torchrec/fbgemm log every kernel they build at INFO and warn about planner internals:
    # muted by module and category in one place, so real warnings stay visible
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
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="An ingested dataset (`ecaug ingest`; default beauty)."),
    name: str = typer.Option("real", "--name", help="Checkpoint name under <state>/models/ (with --repo: <state>/repos/<project>/models/)."),
    source: str = typer.Option("feast", "--source", help="feast: examples via get_historical_features; memory: same features built in-process."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=8),
    embedding_dim: int = typer.Option(64, "--dim", min=4, help="Embedding and tower output size."),
    seed: int = typer.Option(0, "--seed"),
    model: Optional[str] = typer.Option(None, "--model", help="sequence (the default): self-attention over the ordered history (SASRec-style); bag: mean-of-bags two-tower."),
    max_seconds: Optional[float] = typer.Option(None, "--max-seconds", min=1, help="Wall-clock budget for training; the best epoch so far is kept."),
    bf16: bool = typer.Option(False, "--bf16", help="Sequence model: bfloat16 autocast for the catalogue logits (fast on CPUs with AMX and on GPUs)."),
    lr: Optional[float] = typer.Option(None, "--lr", min=1e-6, help="Sequence model: Adam learning rate (default 2e-3; 1e-3 is SASRec's, about twice the epochs, see the README)."),
    loss: Optional[str] = typer.Option(None, "--loss", help="Sequence model: full (softmax over the catalogue) | sampled (logQ-corrected sampled softmax, cost flat in the catalogue) | auto (default: full up to 200,000 items)."),
    repo: Optional[str] = typer.Option(None, "--repo", help="A shop's own Feast repo: train the sequence model from its event source (--events)."),
    events: Optional[str] = typer.Option(None, "--events", help="With --repo: the shop's event source (declared with synthetic_events)."),
    history: Optional[str] = typer.Option(None, "--history", help="With --repo: VIEW:FIELD, the list feature of a user's recent item keys that `ecaug serve --repo` reads online."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
) -> None:
    """Train a real-only model (early stopping on validation NDCG@10) and save a checkpoint
    (<state>/models/real by default: `ecaug augment`'s teacher and `ecaug finetune`'s start).
    With --repo R --events SRC: the sequence model from a shop's own repo (its item keys as the
    vocabulary, scored on each user's held-out last events).
    Also under `torchrun --nproc_per_node=N -m ecaug_feast.cli.main train ...` (rank 0 saves)."""
    _quiet()
    if repo is not None or events is not None or history is not None:
        _repo_only(repo, events, dataset=dataset, source=source if source != "feast" else None,
                   model=model if model not in (None, "sequence") else None)
        check_name(name, "checkpoint name")
        check_repo(repo, events=events, history=history)  # from the registry, before Feast and torch load
        from ecaug_feast.jobs.repo_train import train_repo

        out = train_repo(Workspace.from_env(repo=repo), events, name=name, history=history, epochs=epochs, seed=seed,
                         batch_size=batch_size, embedding_dim=embedding_dim, max_seconds=max_seconds, lr=lr, loss=loss, bf16=bf16,
                         progress=_epoch_printer(as_json), log=err.print)
        if "checkpoint" in out:
            _emit(out, as_json, f"saved {out['checkpoint']}  valid: {_metrics_line(out['valid'] or {})}  test: {_metrics_line(out['test'])}")
        return
    from ecaug_feast.jobs.train import DEFAULT_MODEL, train_real

    out = train_real(Workspace.from_env(), dataset or "beauty", name=name, source=source, epochs=epochs, batch_size=batch_size, embedding_dim=embedding_dim,
                     seed=seed, progress=_epoch_printer(as_json), log=err.print, model=model or DEFAULT_MODEL,
                     max_seconds=max_seconds, bf16=bf16, lr=lr, loss=loss)
    if "checkpoint" in out:  # under torchrun only rank 0 saves and reports
        _emit(out, as_json, f"saved {out['checkpoint']}  test: {_metrics_line(out['test'])}")


def finetune_cmd(
    from_: str = typer.Option("real", "--from", help="Checkpoint to start from (dir or name under <state>/models/; default: real, what `ecaug train` wrote)."),
    mix_ratio: Optional[float] = typer.Option(None, "--mix-ratio", min=0.0, help="Sequence checkpoint: synthetic histories (of a sequence run) per real history (default 3); bag checkpoint: synthetic rows (of a column run) per real row (default 0.5); 0 = real only."),
    mode: str = typer.Option("full", "--mode", help="Bag checkpoints: full | towers (freeze embeddings) | adapters (train adapters only)."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="Sequence checkpoints: pretrain (default, the order the study measured): a fresh model of its shape on real + synthetic histories, then fine-tuned on real alone | finetune: continue the checkpoint on real + synthetic histories. Bag checkpoints: finetune."),
    run_id: Optional[str] = typer.Option(None, "--run", help="Synthetic run id (default: the active run)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Default: the dataset the checkpoint was trained on."),
    name: Optional[str] = typer.Option(None, "--name", help="Output checkpoint name (default: <from>-ft-<mode>; sequence: <from>-ft, or <from>-pt with --protocol pretrain)."),
    source: str = typer.Option("feast", "--source", help="feast | memory (real examples)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1),
    max_seconds: Optional[float] = typer.Option(None, "--max-seconds", min=1, help="Wall-clock budget of each training stage; the best epoch so far is kept."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=8, help="Sequence checkpoints: users per batch of every stage (default: the trainer's)."),
    seed: int = typer.Option(0, "--seed"),
    repo: Optional[str] = typer.Option(None, "--repo", help="A shop's own Feast repo: real + the twin's active run of --events, from its checkpoint --from (default real), saved as --name (default finetuned)."),
    events: Optional[str] = typer.Option(None, "--events", help="With --repo: the shop's event source (declared with synthetic_events)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
) -> None:
    """Train on real + the synthetic run's data (the active run by default), from checkpoint --from
    (early stopping on validation); saves <from>-pt (sequence, pretrain) or <from>-ft[-<mode>].
    With --repo R --events SRC: a shop's sequence model on its real + synthetic histories."""
    _quiet()
    if repo is not None or events is not None:
        _repo_only(repo, events, dataset=dataset, source=source if source != "feast" else None,
                   mode=mode if mode != "full" else None)
        check_name(name or "finetuned", "checkpoint name")
        check_repo(repo, events=events)
        from ecaug_feast.jobs.repo_train import finetune_repo

        out = finetune_repo(Workspace.from_env(repo=repo), events, from_=from_, name=name or "finetuned", mix_ratio=mix_ratio,
                            protocol=protocol, run_id=run_id, epochs=epochs, seed=seed, max_seconds=max_seconds,
                            batch_size=batch_size, progress=_epoch_printer(as_json), log=err.print)
        _emit(out, as_json, f"saved {out['checkpoint']}  ({out['synthetic_histories']:,} synthetic histories of run {out['run_id']})  "
                            f"valid NDCG@10 {out['valid_before']['ndcg@10']:.4f} -> {(out['valid'] or {}).get('ndcg@10', float('nan')):.4f}  "
                            f"test: {_metrics_line(out['test'])}")
        return
    from ecaug_feast.jobs.finetune import finetune
    from ecaug_feast.jobs.train import finetune_defaults

    settings = finetune_defaults(from_, mix_ratio=mix_ratio, protocol=protocol, dataset=dataset)
    out = finetune(Workspace.from_env(), from_, mode=mode, run_id=run_id, name=name, source=source, epochs=epochs, seed=seed,
                   max_seconds=max_seconds, batch_size=batch_size, progress=_epoch_printer(as_json), log=err.print, **settings)
    _emit(out, as_json, f"saved {out['checkpoint']}  valid NDCG@10 {out['valid_before']['ndcg@10']:.4f} -> "
                        f"{out['valid'].get('ndcg@10', float('nan')):.4f}  test: {_metrics_line(out['test'])}")


def _repo_only(repo: Optional[str], events: Optional[str], **ignored: Any) -> None:
    """--repo and --events go together; options of ecaug's own data are refused with them (one line)."""
    if repo is None:
        raise EcaugError("--events and --history need --repo (a shop's own Feast repo)")
    if events is None:
        raise EcaugError("--repo needs --events (the shop's event source, declared with synthetic_events)")
    given = [k for k, v in ignored.items() if v is not None]
    if given:
        raise EcaugError(f"--{given[0]} does not apply with --repo (a shop's repo trains the sequence model on its --events)")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("finetune")(finetune_cmd)
