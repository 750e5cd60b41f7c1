"""The ``active`` link of a runs folder: which synthetic run the synthetic views read (bottom layer).

Shared by the runs store (:mod:`ecaug_feast.synth_store`: writes runs, swaps the link) and the
plugin's declarations (:mod:`ecaug_feast.plugin`: its twins' sources read ``<runs>/active/<file>``),
so neither imports the other.
"""

from __future__ import annotations

import os
from pathlib import Path

ACTIVE = "active"  # the link the synthetic sources read through
EMPTY = "_empty"   # the placeholder run: empty files with each view's schema


def active_run_in(root: str | Path) -> str | None:
    """Id of the run ``<root>/active`` points at (None: no link, or the empty placeholder)."""
    link = Path(root) / ACTIVE
    if not link.is_symlink():
        return None
    name = Path(os.readlink(link)).name
    return None if name == EMPTY else name
