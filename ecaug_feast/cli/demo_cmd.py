"""``ecaug demo``: the whole pipeline on the bundled Beauty data, as a list of steps.

Each step is ``Step(name, run)`` where ``run(ctx) -> dict`` reads/writes the shared ``ctx`` dict and
returns its part of the summary. The steps are the product's commands in order (ingest, apply,
materialize, train, augment, finetune, serve) through the same jobs, and the demo ends on what the
product does: the fine-tuned model against real-only on the same test users (``compare``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from ecaug_feast import schema as S
from ecaug_feast.cli.jsonout import summary_json
from ecaug_feast.errors import EcaugError
from ecaug_feast.jobs.workspace import Workspace
from ecaug_feast.redact import redact_obj

log = logging.getLogger("ecaug.demo")
err = Console(stderr=True)


@dataclass
class Step:
    name: str
    run: Callable[[dict[str, Any]], dict[str, Any]]
    description: str = ""


def step_redis(ctx: dict[str, Any]) -> dict[str, Any]:
    ws = ctx["ws"]
    with ws.online() as url:  # started (or the external one checked) and left running for the steps below
        pass
    return {"url": url, "mode": "external" if ws.redis_url else "embedded"}


def step_ingest(ctx: dict[str, Any]) -> dict[str, Any]:
    from ecaug_feast.jobs import ingest as jobs

    ds = jobs.load(ctx["dataset"], max_users=ctx.get("max_users"))
    out = jobs.ingest(ctx["ws"], ds)
    ctx["dataset_name"] = ds.name
    return {
        "dataset": out["dataset"],
        "split": out["split"],
        "processed_dir": out["processed_dir"],
        "feature_rows": out["features"]["rows"],
        "feast_data_dir": str(ctx["ws"].feast_dir),
    }


def step_apply(ctx: dict[str, Any]) -> dict[str, Any]:
    from ecaug_feast.jobs.ingest import apply

    return apply(ctx["ws"])


def step_materialize(ctx: dict[str, Any]) -> dict[str, Any]:
    from ecaug_feast.jobs.ingest import materialize

    return materialize(ctx["ws"])


def step_online_read(ctx: dict[str, Any]) -> dict[str, Any]:
    """Read a user's serving features from Redis and check them against the offline serving row."""
    from ecaug_feast.jobs.ingest import online_check

    return online_check(ctx["ws"])


def step_augment(ctx: dict[str, Any]) -> dict[str, Any]:
    """``ecaug augment`` as the product runs it: the train step's model (<state>/models/real) is
    the sequence generator's teacher unless --no-teacher; published only if the gate passes."""
    from ecaug_feast.jobs.augment import AugmentRequest, augment

    req = AugmentRequest(dataset=ctx["dataset_name"], seed=0, steps=ctx.get("gan_steps"), max_c2st=ctx.get("max_c2st"),
                         rows=ctx.get("augment_rows"), no_teacher=not ctx.get("teacher", True), log=log.info)
    out = augment(ctx["ws"], ctx["generator"], req)
    if out["gate"] != "pass":
        log.warning("synthetic run %s failed its gate (%s): kept for inspection, not materialized",
                    out["run_id"], "; ".join(out.get("gate_reasons", [])))
    return {"generator": ctx["generator"], **out}


def step_train(ctx: dict[str, Any]) -> dict[str, Any]:
    """Train the real-only model from the Feast offline store and save it as <state>/models/real."""
    from ecaug_feast.jobs.train import train_real

    # the trainers log one line per epoch (loss, validation metrics, seconds) themselves
    out = train_real(ctx["ws"], ctx["dataset_name"], name="real", source="feast", epochs=ctx["epochs"], log=log.info,
                     model=ctx["model"], max_seconds=ctx.get("train_seconds"))
    ctx["model_dir"] = ctx["serve_model"] = out["checkpoint"]
    return out


def step_finetune(ctx: dict[str, Any]) -> dict[str, Any]:
    """``ecaug finetune`` with its defaults on the augment step's run (skipped when it failed its gate)."""
    from ecaug_feast.jobs.finetune import finetune
    from ecaug_feast.jobs.train import finetune_defaults

    aug = ctx["results"].get("augment", {})
    if not aug.get("activated"):
        return {"skipped": f"run {aug.get('run_id')} did not pass its gate: no synthetic data to train on"}
    settings = finetune_defaults(ctx["model_dir"], dataset=ctx["dataset_name"])
    out = finetune(ctx["ws"], ctx["model_dir"], run_id=aug["run_id"], epochs=ctx["epochs"], max_seconds=ctx.get("train_seconds"),
                   log=log.info, **settings)
    ctx["serve_model"] = out["checkpoint"]
    return out


