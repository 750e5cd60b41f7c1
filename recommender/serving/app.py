"""The HTTP API: ``/recommend``, ``/items/{id}``, ``/health``, ``/metrics``, ``/admin/reload``.

Everything the handlers use comes in through :class:`Services` (dependency injection), so the
same app runs on Feast+Redis in production and on anything with the same methods elsewhere.

Answer policy of ``/recommend`` (``fallback`` says which path produced the items):

==============================  ======================================  ===========================  ========
situation                       items                                   fallback                     degraded
==============================  ======================================  ===========================  ========
known user, features read       user tower + FAISS, seen removed        null                         false
id known to nobody              most popular                            unknown_user                 false
in history, no online row       most popular, seen removed              no_online_features           false
online row without history      most popular                            cold_user                    false
Redis / Feast unreachable       most popular, seen removed (local)      feature_store_unavailable    true
no model could be loaded        most popular, seen removed              model_unavailable            true
model raised on this row        most popular, seen removed              model_error                  true
==============================  ======================================  ===========================  ========

Bad input (``k`` outside 1..max_k, non-integer or non-positive ids) is a 422 with a reason;
an unknown item in ``/items/{id}`` is a 404. The API answers 200 with a flagged degraded answer
rather than 503 while Redis is down: a shop page would rather show best-sellers than nothing.
A 422 body never echoes a long input back (a 10 KB ``user_id`` comes back as its length).

Exposure: ``/admin/*`` exists only when an admin token is configured (``$ECAUG_ADMIN_TOKEN``, or
the file named by ``$ECAUG_ADMIN_TOKEN_FILE``); requests carry it as ``Authorization: Bearer
<token>`` (or ``X-Admin-Token``), compared in constant time, and at most ``admin_rate`` admin
requests per minute are served (429 above). ``/docs``, ``/redoc`` and ``/openapi.json`` are off
unless ``$ECAUG_DOCS=1``.
"""

from __future__ import annotations

import gc
import hmac
import logging
import os
import threading
import time
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from ecaug_feast.errors import EcaugError
from ecaug_feast.redact import redact

from recommender.serving.components import (
    FeatureReader,
    FeatureStoreUnavailable,
    ItemCatalog,
    Popularity,
    SeenItems,
    UserFeatures,
)
from recommender.serving.metrics import ServingMetrics
from recommender.serving.model_bundle import ModelBundle, ModelHolder

log = logging.getLogger(__name__)

MAX_ID = (1 << 63) - 1
ADMIN_TOKEN_ENV = "ECAUG_ADMIN_TOKEN"
ADMIN_TOKEN_FILE_ENV = "ECAUG_ADMIN_TOKEN_FILE"
DOCS_ENV = "ECAUG_DOCS"
ADMIN_RATE_PER_MIN = 10
_FROM_ENV: Any = object()  # sentinel: read the setting from the environment
_MAX_ECHO = 64  # longest input echoed back in a 422 body


def admin_token_from_env() -> str | None:
    """The admin token: ``$ECAUG_ADMIN_TOKEN``, else the first line of ``$ECAUG_ADMIN_TOKEN_FILE``;
    None (admin routes off) when neither is set. A named file that cannot be read is an error
    (serving without the admin routes the operator asked for would be a silent surprise)."""
    token = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
    if token:
        return token
    path = os.environ.get(ADMIN_TOKEN_FILE_ENV, "").strip()
    if not path:
        return None
    try:
        token = open(path, encoding="utf-8").read().strip()  # noqa: SIM115 - tiny file
    except OSError as exc:
        raise EcaugError(f"{path}: cannot read the admin token ({ADMIN_TOKEN_FILE_ENV}): {exc.strerror}") from None
    if not token:
        raise EcaugError(f"{path}: admin token file is empty ({ADMIN_TOKEN_FILE_ENV})")
    return token


