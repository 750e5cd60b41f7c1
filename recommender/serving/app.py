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

A model trained from a shop's repo (``ecaug serve --repo``, :mod:`recommender.serving.shop`) is
served by the same policy: ``user_id`` is the shop's key (a UUID string, an Int64), the history is
the shop's list feature read online, seen items and popularity come from the shop's events, and
``item_id`` in the answer (and in ``/items/{key}``) is the shop's item key.

Bad input (``k`` outside 1..max_k, non-integer or non-positive ids) is a 422 with a reason;
an unknown item in ``/items/{id}`` is a 404. The API answers 200 with a flagged degraded answer
rather than 503 while Redis is down: a shop page would rather show best-sellers than nothing.
A 422 body never echoes a long input back (a 10 KB ``user_id`` comes back as its length).

``/health`` says ``degraded`` (200) while the feature store is down or a materialize/publish was
interrupted and not yet redone (an unfinished intent under ``<state>/intents/``), ``no_model`` (503)
while no model is loaded.

Exposure (:mod:`recommender.serving.auth`): ``/admin/*`` needs the admin token, ``/metrics`` the
metrics token or the admin token; a route without a configured token does not exist (404).
Repeated bad tokens lock out the client address that sent them, never a request with the right
token. ``/docs``, ``/redoc`` and ``/openapi.json`` are off unless ``$ECAUG_DOCS=1``.
"""

from __future__ import annotations

import gc
import inspect
import logging
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any, Callable

import numpy as np
from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from ecaug_feast import paths
from ecaug_feast.intents import pending as pending_intents
from ecaug_feast.redact import redact

from recommender.serving.auth import ADMIN_TOKEN_ENV, METRICS_TOKEN_ENV, Guard, token_from_env
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
from recommender.serving.shop import MAX_KEY_CHARS

log = logging.getLogger(__name__)

MAX_ID = (1 << 63) - 1
DOCS_ENV = "ECAUG_DOCS"
ADMIN_RATE_PER_MIN = 10
_FROM_ENV: Any = object()  # sentinel: read the setting from the environment
_MAX_ECHO = 64  # longest input echoed back in a 422 body


def docs_from_env() -> bool:
    return os.environ.get(DOCS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


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
    # a shop's repo (``ecaug serve --repo``): parses ``user_id`` into the shop's key type (ValueError:
    # a 422); None: ecaug's own int ids. The item keys, popularity and seen items then come from
    # the model bundle's ``vocab`` (:mod:`recommender.serving.shop`), swapped with the model.
    user_key: Callable[[str], Any] | None = None


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


def _lifespan(s: Services) -> Callable[[FastAPI], Any]:
    """Load the model before the first request and watch for new checkpoints while serving."""

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

    return lifespan


def _items(ids: np.ndarray, scores: np.ndarray, vocab: Any = None) -> list[dict[str, Any]]:
    """The answer's items; with a shop's ``vocab`` their ids are the shop's item keys."""
    pairs = [(int(i), round(float(sc), 6)) for i, sc in zip(ids.tolist(), scores.tolist()) if i >= 0]
    keys = vocab.keys_of([i for i, _ in pairs]) if vocab is not None else [i for i, _ in pairs]
    return [{"item_id": key, "score": sc} for key, (_, sc) in zip(keys, pairs)]


def _vocab(bundle: ModelBundle | None) -> Any:
    return bundle.vocab if bundle is not None else None


class Recommender:
    """The ``/recommend`` answer policy (the table in the module docstring)."""

    def __init__(self, services: Services):
        self.s = services
        self.m = services.metrics

    def __call__(self, user_id: Any, k: int) -> JSONResponse:
        s, m, t0 = self.s, self.m, time.perf_counter()
        if k > s.max_k:
            raise HTTPException(422, detail=f"k must be between 1 and {s.max_k}, got {k}")
        bundle = s.models.current  # read once: a reload mid-request must not mix models
        vocab = _vocab(bundle)
        known = vocab.seen if vocab is not None else s.seen
        history = known.get(user_id)

        t = time.perf_counter()
        try:
            feats = s.features.read([user_id])[0]
        except FeatureStoreUnavailable:
            m.feature_store_up.set(0)
            return self.popular(user_id, k, history, "feature_store_unavailable", True, bundle, None, t0)
        m.feature_store_up.set(1)
        if vocab is not None:  # the shop's item keys -> this model's indices (unknown ones dropped)
            feats = vocab.localize(feats)
        m.stage.labels("features").observe(time.perf_counter() - t)

        if not feats.found:
            reason = "unknown_user" if user_id not in known else "no_online_features"
            return self.popular(user_id, k, history, reason, False, bundle, feats, t0)
        seen = np.union1d(history, np.asarray(feats.recent_items, dtype=np.int64))
        if feats.n_interactions == 0 and len(seen) == 0:
            return self.popular(user_id, k, seen, "cold_user", False, bundle, feats, t0)
        if bundle is None:
            return self.popular(user_id, k, seen, "model_unavailable", True, None, feats, t0)
        try:
            t = time.perf_counter()
            q = bundle.encode_users([feats])
            m.stage.labels("encode").observe(time.perf_counter() - t)
            t = time.perf_counter()
            res = bundle.index.search(q, k, exclude=[seen])
            m.stage.labels("search").observe(time.perf_counter() - t)
        except Exception:  # a bad checkpoint or feature row must not take the endpoint down
            log.exception("model failed for user %s", user_id)
            return self.popular(user_id, k, seen, "model_error", True, bundle, feats, t0)
        return self.answer(user_id, k, _items(res.item_ids[0], res.scores[0], vocab), None, False, bundle, feats,
                           len(seen), t0)

    def popular(self, user_id: Any, k: int, seen: np.ndarray, reason: str, degraded: bool,
                bundle: ModelBundle | None, feats: UserFeatures | None, t0: float) -> JSONResponse:
        self.m.fallbacks.labels(reason).inc()
        vocab = _vocab(bundle)
        ids, sc = (vocab.popularity if vocab is not None else self.s.popularity).top(k, exclude=seen)
        return self.answer(user_id, k, _items(ids, sc, vocab), reason, degraded, bundle, feats, len(seen), t0)

    @staticmethod
    def answer(user_id: Any, k: int, items: list, fallback: str | None, degraded: bool,
               bundle: ModelBundle | None, feats: UserFeatures | None, n_seen: int, t0: float) -> JSONResponse:
        ts = feats.event_timestamp if feats is not None else None
        return JSONResponse({
            "user_id": user_id, "k": k, "items": items, "fallback": fallback, "degraded": degraded,
            "model_version": bundle.version if bundle else None,
            "feature_timestamp": ts.isoformat() if ts else None,
            "excluded_seen": n_seen,
            "took_ms": round((time.perf_counter() - t0) * 1e3, 3),
        })


def _new_app(s: Services, show_docs: bool) -> FastAPI:
    app = FastAPI(
        title="ecaug-feast recommender",
        description="Top-K items from Redis features (Feast) + the TorchRec user tower + FAISS.",
        version="0.1.0",
        lifespan=_lifespan(s),
        docs_url="/docs" if show_docs else None,
        redoc_url="/redoc" if show_docs else None,
        openapi_url="/openapi.json" if show_docs else None,
    )
    app.state.services = s
    app.add_middleware(_MetricsMiddleware, metrics=s.metrics)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", ""),
                   "input": _short(e.get("input"))} for e in exc.errors()[:10]]
        return JSONResponse({"detail": errors}, status_code=422)

    return app


def _add_recommend(app: FastAPI, recommend: Recommender, inline: bool) -> None:
    """``/recommend`` for ecaug's own int ids, or for a shop's keys when ``Services.user_key`` parses them."""
    parse = recommend.s.user_key
    if parse is None:
        _recommend_route(app, recommend, "Top-k items for a user", int,
                         Query(..., ge=1, le=MAX_ID, description="Real user id (>= 1)."), _as_given, inline)
    else:
        _recommend_route(app, recommend, "Top-k items for a shop's user key", str,
                         Query(..., min_length=1, max_length=MAX_KEY_CHARS, description="The shop's user key."), parse, inline)


def _as_given(user_id: int) -> int:
    """ecaug's own ids: the query's validator already made them ints in 1..MAX_ID."""
    return user_id


def _recommend_route(app: FastAPI, recommend: Recommender, summary: str, key_type: type, key_q: Any,
                     parse: Callable[[Any], Any], inline: bool) -> None:
    """``GET /recommend?user_id=&k=``: ``user_id`` typed ``key_type`` and checked by ``key_q`` (a 422
    from FastAPI), then ``parse``d (a ValueError is a 422 with its reason, never the input), then the
    answer policy. ``inline``: the route runs on the event loop, else in FastAPI's thread pool."""

    def run(user_id: Any, k: int) -> JSONResponse:
        try:
            key = parse(user_id)
        except ValueError as exc:
            raise HTTPException(422, detail=f"user_id {exc}") from None
        return recommend(key, k)

    if inline:
        # On the event loop: no thread hand-off per request (two context switches that cost
        # ms on a loaded 2-core box); the work is ~1-3 ms of mostly GIL-holding Python anyway.
        async def recommend_route(user_id: Any, k: int) -> JSONResponse:
            return run(user_id, k)
    else:
        def recommend_route(user_id: Any, k: int) -> JSONResponse:  # type: ignore[misc]
            return run(user_id, k)

    # FastAPI reads the query parameters from the signature: the key's type and validator are
    # this variant's, so they are set here rather than written in the def
    arg = inspect.Parameter.POSITIONAL_OR_KEYWORD
    recommend_route.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter("user_id", arg, default=key_q, annotation=key_type),
        inspect.Parameter("k", arg, default=Query(10, ge=1, description="Number of items (1..max_k)."), annotation=int),
    ], return_annotation=JSONResponse)
    app.get("/recommend", summary=summary)(recommend_route)


def _unfinished(state_dir: FsPath | None) -> list[dict[str, Any]]:
    """Steps (materialize, publish, refresh) with an intent on record: running now, or
    interrupted and not yet redone (``ecaug repair``). Either way Redis may lag the offline store."""
    if state_dir is None:
        return []
    return [{"step": str(i.get("step")), "running": bool(i.get("running")), "started_at": i.get("started_at")}
            for i in pending_intents(state_dir)]


def _add_info(app: FastAPI, s: Services, state_dir: FsPath | None) -> None:
    if s.user_key is not None:
        _add_shop_item(app, s)
    else:
        _add_item(app, s)
    _add_health(app, s, state_dir)


def _add_shop_item(app: FastAPI, s: Services) -> None:
    @app.get("/items/{item_key}", summary="One of the shop's items: its popularity in the shop's events")
    def item(item_key: str = Path(..., min_length=1, max_length=MAX_KEY_CHARS)) -> JSONResponse:
        vocab = _vocab(s.models.current)
        idx = int(vocab.item_keys.index_of([item_key])[0]) if vocab is not None else 0
        if idx == 0:
            raise HTTPException(404, detail="unknown item key")
        return JSONResponse({"item_id": vocab.keys_of([idx])[0], "train_interactions": vocab.popularity.count(idx),
                             "in_index": True})


def _add_item(app: FastAPI, s: Services) -> None:
    @app.get("/items/{item_id}", summary="One item's attributes and popularity")
    def item(item_id: int = Path(..., ge=1, le=MAX_ID)) -> JSONResponse:
        row = s.catalog.get(item_id)
        if row is None:
            raise HTTPException(404, detail=f"unknown item_id {item_id}")
        bundle = s.models.current
        in_index = bool(bundle is not None and np.isin(item_id, bundle.index.item_ids))
        return JSONResponse({**row, "train_interactions": s.popularity.count(item_id), "in_index": in_index})


def _add_health(app: FastAPI, s: Services, state_dir: FsPath | None) -> None:
    @app.get("/health", summary="200 when a model is loaded; degraded: store down or a step unfinished")
    def health() -> JSONResponse:
        bundle = s.models.current
        fs_up = s.features.ping()
        s.metrics.feature_store_up.set(1 if fs_up else 0)
        unfinished = _unfinished(state_dir)
        body = {
            "status": ("ok" if fs_up and not unfinished else "degraded") if bundle else "no_model",
            "model_version": bundle.version if bundle else None,
            "index_items": len(bundle.index) if bundle else 0,
            "feature_store": "up" if fs_up else "down",
            "unfinished_steps": unfinished,
            "synthetic_items": bundle.info.get("synthetic_items") if bundle else None,
            "last_reload_error": s.models.last_error,
        }
        return JSONResponse(body, status_code=200 if bundle else 503)


def _add_protected(app: FastAPI, s: Services, guard: Guard) -> None:
    """``/metrics`` and ``/admin/reload``: each only when a token lets someone in."""
    if guard.enabled("metrics"):
        @app.get("/metrics", summary="Prometheus text format (metrics or admin token)")
        def metrics(request: Request) -> Response:
            guard.check(request, "metrics")
            bundle = s.models.current
            if bundle is not None:
                s.metrics.index_items.set(len(bundle.index))
                s.metrics.model_loaded_at.set(bundle.loaded_at)
            return Response(s.metrics.render(), media_type=s.metrics.content_type)

    if guard.enabled("admin"):
        @app.post("/admin/reload", summary="Reload the model from disk now (admin token)")
        def reload(request: Request) -> JSONResponse:
            guard.check(request, "admin")
            try:
                bundle = s.models.load()
            except Exception as exc:
                raise HTTPException(503, detail=redact(f"no model could be loaded: {exc}")) from exc
            return JSONResponse({"model_version": bundle.version, "error": s.models.last_error})


def create_app(
    services: Services,
    inline: bool = True,
    *,
    admin_token: str | None = _FROM_ENV,
    metrics_token: str | None = _FROM_ENV,
    docs: bool | None = None,
    admin_rate: int = ADMIN_RATE_PER_MIN,
    state_dir: FsPath | None = _FROM_ENV,
) -> FastAPI:
    """Build the FastAPI app around ``services``. The model is loaded before the first request
    (if it is not already) and watched for new checkpoints while the app runs.

    ``inline``: run ``/recommend`` on the event loop (lowest latency for one client) instead of
    FastAPI's thread pool (lets slow Redis reads of several clients overlap).
    ``admin_token`` / ``metrics_token``: tokens of ``/admin/*`` and ``/metrics`` (default: from the
    environment, :mod:`recommender.serving.auth`; None: that token is not set).
    ``docs``: serve ``/docs`` + ``/openapi.json`` (default: ``$ECAUG_DOCS``).
    ``admin_rate``: admin requests per minute, and bad tokens per client address per minute (429 above).
    ``state_dir``: where ``/health`` looks for unfinished steps (default ``$ECAUG_HOME``; None: not checked)."""
    guard = Guard(token_from_env(ADMIN_TOKEN_ENV) if admin_token is _FROM_ENV else admin_token,
                  token_from_env(METRICS_TOKEN_ENV) if metrics_token is _FROM_ENV else metrics_token, admin_rate)
    app = _new_app(services, docs_from_env() if docs is None else docs)
    _add_recommend(app, Recommender(services), inline)
    _add_info(app, services, paths.state_dir() if state_dir is _FROM_ENV else state_dir)
    _add_protected(app, services, guard)
    return app
