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

from ecaug_feast.errors import EcaugError

# Modules exposing ``register(app: typer.Typer) -> None``. Order = order in --help.
COMMAND_MODULES = [
    "ecaug_feast.cli.data_cmds",  # ingest, apply, materialize, redis
    "ecaug_feast.cli.synth_cmds",  # augment, runs
    "recommender.cli",  # train, finetune, experiment
    "recommender.serving.cli",  # serve
    "ecaug_feast.cli.demo_cmd",  # demo
]

app = typer.Typer(
    name="ecaug",
    help="ecaug-feast: expand sparse e-commerce training data (GAN + labeler + gates), "
    "land it in Feast, train and serve a TorchRec two-tower.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# soft_wrap: an error stays one line even with long paths on a non-terminal stderr.
err_console = Console(stderr=True, soft_wrap=True)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
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


def _click_exception_types() -> tuple[type[BaseException], ...]:
    """click's ``ClickException`` and Typer's vendored copy (Typer >= 0.16 ships its own click)."""
    types: list[type[BaseException]] = [
        c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
    ]
    try:
        import click

        types.append(click.ClickException)
    except ImportError:
        pass
    return tuple(types)


def main() -> None:
    """Console-script entry: run the app, turning user errors into one-line messages."""
    from ecaug_feast.noise import quiet_known_noise
    from ecaug_feast.redact import install_log_redaction

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
        if isinstance(exc, _click_exception_types()):  # usage errors: shown as click shows them, exit 2
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        line = one_line_error(exc)
        if line is None:
            raise
        _fail(line, 2)


def _fail(message: str, code: int) -> None:
    from rich.markup import escape

    from ecaug_feast.redact import redact

    err_console.print(f"[bold red]error:[/] {escape(redact(message))}", highlight=False)
    sys.exit(code)


# OS errors that are the machine's state, not a bug: said in one line naming the path.
_OS_ERRNOS = {"ENOSPC": "no space left on device", "EDQUOT": "disk quota exceeded",
              "EROFS": "read-only file system", "EACCES": "permission denied", "EPERM": "operation not permitted"}


def one_line_error(exc: BaseException) -> str | None:
    """A one-line message for failures of the machine or of a stored file, else None (a bug:
    the traceback stays). Covered: a full disk / quota / read-only / permission ``OSError``
    anywhere in a command, and a corrupt JSON or parquet file read by a command."""
    import errno
    import json

    code = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and code is None and "No space left on device" in str(exc):
        code = errno.ENOSPC  # pyarrow's writers: "[Errno 28] ..." in the text, errno unset
    if isinstance(exc, OSError) and code is not None:
        name = errno.errorcode.get(code, "")
        if name in _OS_ERRNOS:
            where = exc.filename or _path_in_traceback(exc, written=True) or "<unknown path>"
            return f"{where}: {_OS_ERRNOS[name]} ({name})"
    if isinstance(exc, json.JSONDecodeError):
        where = _path_in_traceback(exc, (".json",)) or "<a JSON file>"
        return f"{where}: corrupt JSON ({exc.msg}: line {exc.lineno}, column {exc.colno})"
    arrow = sys.modules.get("pyarrow.lib")
    if arrow is not None and isinstance(exc, arrow.ArrowException):
        where = _path_in_traceback(exc, (".parquet",)) or "<a parquet file>"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"{where}: corrupt or unreadable parquet ({first[:200]})"
    return None


def _path_in_traceback(exc: BaseException, suffixes: tuple[str, ...] = (), written: bool = False) -> str | None:
    """The file a failing reader (writer) had open: the innermost frame local that is an
    existing file path (``written``: a path in an existing folder), ending in one of ``suffixes``
    when given. ``json.loads(p.read_text())`` or pyarrow's writers do not put the path into
    their exception."""
    import os
    from pathlib import PurePath

    tb, frames = exc.__traceback__, []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            if isinstance(value, (str, PurePath)) and len(str(value)) < 4096:
                text = str(value)
                if os.sep not in text or "\n" in text:
                    continue
                if (not suffixes or text.endswith(suffixes)) and (
                    os.path.isfile(text) or (written and os.path.isdir(os.path.dirname(text)))
                ):
                    return text
                if suffixes and os.path.isdir(text):  # ``json.loads((d / "manifest.json").read_text())``
                    inside = [f for f in os.listdir(text) if f.endswith(suffixes)]
                    if len(inside) == 1:
                        return os.path.join(text, inside[0])
    return None


if __name__ == "__main__":
    main()