def docs_from_env() -> bool:
    return os.environ.get(DOCS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class _RateLimit:
    """At most ``n`` events per ``window_s`` (sliding window; thread-safe)."""

    def __init__(self, n: int, window_s: float = 60.0):
        self.n, self.window_s = n, window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        now = time.monotonic()
        with self._lock:
            while self._times and now - self._times[0] >= self.window_s:
                self._times.popleft()
            if len(self._times) >= self.n:
                return False
            self._times.append(now)
            return True


def _short(value: Any) -> Any:
    """An input value safe to echo: long text is replaced by its length."""
    if isinstance(value, (str, bytes)) and len(value) > _MAX_ECHO:
        return f"<{len(value)} characters, not echoed>"
    if isinstance(value, dict):
        return {k: _short(v) for k, v in list(value.items())[:20]}
    if isinstance(value, (list, tuple)):
        return [_short(v) for v in list(value)[:20]]
    return value


@dataclass
class Services:
    """The components a request needs. ``max_k`` caps ``k`` (422 above it)."""

    features: FeatureReader
    models: ModelHolder
    seen: SeenItems
    popularity: Popularity
    catalog: ItemCatalog
    metrics: ServingMetrics
    max_k: int = 1000


def _route_of(path: str) -> str:
    # fixed label set: raw paths would give one time series per item id
    for r in ("/recommend", "/items", "/health", "/metrics", "/admin"):
        if path.startswith(r):
            return r
    return "other"


class _MetricsMiddleware:
    """Counts every response by route and status (a plain ASGI wrapper: ~µs per request)."""

    def __init__(self, app: Any, metrics: ServingMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = _route_of(scope.get("path", ""))
        status = [500]
        t0 = time.perf_counter()

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(route, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)


def _warm_up(s: Services) -> None:
    """One throw-away pass through every stage, so the first real request does not pay for
    Feast's registry load, Redis connection set-up and torch's first-call allocations."""
    try:
        bundle = s.models.current
        feats = s.features.read([1])
        if bundle is not None:
            bundle.index.search(bundle.encode_users(feats), 1)
    except Exception as exc:  # Redis may be down at start: that is served as degraded later
        log.info("warm-up skipped: %s", exc)


def create_app(
    services: Services,
    inline: bool = True,
    *,
    admin_token: str | None = _FROM_ENV,
    docs: bool | None = None,
    admin_rate: int = ADMIN_RATE_PER_MIN,
) -> FastAPI:
    """Build the FastAPI app around ``services``. The model is loaded before the first request
    (if it is not already) and watched for new checkpoints while the app runs.

    ``inline``: run ``/recommend`` on the event loop (lowest latency for one client) instead of
    FastAPI's thread pool (lets slow Redis reads of several clients overlap).
    ``admin_token``: token of ``/admin/*`` (default: from the environment; None: routes off).
    ``docs``: serve ``/docs`` + ``/openapi.json`` (default: ``$ECAUG_DOCS``).
    ``admin_rate``: admin requests per minute (429 above), counted before the token check so
    guessing is rate limited too."""
    s = services
    m = s.metrics
    token = admin_token_from_env() if admin_token is _FROM_ENV else admin_token
    show_docs = docs_from_env() if docs is None else docs
    admin_limit = _RateLimit(admin_rate, 60.0)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if s.models.current is None:
            s.models.load()
        _warm_up(s)
        # Everything loaded so far (Feast registry, torch, FAISS, the model) lives as long as the
        # process: move it out of the garbage collector's generations, so the collections that
        # requests trigger scan only request garbage (a full scan of the start-up heap is a
        # multi-ms pause: it showed as the p99 tail).
        gc.collect()
        gc.freeze()
        s.models.start()
        try:
            yield
        finally:
            s.models.stop()

    app = FastAPI(
        title="ecaug-feast recommender",
        description="Top-K items from Redis features (Feast) + the TorchRec user tower + FAISS.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if show_docs else None,
        redoc_url="/redoc" if show_docs else None,
        openapi_url="/openapi.json" if show_docs else None,
    )
    app.state.services = s
    app.add_middleware(_MetricsMiddleware, metrics=m)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", ""),
             "input": _short(e.get("input"))}
            for e in exc.errors()[:10]
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    def _items(ids: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
        return [
            {"item_id": int(i), "score": round(float(sc), 6)}
            for i, sc in zip(ids.tolist(), scores.tolist())
            if i >= 0
        ]

    def _popular(user_id: int, k: int, seen: np.ndarray, reason: str, degraded: bool,
                 bundle: ModelBundle | None, feats: UserFeatures | None, t0: float) -> JSONResponse:
        m.fallbacks.labels(reason).inc()
        ids, sc = s.popularity.top(k, exclude=seen)
        return _answer(user_id, k, _items(ids, sc), reason, degraded, bundle, feats, len(seen), t0)

    def _answer(user_id: int, k: int, items: list, fallback: str | None, degraded: bool,
                bundle: ModelBundle | None, feats: UserFeatures | None, n_seen: int, t0: float) -> JSONResponse:
        ts = feats.event_timestamp if feats is not None else None
        return JSONResponse(
            {
                "user_id": user_id,
                "k": k,
                "items": items,
                "fallback": fallback,
                "degraded": degraded,
                "model_version": bundle.version if bundle else None,
                "feature_timestamp": ts.isoformat() if ts else None,
                "excluded_seen": n_seen,
                "took_ms": round((time.perf_counter() - t0) * 1e3, 3),
            }
        )

    def recommend(user_id: int, k: int) -> JSONResponse:
        t0 = time.perf_counter()
        if k > s.max_k:
            raise HTTPException(422, detail=f"k must be between 1 and {s.max_k}, got {k}")
        bundle = s.models.current  # read once: a reload mid-request must not mix models
        history = s.seen.get(user_id)

        t = time.perf_counter()
        try:
            feats = s.features.read([user_id])[0]
        except FeatureStoreUnavailable:
            m.feature_store_up.set(0)
            return _popular(user_id, k, history, "feature_store_unavailable", True, bundle, None, t0)
        m.feature_store_up.set(1)
        m.stage.labels("features").observe(time.perf_counter() - t)

        if not feats.found:
            reason = "unknown_user" if user_id not in s.seen else "no_online_features"
            return _popular(user_id, k, history, reason, False, bundle, feats, t0)
        seen = np.union1d(history, np.asarray(feats.recent_items, dtype=np.int64))
        if feats.n_interactions == 0 and len(seen) == 0:
            return _popular(user_id, k, seen, "cold_user", False, bundle, feats, t0)
        if bundle is None:
            return _popular(user_id, k, seen, "model_unavailable", True, None, feats, t0)

        try:
            t = time.perf_counter()
            q = bundle.encode_users([feats])
            m.stage.labels("encode").observe(time.perf_counter() - t)
            t = time.perf_counter()
            res = bundle.index.search(q, k, exclude=[seen])
            m.stage.labels("search").observe(time.perf_counter() - t)
        except Exception:  # a bad checkpoint or feature row must not take the endpoint down
            log.exception("model failed for user %d", user_id)
            return _popular(user_id, k, seen, "model_error", True, bundle, feats, t0)
        return _answer(user_id, k, _items(res.item_ids[0], res.scores[0]), None, False, bundle, feats, len(seen), t0)

    user_q = Query(..., ge=1, le=MAX_ID, description="Real user id (>= 1).")
    k_q = Query(10, ge=1, description="Number of items (1..max_k).")
    if inline:
        # On the event loop: no thread hand-off per request (two context switches that cost
        # ms on a loaded 2-core box); the work is ~1-3 ms of mostly GIL-holding Python anyway.
        @app.get("/recommend", summary="Top-k items for a user")
        async def recommend_route(user_id: int = user_q, k: int = k_q) -> JSONResponse:
            return recommend(user_id, k)
    else:
        @app.get("/recommend", summary="Top-k items for a user")
        def recommend_route(user_id: int = user_q, k: int = k_q) -> JSONResponse:  # type: ignore[no-redef]
            return recommend(user_id, k)

    @app.get("/items/{item_id}", summary="One item's attributes and popularity")
    def item(item_id: int = Path(..., ge=1, le=MAX_ID)) -> JSONResponse:
        row = s.catalog.get(item_id)
        if row is None:
            raise HTTPException(404, detail=f"unknown item_id {item_id}")
        bundle = s.models.current
        in_index = bool(bundle is not None and np.isin(item_id, bundle.index.item_ids))
        return JSONResponse({**row, "train_interactions": s.popularity.count(item_id), "in_index": in_index})

    @app.get("/health", summary="200 when a model is loaded")
    def health() -> JSONResponse:
        bundle = s.models.current
        fs_up = s.features.ping()
        m.feature_store_up.set(1 if fs_up else 0)
        body = {
            "status": "ok" if bundle and fs_up else ("degraded" if bundle else "no_model"),
            "model_version": bundle.version if bundle else None,
            "index_items": len(bundle.index) if bundle else 0,
            "feature_store": "up" if fs_up else "down",
            "last_reload_error": s.models.last_error,
        }
        return JSONResponse(body, status_code=200 if bundle else 503)

    @app.get("/metrics", summary="Prometheus text format")
    def metrics() -> Response:
        bundle = s.models.current
        if bundle is not None:
            m.index_items.set(len(bundle.index))
            m.model_loaded_at.set(bundle.loaded_at)
        return Response(m.render(), media_type=m.content_type)

    def _check_admin(request: Request) -> None:
        if not admin_limit.allow():
            raise HTTPException(429, detail=f"too many admin requests (at most {admin_rate} per minute)")
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-admin-token", "")
        if not given:
            raise HTTPException(401, detail="admin token required (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.encode("utf-8"), str(token).encode("utf-8")):
            raise HTTPException(403, detail="wrong admin token")

    if token:  # without a configured token the admin routes do not exist (404)
        @app.post("/admin/reload", summary="Reload the model from disk now (admin token)")
        def reload(request: Request) -> JSONResponse:
            _check_admin(request)
            try:
                bundle = s.models.load()
            except Exception as exc:
                raise HTTPException(503, detail=redact(f"no model could be loaded: {exc}")) from exc
            return JSONResponse({"model_version": bundle.version, "error": s.models.last_error})

    return app
