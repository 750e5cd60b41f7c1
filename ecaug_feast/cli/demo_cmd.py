"""``ecaug demo``: the whole pipeline on the bundled Beauty data, as a list of steps.

Each step is ``Step(name, run)`` where ``run(ctx) -> dict`` reads/writes the shared ``ctx`` dict and
returns its part of the summary. Later stages (augment, train, experiment, serve check) append
their own steps to ``DEMO_STEPS`` (or insert before ``summary``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import typer
from rich.console import Console

log = logging.getLogger("ecaug.demo")
err = Console(stderr=True)


@dataclass
class Step:
    name: str
    run: Callable[[dict[str, Any]], dict[str, Any]]
    description: str = ""


def step_redis(ctx: dict[str, Any]) -> dict[str, Any]:
    from ecaug_feast.redis_server import ensure_redis, redis_status

    url = ensure_redis()
    return {"url": url, "mode": redis_status()["mode"]}


def step_ingest(ctx: dict[str, Any]) -> dict[str, Any]:
    from ecaug_feast.datasets import load_dataset, subset_users
    from ecaug_feast.features.ingest import ingest_dataset

    ds = load_dataset(ctx["dataset"])
    if ctx.get("max_users"):
        ds = subset_users(ds, ctx["max_users"])
    out = ingest_dataset(ds)
    ctx["dataset_name"] = ds.name
    return {
        "dataset": out["dataset"],
        "split": out["split"],
        "processed_dir": out["processed_dir"],
        "feature_rows": out["features"]["rows"],
        "feast_data_dir": str(ctx["paths"].feast_data_dir()),
    }


def step_apply(ctx: dict[str, Any]) -> dict[str, Any]:
    from ecaug_feast import feast_io

    return feast_io.apply()


def step_materialize(ctx: dict[str, Any]) -> dict[str, Any]:
    from ecaug_feast import feast_io

    return feast_io.materialize()


def step_online_read(ctx: dict[str, Any]) -> dict[str, Any]:
    """Read a user's serving features from Redis and check them against the offline serving row."""
    import pandas as pd

    from ecaug_feast import feast_io
    from ecaug_feast.errors import EcaugError
    from ecaug_feast.features.build import USER_FEATURES

    uf = pd.read_parquet(ctx["paths"].feast_data_dir() / f"{USER_FEATURES}.parquet")
    serving = uf.sort_values("event_timestamp").groupby("user_id").tail(1).set_index("user_id")
    uid = int(serving.index.min())
    t0 = time.perf_counter()
    online = feast_io.online_user_features([uid]).iloc[0]
    ms = (time.perf_counter() - t0) * 1000
    expected = serving.loc[uid]
    ok = int(online["n_interactions"]) == int(expected["n_interactions"]) and list(online["recent_items"]) == list(expected["recent_items"])
    if not ok:
        raise EcaugError(f"online features of user {uid} differ from the offline serving row")
    return {
        "user_id": uid,
        "n_interactions": int(online["n_interactions"]),
        "recent_items": [int(x) for x in online["recent_items"]][:10],
        "top_attributes": [int(x) for x in online["top_attributes"]],
        "matches_offline": ok,
        "read_ms": round(ms, 2),
    }


def step_summary(ctx: dict[str, Any]) -> dict[str, Any]:
    p = ctx["paths"]
    return {
        "state_dir": str(p.state_dir()),
        "feature_repo": str(ctx["results"].get("apply", {}).get("repo", "")),
        "registry": str(ctx["results"].get("apply", {}).get("registry", "")),
        "redis": ctx["results"].get("redis", {}).get("url"),
    }


DEMO_STEPS: list[Step] = [
    Step("redis", step_redis, "start the embedded Redis (or check ECAUG_REDIS_URL)"),
    Step("ingest", step_ingest, "load, validate, split, build point-in-time features"),
    Step("apply", step_apply, "register entities, feature views, feature services"),
    Step("materialize", step_materialize, "load the latest feature values into Redis"),
    Step("online_read", step_online_read, "read a user's features back online"),
    Step("summary", step_summary, "where things are"),
]


def run_steps(steps: list[Step], ctx: dict[str, Any]) -> dict[str, Any]:
    """Run ``steps`` in order, timing each; results land in ``ctx['results'][name]``."""
    ctx.setdefault("results", {})
    timings: dict[str, float] = {}
    for i, step in enumerate(steps, start=1):
        err.print(f"[bold cyan][{i}/{len(steps)}][/] {step.name}: {step.description}")
        t0 = time.perf_counter()
        ctx["results"][step.name] = step.run(ctx)
        timings[step.name] = round(time.perf_counter() - t0, 2)
        log.info("%s done in %.1fs", step.name, timings[step.name])
    ctx["results"]["seconds"] = timings
    return ctx["results"]


def _print_summary(res: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="ecaug demo", show_header=True)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    ing = res.get("ingest", {})
    if ing:
        d = ing["dataset"]
        table.add_row("dataset", f"{d['name']}: {d['users']} users, {d['items']} items, {d['interactions']} interactions")
        sp = ing["split"]
        table.add_row("split", f"{sp['kind']}: train {sp['train']}, valid {sp['valid']}, test {sp['test']}")
        table.add_row("feature rows", ", ".join(f"{k} {v}" for k, v in ing["feature_rows"].items()))
    ap = res.get("apply", {})
    if ap:
        table.add_row("entities", ", ".join(ap["entities"]))
        table.add_row("feature views", ", ".join(ap["feature_views"]))
        table.add_row("feature services", ", ".join(ap["feature_services"]))
    mat = res.get("materialize", {})
    for v, info in mat.get("views", {}).items():
        table.add_row(f"online: {v}", f"{info['entities_written']} entities in {info['seconds']} s")
    on = res.get("online_read", {})
    if on:
        table.add_row("online read", f"user {on['user_id']}: n_interactions={on['n_interactions']} recent={on['recent_items']} ({on['read_ms']} ms, matches offline: {on['matches_offline']})")
    for k, v in res.get("summary", {}).items():
        table.add_row(k, str(v))
    for name, res_part in res.items():
        if name not in {"redis", "ingest", "apply", "materialize", "online_read", "summary", "seconds"} and isinstance(res_part, dict):
            table.add_row(name, json.dumps(res_part, default=str)[:300])
    table.add_row("seconds", ", ".join(f"{k} {v}" for k, v in res.get("seconds", {}).items()))
    Console().print(table)


def demo(
    dataset: str = typer.Option("beauty", "--dataset", "-d", help="Dataset to run on (bundled: beauty)."),
    max_users: Optional[int] = typer.Option(None, "--max-users", min=1, help="Keep only user ids <= N (quick runs)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
) -> None:
    """Run the pipeline end to end: ingest -> apply -> materialize -> online read -> summary."""
    from ecaug_feast import paths

    ctx: dict[str, Any] = {"dataset": dataset, "max_users": max_users, "paths": paths}
    res = run_steps(DEMO_STEPS, ctx)
    if as_json:
        typer.echo(json.dumps({"command": "demo", "ok": True, **res}, default=str, separators=(",", ":")))
    else:
        _print_summary(res)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the ``ecaug`` app."""
    app.command("demo")(demo)