def step_serve_check(ctx: dict[str, Any]) -> dict[str, Any]:
    """One /recommend through the real serving app (Redis features -> user tower -> FAISS), on the
    model the product ends with (the fine-tuned one, else real-only)."""
    from ecaug_feast.jobs.serve import check

    uid = ctx["results"]["online_read"]["user_id"]
    out = check(ctx["ws"], ctx["serve_model"], ctx["dataset_name"], uid)
    return {**out, "hint": "ecaug serve  # then: curl 'http://127.0.0.1:8000/recommend?user_id=1&k=10'"}


COMPARED = ("ndcg@10", "recall@10")


def step_compare(ctx: dict[str, Any]) -> dict[str, Any]:
    """The product's method against real-only: the fine-tuned model's and the real-only model's
    test metrics (the same test users, scored once each), overall and by training-history length."""
    real, ft = ctx["results"]["train"], ctx["results"].get("finetune", {})
    out: dict[str, Any] = {"real_only": real["checkpoint"], "test_users": int(real["test"]["users"])}
    if "test" not in ft:
        return {**out, "augmented": None, "reason": ft.get("skipped", "no fine-tune step")}
    if ft["test"]["users"] != real["test"]["users"]:
        raise RuntimeError(f"the models were scored on different test users ({real['test']['users']} vs {ft['test']['users']})")

    def lift(a: float, b: float) -> float | None:
        return round(100.0 * (b - a) / a, 1) if a else None

    out["augmented"] = ft["checkpoint"]
    out["metrics"] = {k: {"real_only": real["test"][k], "augmented": ft["test"][k], "lift_pct": lift(real["test"][k], ft["test"][k])}
                      for k in COMPARED}
    rb, fb = real["test"].get("buckets", {}), ft["test"].get("buckets", {})
    out["ndcg@10_by_history_length"] = {b: {"users": r["users"], "real_only": r["ndcg@10"], "augmented": fb[b]["ndcg@10"],
                                             "lift_pct": lift(r["ndcg@10"], fb[b]["ndcg@10"])} for b, r in rb.items() if b in fb}
    return out


