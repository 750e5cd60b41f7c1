"""ecaug's own feature builders for a shop view without a feature function: the common shapes,
computed from a user's events as of the user's last event, each field naming its builder in the
twin declaration (``synthetic_twins(..., features={view: {field: builder}})``):

- ``count``: events (Int64); ``distinct_items``: distinct items (Int64);
- ``recent_items`` or ``recent_items:N``: the newest N items, newest first (an Array of the item
  key's type; N defaults to 10);
- ``top_item``: the user's most frequent item (ties: the most recent);
- ``active_days``: days between the user's first and last event (Float).

A field without a builder, or an unknown builder, is refused in one line before any fitting.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import pandas as pd

from ecaug_feast.errors import EcaugError
from ecaug_feast.schema import RECENT_ITEMS

BUILTIN = "builtin:"  # a feature-function tag holding a builder spec (JSON) instead of module:name


def _recent(n: int) -> Callable[[pd.DataFrame, str, str], Any]:
    return lambda g, item, ts: g[item].tolist()[::-1][:n]


BUILDERS: dict[str, Callable[[pd.DataFrame, str, str], Any]] = {
    "count": lambda g, item, ts: len(g),
    "distinct_items": lambda g, item, ts: int(g[item].nunique()),
    "top_item": lambda g, item, ts: g[item].iloc[::-1].value_counts(sort=True).index[0],
    "active_days": lambda g, item, ts: float((g[ts].max() - g[ts].min()).total_seconds() / 86400),
}


def builder(spec: str, where: str) -> Callable[[pd.DataFrame, str, str], Any]:
    """The builder a spec names (``count``, ``recent_items:5``, ...)."""
    name, _, arg = spec.partition(":")
    if name == RECENT_ITEMS:  # the builder is named after ecaug's own list feature
        if arg and (not arg.isdigit() or int(arg) == 0):  # recent_items:0 would be an empty list
            raise EcaugError(f"{where}: {RECENT_ITEMS}:{arg}: N must be a positive integer")
        return _recent(int(arg or 10))
    if name not in BUILDERS or arg:
        raise EcaugError(f"{where}: unknown builder {spec!r} (builders: {', '.join([*BUILDERS, RECENT_ITEMS + '[:N]'])})")
    return BUILDERS[name]


def builtin_function(view: str, fields: list[str], spec_json: str, user: str, item: str, ts: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """A feature function (events -> one row per user) from a twin's builder spec; every field of
    the view must name a builder."""
    spec = json.loads(spec_json)
    missing = [f for f in fields if f not in spec]
    if missing:
        raise EcaugError(f"--view {view}: field(s) {', '.join(missing)} name no builder in features={{{view!r}: {{...}}}}")
    built = {f: builder(str(spec[f]), f"--view {view}, field {f!r}") for f in fields}

    def rows(events: pd.DataFrame) -> pd.DataFrame:
        ev = events.sort_values(ts, kind="stable")
        ev[ts] = pd.to_datetime(ev[ts], utc=True)
        out = [{user: key, **{f: b(g, item, ts) for f, b in built.items()}} for key, g in ev.groupby(user, sort=False)]
        return pd.DataFrame(out, columns=[user, *fields])

    return rows
