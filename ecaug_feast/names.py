"""Names that become paths: dataset names, checkpoint names, run ids.

Every name a user (or a mapping file) gives that ecaug joins to a state folder goes through
:func:`check_name` first, and every delete or replace goes through :func:`owned_child`, so a name
like ``..``, ``.``, ``a/b`` or ``/abs/dir`` can never make a command replace or delete anything
outside the folder it owns (``ecaug train --name ..`` once deleted the whole ``$ECAUG_HOME``).
"""

from __future__ import annotations

import re
from pathlib import Path

from ecaug_feast.errors import EcaugError

# A letter or digit first (so never ".", "..", ".hidden", "-opt" or "_internal"), then letters,
# digits, dot, underscore, dash; at most 128 characters. No separators, so never absolute.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class BadNameError(EcaugError):
    """A name that is not safe to use as one path component."""


def check_name(name: object, what: str = "name") -> str:
    """``name`` if it is a safe single path component; else :class:`BadNameError` (exit 2)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise BadNameError(
            f"{what} {name!r}: not a valid name (1-128 characters: letters, digits, '.', '_', '-', "
            "starting with a letter or digit; no '/', no '..')"
        )
    return name


def owned_child(parent: Path, name: str, what: str = "name") -> Path:
    """``parent / name`` after checking ``name``, and that the result resolves to a strict child of
    ``parent`` (a symlinked name pointing elsewhere is refused too). Use before writing, replacing
    or deleting ``parent / name``."""
    check_name(name, what)
    child = Path(parent) / name
    assert_strict_child(Path(parent), child)
    return child


def assert_strict_child(parent: Path, target: Path) -> Path:
    """Raise unless ``target`` (resolved) lies strictly inside ``parent`` (resolved). Returns it."""
    root = Path(parent).resolve()
    real = Path(target).resolve()
    if real == root or root not in real.parents:
        raise BadNameError(f"{target}: resolves to {real}, outside {root}; refusing to write or delete it")
    return real