def step_summary(ctx: dict[str, Any]) -> dict[str, Any]:
    return {
        "state_dir": str(ctx["ws"].state_dir),
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
    Step("train", step_train, "real-only model on the Feast offline store (ecaug train)"),
    Step("augment", step_augment, "generator (the trained model as its teacher) -> labeler -> quality gates -> synthetic run in Feast, if it passes (ecaug augment)"),
    Step("finetune", step_finetune, "a model on real + the run's data (ecaug finetune)"),
    Step("serve_check", step_serve_check, "one /recommend through the serving app (ecaug serve)"),
    Step("compare", step_compare, "the fine-tuned model against real-only on the same test users"),
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


def _num(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _print_summary(res: dict[str, Any]) -> None:
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
        table.add_row("online read", f"user {on['user_id']}: n_interactions={on[S.N_INTERACTIONS]} recent={on[S.RECENT_ITEMS]} ({on['read_ms']} ms, matches offline: {on['matches_offline']})")
    tr = res.get("train", {})
    if tr:
        t = tr["test"]
        table.add_row(f"train ({tr.get('model')}, real only)", f"{tr['checkpoint']}: best epoch {tr['epochs']}, {tr['seconds']} s; "
                      f"test Recall@10 {t['recall@10']:.4f}, NDCG@10 {t['ndcg@10']:.4f}")
    aug = res.get("augment", {})
    if aug:
        _augment_row(table, aug)
    ft = res.get("finetune", {})
    if ft:
        table.add_row("finetune", ft["skipped"] if "skipped" in ft else
                      f"{ft['checkpoint']} ({ft.get('protocol', ft.get('mode'))}, {ft.get('synthetic_histories', '')} synthetic "
                      f"histories of run {ft['run_id']}); valid NDCG@10 {ft['valid'].get('ndcg@10', float('nan')):.4f}")
    sc = res.get("serve_check", {})
    if sc:
        table.add_row("serve check", f"{sc['request']} -> items {sc['items']} (fallback: {sc['fallback']}); {sc['hint']}")
    for k, v in res.get("summary", {}).items():
        table.add_row(k, str(v))
    table.add_row("seconds", ", ".join(f"{k} {v}" for k, v in res.get("seconds", {}).items()))
    _compare_rows(table, res.get("compare", {}))
    Console().print(table)


def _augment_row(table: Any, aug: dict[str, Any]) -> None:
    status = "published (active, materialized)" if aug.get("activated") else "NOT materialized"
    if "c2st_auc_sequences" in aug:  # a run of histories
        what = (f"{aug['rows_accepted']}/{aug['rows_generated']} histories accepted; C2ST AUC histories "
                f"{_num(aug.get('c2st_auc_sequences'))}, feature rows {_num(aug.get('c2st_auc'))}; catalogue coverage "
                f"{_num(aug.get('catalogue_coverage'))}, tail share {_num(aug.get('tail_share'))}; fit {aug['fit_seconds']} s")
    else:
        what = (f"{aug['rows_accepted']}/{aug['rows_generated']} rows accepted; C2ST AUC {_num(aug.get('c2st_auc'))}, "
                f"shapes {_num(aug.get('column_shapes'))}, trends {_num(aug.get('pair_trends'))}, privacy dropped {aug['privacy_dropped']}, "
                f"fit {aug['fit_seconds']} s")
    table.add_row(f"augment ({aug['generator']}" + (f", teacher {aug['teacher']})" if aug.get("teacher") else ")"),
                  f"run {aug['run_id']}: gate {aug['gate']} -> {status}; {what}"
                  + (f"; reasons: {'; '.join(aug['gate_reasons'])}" if aug.get("gate_reasons") else ""))


def _compare_rows(table: Any, cmp: dict[str, Any]) -> None:
    """The last rows: the product's method against real-only on the same test users."""
    if not cmp:
        return
    if cmp.get("augmented") is None:
        table.add_row("augmented vs real-only", f"no augmented model: {cmp.get('reason')}")
        return
    lines = [f"{k}: real-only {m['real_only']:.4f} -> augmented {m['augmented']:.4f} ({_pct(m['lift_pct'])})"
             for k, m in cmp["metrics"].items()]
    lines += [f"NDCG@10, history {b} ({r['users']} users): {r['real_only']:.4f} -> {r['augmented']:.4f} ({_pct(r['lift_pct'])})"
              for b, r in cmp.get("ndcg@10_by_history_length", {}).items()]
    table.add_row(f"augmented vs real-only ({cmp['test_users']} test users)", "\n".join(lines))


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.1f} %"


def demo(
    dataset: str = typer.Option("beauty", "--dataset", "-d", help="Dataset to run on (bundled: beauty)."),
    max_users: Optional[int] = typer.Option(None, "--max-users", min=1, help="Keep only user ids <= N (quick runs)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Epochs of each training stage (default: early stopping on validation)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model of the train, finetune and serve steps: sequence (default) or bag."),
    generator: Optional[str] = typer.Option(None, "--generator", help="Augment step (default: the one whose runs the model reads): sequence (with the train step's model as its teacher it continues real short histories; about 5 min on full Beauty, 2 cores) or column (the column GAN's feature rows, for --model bag; --rows)."),
    teacher: bool = typer.Option(True, "--teacher/--no-teacher", help="Sequence generator: the train step's model draws the continuations of short histories (distill_priors: 2 items, 3 expansions, the sampling priors, labeler-filtered), as `ecaug augment` does by default. --no-teacher: the generator's own network draws (10 items, whole synthetic users)."),
    rows: Optional[int] = typer.Option(None, "--rows", min=100, help="Column generator: synthetic examples to accept (default 10000)."),
    gan_steps: Optional[int] = typer.Option(None, "--gan-steps", min=1, help="Generator steps (sequence: adversarial steps, default 60; column: GAN step budget, default 1500, at least 50)."),
    train_seconds: Optional[float] = typer.Option(300, "--train-seconds", min=1, help="Wall-clock budget of each training stage (best epoch kept)."),
    max_c2st: Optional[float] = typer.Option(None, "--max-c2st", help="Relax the realism gate (default: the gate's 0.80). "
                                             "On Beauty the column GAN's rows score C2ST AUC ~0.9 and fail it; the sequence GAN's ~0.75-0.77 pass, "
                                             "its continuations from the teacher ~0.59 (histories) / 0.55 (feature rows)."),
    until: Optional[str] = typer.Option(None, "--until", help="Stop after this step (e.g. online_read, train)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
) -> None:
    """The product end to end, as its commands run it: ingest -> apply -> materialize -> online read
    -> train -> augment (the trained model as the generator's teacher) -> finetune -> one /recommend
    -> the fine-tuned model against real-only on the same test users."""
    from ecaug_feast.jobs.augment import GENERATORS
    from ecaug_feast.jobs.train import DEFAULT_MODEL, model_spec
    names = [s.name for s in DEMO_STEPS]
    model = model or DEFAULT_MODEL
    generator = generator or model_spec(model).generator
    if generator not in GENERATORS:
        raise EcaugError(f"--generator must be one of {', '.join(GENERATORS)}, got {generator!r}")
    if until is not None and until not in names:
        raise EcaugError(f"--until must be one of {', '.join(names)}, got {until!r}")
    steps = DEMO_STEPS if until is None else DEMO_STEPS[: names.index(until) + 1] + [DEMO_STEPS[-1]]
    ctx: dict[str, Any] = {"dataset": dataset, "max_users": max_users, "ws": Workspace.from_env(), "augment_rows": rows,
                           "gan_steps": gan_steps, "epochs": epochs, "max_c2st": max_c2st, "model": model,
                           "train_seconds": train_seconds, "generator": generator, "teacher": teacher}
    res = redact_obj(run_steps(steps, ctx))  # the Redis URL may carry a password
    if as_json:
        typer.echo(summary_json({"command": "demo", "ok": True, **res}))
    else:
        _print_summary(res)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the ``ecaug`` app."""
    app.command("demo")(demo)
