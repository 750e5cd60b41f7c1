"""Entry point of ``ecaug``: builds the Typer app from the command modules.

Command modules import heavy libraries (torch, feast) inside their functions, so ``ecaug --help``
stays fast. Expected user mistakes (``EcaugError``) print one line and exit non-zero.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer
from rich.console import Console
from rich.markup import escape

from ecaug_feast.errors import EcaugError
from ecaug_feast.noise import quiet_known_noise
from ecaug_feast.redact import install_log_redaction, redact

# Modules exposing ``register(app: typer.Typer) -> None``. Order = order in --help.
COMMAND_MODULES = [
    "ecaug_feast.cli.data_cmds",  # ingest, apply, materialize, redis
    "ecaug_feast.cli.synth_cmds",  # augment, runs
    "ecaug_feast.cli.drift_cmds",  # drift, refresh
    "ecaug_feast.cli.train_cmds",  # train, finetune
    "ecaug_feast.cli.study_cmd",  # experiment
    "ecaug_feast.cli.serve_cmd",  # serve
    "ecaug_feast.cli.demo_cmd",  # demo
    "ecaug_feast.cli.doctor_cmd",  # doctor
]

app = typer.Typer(
    name="ecaug",
    help="ecaug-feast: expand sparse e-commerce training data (GAN + labeler + gates), "
    "land it in Feast, train and serve a TorchRec two-tower. "
    "State (datasets, Feast sources and registry, Redis data, runs, checkpoints) goes to $ECAUG_HOME, "
    "else ./.ecaug in the current folder. `ecaug doctor` checks the install.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# soft_wrap: an error stays one line even with long paths on a non-terminal stderr.
err_console = Console(stderr=True, soft_wrap=True)


def _print_version(value: bool) -> None:
    if value:
        from ecaug_feast import version

        typer.echo(f"ecaug-feast {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    _version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                  help="Print the ecaug-feast version and exit."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # Feast and friends are chatty at INFO; keep our own logs readable.
    for noisy in ("feast", "urllib3", "matplotlib", "numexpr", "torchrec", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a command group not built yet
            if exc.name == name:
                continue
            raise
        mod.register(app)


_register_all()


def main() -> None:
    """Console-script entry: run the app, turning user errors into one-line messages."""
    quiet_known_noise()
    install_log_redaction()
    try:
        # standalone_mode=False makes click *return* a command's typer.Exit code instead of exiting.
        rc = app(standalone_mode=False, prog_name="ecaug")
        sys.exit(rc if isinstance(rc, int) else 0)
    except EcaugError as exc:
        _fail(str(exc), exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        from ecaug_feast.cli.failures import click_exception_types, one_line_error

        if isinstance(exc, click_exception_types()):  # usage errors: shown as click shows them, exit 2
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        line = one_line_error(exc)
        if line is None:
            raise
        _fail(line, 2)


def _fail(message: str, code: int) -> None:
    err_console.print(f"[bold red]error:[/] {escape(redact(message))}", highlight=False)
    sys.exit(code)


if __name__ == "__main__":
    main()
