"""``ecaug doctor [--json]``: check the installed torch / fbgemm / torchrec / Feast / Redis pieces."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from ecaug_feast.cli.jsonout import summary_json
from ecaug_feast.doctor import report, run_checks

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last stdout line."),
    no_import: bool = typer.Option(False, "--no-import", help="Skip the torchrec import check (a subprocess, ~10-30 s)."),
) -> None:
    """Check torch, fbgemm, torchrec, Feast, Redis, FAISS and their pairing; print the command that
    fixes each broken piece. Exit 1 when something is broken."""
    checks = run_checks(import_check=not no_import)
    rep = report(checks)
    if as_json:
        typer.echo(summary_json(rep))
    else:
        out = Console(soft_wrap=True)
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for col in ("", "check", "version", "detail"):
            table.add_column(col, overflow="fold")
        for c in checks:
            table.add_row(f"[{_STYLE[c.status]}]{c.status}[/]", c.name, c.version or "", c.detail)
        out.print(table)
        if rep["fixes"]:
            out.print("\n[bold]To fix, run:[/]")
            for f in rep["fixes"]:
                out.print(f"  {f}", highlight=False, markup=False)
        out.print("\n" + ("[green]all required pieces work[/]" if rep["ok"] else "[bold red]broken: see the fixes above[/]"))
    if not rep["ok"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``doctor`` to the ``ecaug`` app."""
    app.command("doctor")(doctor)
