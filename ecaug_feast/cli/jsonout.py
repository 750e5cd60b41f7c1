"""The one place a command's JSON summary is serialised, so every summary carries the version."""

from __future__ import annotations

import json
from typing import Any

from ecaug_feast import version


def summary_json(obj: dict[str, Any]) -> str:
    """``obj`` as one compact JSON line, with ``"version"`` (the installed ecaug-feast) added."""
    return json.dumps({**obj, "version": version()}, default=str, separators=(",", ":"))
