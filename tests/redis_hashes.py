"""Redis hashes read field by field: what the fault and refresh tests compare byte for byte."""

from __future__ import annotations

import redis


def hashes(url: str, fields: tuple[bytes, ...]) -> dict[bytes, dict[bytes, bytes]]:
    """Every Redis hash holding one of ``fields`` (a view's ``_ts:<view>`` field), field by field."""
    r = redis.Redis.from_url(url)
    out = {}
    for k in r.scan_iter(count=1000):
        h = r.hgetall(k)
        if any(f in h for f in fields):
            out[k] = h
    return out
