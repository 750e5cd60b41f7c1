"""What the ``ecaug`` entry point says about failures that are not ``EcaugError``s: click's usage
errors (shown as click shows them, exit 2), and failures of the machine or of a stored file (a
full disk, a corrupt JSON or parquet file) as one line naming the path. Anything else is a bug and
keeps its traceback."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import PurePath

import typer


def click_exception_types() -> tuple[type[BaseException], ...]:
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


# OS errors that are the machine's state, not a bug: said in one line naming the path.
_OS_ERRNOS = {"ENOSPC": "no space left on device", "EDQUOT": "disk quota exceeded",
              "EROFS": "read-only file system", "EACCES": "permission denied", "EPERM": "operation not permitted"}


def one_line_error(exc: BaseException) -> str | None:
    """A one-line message for failures of the machine or of a stored file, else None (a bug:
    the traceback stays). Covered: a full disk / quota / read-only / permission ``OSError``
    anywhere in a command, and a corrupt JSON or parquet file read by a command."""
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
    if arrow is not None and isinstance(exc, arrow.ArrowException) and _in_a_reader(exc):
        where = _path_in_traceback(exc, (".parquet",)) or "<a parquet file>"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"{where}: corrupt or unreadable parquet ({first[:200]})"
    return None


def _in_a_reader(exc: BaseException) -> bool:
    """True when the exception came up through a ``read*`` function (pandas.read_parquet,
    pyarrow.parquet.read_table, ...): a file that cannot be read, not a bug in what we write."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name.startswith("read"):
            return True
        tb = tb.tb_next
    return False


def _path_in_traceback(exc: BaseException, suffixes: tuple[str, ...] = (), written: bool = False) -> str | None:
    """The file a failing reader (writer) had open: the innermost frame local that is an
    existing file path (``written``: a path in an existing folder), ending in one of ``suffixes``
    when given. ``json.loads(p.read_text())`` or pyarrow's writers do not put the path into
    their exception."""
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
