"""Who may call ``/admin/*`` and ``/metrics``: tokens from the environment, constant-time checks,
and a lockout of repeated bad tokens that is per client address.

- ``/admin/*`` takes the admin token (``$ECAUG_ADMIN_TOKEN`` or the file ``$ECAUG_ADMIN_TOKEN_FILE``).
- ``/metrics`` takes the metrics token (``$ECAUG_METRICS_TOKEN`` / ``$ECAUG_METRICS_TOKEN_FILE``,
  for a Prometheus scraper that should not be able to reload models) or the admin token.
- A route whose tokens are all unset does not exist (404).
- Tokens travel as ``Authorization: Bearer <token>`` (or ``X-Admin-Token``).

Lockout: a client address that sent ``rate`` missing or wrong tokens within a minute gets 429
for further bad ones; other addresses are not affected, and a request carrying a right token is
never refused for someone's bad guesses (a shared proxy address cannot lock the operator out).
Requests with the admin token are limited to ``rate`` a minute in all (a reload storm from a
script holding the token); scrapes with the metrics token are not limited. The counts live in
each worker process.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from collections import OrderedDict, deque

from fastapi import HTTPException, Request

from ecaug_feast.errors import EcaugError

ADMIN_TOKEN_ENV = "ECAUG_ADMIN_TOKEN"
METRICS_TOKEN_ENV = "ECAUG_METRICS_TOKEN"
FILE_SUFFIX = "_FILE"
MAX_CLIENTS = 4096  # addresses whose failures are remembered (oldest forgotten first)


def token_from_env(name: str) -> str | None:
    """``$NAME``, else the first line of the file named by ``$NAME_FILE``; None when neither is
    set. A named file that cannot be read or is empty is an error (serving without the
    protection the operator asked for would be a silent surprise)."""
    token = os.environ.get(name, "").strip()
    if token:
        return token
    path = os.environ.get(name + FILE_SUFFIX, "").strip()
    if not path:
        return None
    kind = name.removeprefix("ECAUG_").removesuffix("_TOKEN").lower()  # admin, metrics
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as exc:
        raise EcaugError(f"{path}: cannot read the {kind} token ({name}{FILE_SUFFIX}): {exc.strerror}") from None
    if not token:
        raise EcaugError(f"{path}: {kind} token file is empty ({name}{FILE_SUFFIX})")
    return token


class RateWindow:
    """At most ``n`` events per ``window_s`` (sliding window; not thread-safe: callers lock)."""

    def __init__(self, n: int, window_s: float = 60.0):
        self.n, self.window_s = n, window_s
        self._times: deque[float] = deque()

    def full(self, now: float) -> bool:
        while self._times and now - self._times[0] >= self.window_s:
            self._times.popleft()
        return len(self._times) >= self.n

    def add(self, now: float) -> None:
        self._times.append(now)


class Guard:
    """Token checks for the protected routes (see the module docstring)."""

    def __init__(self, admin_token: str | None, metrics_token: str | None, rate: int, window_s: float = 60.0):
        self.tokens = {"admin": [t for t in (admin_token,) if t],
                       "metrics": [t for t in (metrics_token, admin_token) if t]}
        self.rate, self.window_s = rate, window_s
        self._admin_calls = RateWindow(rate, window_s)
        self._failures: OrderedDict[str, RateWindow] = OrderedDict()
        self._lock = threading.Lock()

    def enabled(self, scope: str) -> bool:
        return bool(self.tokens[scope])

    def check(self, request: Request, scope: str) -> None:
        """Return when ``request`` carries a token of ``scope``; else raise 401/403, or 429 when its
        client address already failed ``rate`` times this minute (or the admin rate is used up)."""
        given = _given_token(request)
        # every configured token is compared (constant time each), so timing says nothing
        matches = [hmac.compare_digest(given.encode("utf-8"), t.encode("utf-8")) for t in self.tokens[scope]]
        now = time.monotonic()
        if any(matches):
            if scope == "admin":
                with self._lock:
                    if self._admin_calls.full(now):
                        raise HTTPException(429, detail=f"too many admin requests (at most {self.rate} per minute)")
                    self._admin_calls.add(now)
            return
        client = request.client.host if request.client else "?"
        with self._lock:
            window = self._failures.pop(client, None) or RateWindow(self.rate, self.window_s)
            self._failures[client] = window  # most recent last
            while len(self._failures) > MAX_CLIENTS:
                self._failures.popitem(last=False)
            if window.full(now):
                raise HTTPException(429, detail=f"too many bad tokens from {client} (at most {self.rate} per minute)")
            window.add(now)
        if not given:
            raise HTTPException(401, detail="token required (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})
        raise HTTPException(403, detail="wrong token")


def _given_token(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-admin-token", "")
