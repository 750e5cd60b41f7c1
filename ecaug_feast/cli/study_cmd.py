"""``ecaug experiment``: the study (``ecaug_feast.study``) over a committed protocol file.

Every setting lives in the protocol (``--protocol FILE``) and an optional ``--config FILE`` of
settings over it (both YAML or JSON); the command line names only what to run. Progress goes to
stderr; with ``--json`` the last stdout line is one JSON object.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from ecaug_feast.cli.jsonout import summary_json
from ecaug_feast.errors import EcaugError

err = Console(stderr=True)


def _numbers(flag: str, text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise EcaugError(f"{flag}: expected numbers like 0.25,1.0, got {text!r}") from None


def experiment_cmd(
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="An ingested dataset (default: the protocol's)."),
    fractions: Optional[str] = typer.Option(None, "--fractions", help="History fractions over the protocol's, e.g. 0.25,1.0."),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="Seeds over the protocol's."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Methods over the protocol's, e.g. real_only,real_twice,self_distill."),
    quick: bool = typer.Option(False, "--quick", help="Small settings for tests and the demo (a user subsample, a tiny model, one seed)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML/JSON file of protocol settings over --protocol (e.g. model: bag, screen: true)."),
    protocol: Optional[Path] = typer.Option(None, "--protocol", help="The study's protocol (YAML/JSON, committed; e.g. benchmarks/protocols/seq-study.yaml). Default: the built-in one."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Parallel cells (one thread each)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
) -> None:
    """The before/after study: each method against real_only, paired 95 % intervals; a screen shows validation only."""
    from ecaug_feast.noise import quiet_known_noise
    from ecaug_feast.paths import state_dir
    from ecaug_feast.study.protocol import QUICK, make_protocol, read_file
    from ecaug_feast.study.run import run_study, summary_table

    quiet_known_noise()
    base = read_file(protocol) if protocol else {}
    layers: list[dict[str, Any]] = [QUICK] if quick else []
    if config:
        layers.append(read_file(config))
    cli = {"dataset": dataset, "fractions": _numbers("--fractions", fractions), "seeds": seeds, "workers": workers,
           "methods": [m.strip() for m in methods.split(",") if m.strip()] if methods else None}
    p = make_protocol(base, *layers, cli, source=str(protocol or "protocol"))
    summary = run_study(state_dir(), p, command="ecaug " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
                        progress=lambda d, t, what: err.print(f"cell {d}/{t} done ({what})"))
    js = {k: summary[k] for k in ("protocol", "screen", "cold_items", "scored_on", "results", "seconds", "out_dir")}
    if as_json:
        typer.echo(summary_json(js))
    else:
        typer.echo(summary_table(summary) + f"\nreport: {summary['out_dir']}/report.md")


def register(app: typer.Typer) -> None:
    app.command("experiment")(experiment_cmd)
