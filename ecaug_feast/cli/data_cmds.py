"""``ecaug ingest | apply | materialize | repair | redis``: the data layer on the command line.

Logs and progress go to stderr; with ``--json`` the last stdout line is one JSON object.
Heavy imports (pandas, feast) happen inside the commands so ``ecaug --help`` stays fast.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ecaug_feast.cli.jsonout import summary_json
from ecaug_feast.cli.progress import PlainProgress, is_terminal
from ecaug_feast.errors import EcaugError
from ecaug_feast.jobs.workspace import Workspace
from ecaug_feast.redact import redact, redact_obj
from ecaug_feast.redis_server import EmbeddedRedis, external_url, redis_status

log = logging.getLogger("ecaug.data")
err = Console(stderr=True)


def emit(obj: dict[str, Any], as_json: bool, human: str | None = None) -> None:
    """Print the machine summary (``--json``) or a human line, never both on stdout; secrets
    (a Redis password in a URL) are redacted."""
    if as_json:
        typer.echo(summary_json(redact_obj(obj)))
    elif human:
        typer.echo(redact(human))


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Any]:
    """A rich progress bar on stderr (plain lines when stderr is not a terminal); yields
    ``update(done, total)``."""
    if not is_terminal():
        yield PlainProgress(f"{description}:")
        return
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True,
    ) as prog:
        task = prog.add_task(description, total=total)
        yield lambda done, total=None: prog.update(task, completed=done, total=total)


def _parse_time(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise EcaugError(f"{flag}: not an ISO-8601 time: {value!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def ingest(
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Bundled adapter: beauty | sports | toys | diginetica."),
    interactions: Optional[Path] = typer.Option(None, "--interactions", help="Your interactions table (CSV/TSV/parquet)."),
    users: Optional[Path] = typer.Option(None, "--users", help="Optional user attribute table."),
    items: Optional[Path] = typer.Option(None, "--items", help="Optional item attribute table."),
    map_: Optional[str] = typer.Option(None, "--map", help="Column mapping: user=COL,item=COL,timestamp=COL[,label=COL][,weight=COL]."),
    mapping: Optional[Path] = typer.Option(None, "--mapping", help="Column mapping YAML (see docs/guide/data.md: bringing your own data)."),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset name for your own data (default: mapping's name or 'custom')."),
    split: Optional[str] = typer.Option(None, "--split", help="Own data: temporal (default) | leave_last_out."),
    negatives: int = typer.Option(1, "--negatives", min=0, help="Sampled negatives per training interaction."),
    seed: int = typer.Option(0, "--seed", help="Seed of the negative sampler."),
    max_users: Optional[int] = typer.Option(None, "--max-users", min=1, help="Keep only user ids <= N (quick runs)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
) -> None:
    """Validate a dataset, split it, write the processed store and the Feast parquet sources."""
    from ecaug_feast.jobs import ingest as jobs

    ds = jobs.load(dataset, interactions, users=users, items=items, map_=map_, mapping=mapping, name=name, split=split,
                   max_users=max_users)
    log.info("loaded %s: %s", ds.name, ds.summary())
    n_train_users = int(ds.interactions["user_id"].nunique())
    with progress_bar(f"ingest: user features for {ds.name}", total=None) as update:
        summary = jobs.ingest(Workspace.from_env(), ds, negatives=negatives, seed=seed, progress=update)
    log.info("processed dataset -> %s", summary["processed_dir"])
    for view, path in summary["features"]["files"].items():
        log.info("%s -> %s (%d rows)", view, path, summary["features"]["rows"][view])
    sp = summary["split"]
    emit(
        {"command": "ingest", "ok": True, **summary},
        as_json,
        f"ingested {ds.name}: {n_train_users} users, {ds.n_items} items, {len(ds.interactions)} interactions "
        f"(train {sp['train']}, valid {sp['valid']}, test {sp['test']}) -> {summary['processed_dir']}",
    )


def apply_cmd(as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line.")) -> None:
    """Register entities, feature views and services (``feast apply`` on the rendered repo)."""
    from ecaug_feast.jobs.ingest import apply

    out = apply(Workspace.from_env())
    log.info("feast registry %s (repo %s)", out["registry"], out["repo"])
    emit(
        {"command": "apply", "ok": True, **out},
        as_json,
        f"applied project {out['project']}: views {', '.join(out['feature_views'])}; "
        f"services {', '.join(out['feature_services'])}",
    )


def materialize_cmd(
    start: Optional[str] = typer.Option(None, "--start", help="ISO time (default 1970-01-01: views have no TTL)."),
    end: Optional[str] = typer.Option(None, "--end", help="ISO time (default now)."),
    view: Optional[list[str]] = typer.Option(None, "--view", help="Feature view(s) to load (default: all with data)."),
    incremental: bool = typer.Option(False, "--incremental", help="Start each view where its last materialization ended."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
) -> None:
    """Load the latest feature values into the online store (Redis)."""
    from ecaug_feast.jobs.ingest import materialize

    s, e = _parse_time(start, "--start"), _parse_time(end, "--end")
    out = materialize(Workspace.from_env(), start=s, end=e, views=view or None, incremental=incremental)
    lines = [f"{v}: {d['entities_written']} entities in {d['seconds']} s" for v, d in out["views"].items()]
    if out["skipped"]:
        lines.append(f"skipped (no source data): {', '.join(out['skipped'])}")
    emit({"command": "materialize", "ok": True, **out}, as_json, "materialized " + "; ".join(lines))


def repair_cmd(
    repo: Optional[str] = typer.Option(None, "--repo", help="A shop's own Feast repo: complete its interrupted publish of a twin run."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
) -> None:
    """Redo every step a crash interrupted (materialize, publish, refresh's append + materialize),
    so the online store matches the offline one again. Commands that need the online store do
    this first on their own; `ecaug repair` does only this."""
    from ecaug_feast.jobs.repair import repair

    out = repair(Workspace.from_env(repo))
    done = ", ".join(f"{d['step']} (interrupted {d['started_at']})" for d in out["repaired"])
    busy = ", ".join(f"{d['step']} ({d['reason']})" for d in out["running"])
    human = (f"repaired: {done}" if done else "nothing to repair") + (f"; left alone: {busy}" if busy else "")
    emit({"command": "repair", "ok": True, **out}, as_json, human)


redis_app = typer.Typer(help="The embedded Redis online store: start | stop | status.", no_args_is_help=True)


@redis_app.command("start")
def redis_start(
    port: Optional[int] = typer.Option(None, "--port", help="Port (default 6390 or a free one)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Start the embedded redis-server (data under <state>/redis)."""
    if external_url():
        raise EcaugError(f"ECAUG_REDIS_URL is set ({external_url()}): ecaug uses that server and starts none")
    server = EmbeddedRedis.for_state(port=port)
    url = server.start()
    emit({"command": "redis start", "ok": True, **server.status()}, as_json, f"redis running at {url} (data {server.data_dir})")


@redis_app.command("stop")
def redis_stop(as_json: bool = typer.Option(False, "--json")) -> None:
    """Stop the embedded redis-server (its data is snapshotted to dump.rdb)."""
    if external_url():
        raise EcaugError(f"ECAUG_REDIS_URL is set ({external_url()}): ecaug does not stop external servers")
    res = EmbeddedRedis.for_state().shutdown()  # RedisStopError (exit 1) when it could not stop safely
    emit({"command": "redis stop", "ok": True, **res}, as_json,
         f"redis stopped ({res['detail']})" if res["stopped"] else f"redis was {res['detail']}")


@redis_app.command("status")
def redis_status_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
    """Say whether the Redis ecaug uses is up (exit 1 when it is not)."""
    st = redis_status()
    detail = f" ({st['detail']})" if st.get("detail") and st.get("record") not in ("ours", "none") else ""
    emit({"command": "redis status", "ok": True, **st}, as_json,
         f"redis ({st['mode']}) {'running at ' + st['url'] if st['running'] else 'not running'}{detail}")
    if not st["running"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the data commands to the ``ecaug`` app."""
    app.command("ingest")(ingest)
    app.command("apply")(apply_cmd)
    app.command("materialize")(materialize_cmd)
    app.command("repair")(repair_cmd)
    app.add_typer(redis_app, name="redis")
