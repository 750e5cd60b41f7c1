"""The serve job (``ecaug serve``): Redis up, services built and checked, then uvicorn.

The API itself lives in :mod:`recommender.serving`; this job only composes it for a workspace.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from ecaug_feast.errors import EcaugError
from ecaug_feast.jobs import repair
from ecaug_feast.jobs.workspace import Workspace


def build(ws: Workspace, model: str | Path = "latest", dataset: str | None = None, poll_s: float = 2.0,
          max_k: int = 1000) -> tuple[Any, Any]:
    """Services over ``ws``'s online store, with the model loaded once so a checkpoint that does
    not load fails here as one line rather than in the first request. Returns ``(services, bundle)``.
    Call inside ``ws.online()`` (the features are read from Redis)."""
    from recommender.serving.wiring import build_services, redis_relocator

    try:
        store = ws.store()
        # the rendered repo follows the embedded Redis if it restarts elsewhere; a shop's repo or
        # an external Redis keeps its address
        relocate = redis_relocator(ws.state_dir) if ws.repo_dir is None and ws.redis_url is None else None
        services = build_services(model, dataset, store=store, relocate=relocate, poll_s=poll_s, max_k=max_k)
        bundle = services.models.load()
    except EcaugError:
        raise
    except Exception as exc:  # a checkpoint that does not load, a catalogue that does not fit
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise EcaugError(f"cannot serve model {str(model)!r}: {type(exc).__name__}: {first[:300]}") from None
    return services, bundle


def serve(ws: Workspace, host: str = "127.0.0.1", port: int = 8000, model: str = "latest", dataset: str | None = None,
          poll_s: float = 2.0, max_k: int = 1000, log_level: str = "warning", workers: int = 1, threadpool: bool = False,
          announce: Callable[[str], None] = lambda s: None) -> None:
    """Serve ``/recommend`` until stopped. Starts (or attaches) Redis first; ``announce`` gets the
    one line saying what is served where. ``workers`` > 1: each uvicorn worker builds its own
    services from ``$ECAUG_SERVE_CONFIG`` (:func:`recommender.serving.wiring.app_from_env`)."""
    import uvicorn

    from recommender.serving.app import create_app
    from recommender.serving.wiring import SERVE_ENV, configure_threads

    configure_threads(1)
    with ws.online():
        repair.redo_pending(ws)  # a crash left Redis behind the offline store: redo that step before serving
        services, bundle = build(ws, model, dataset, poll_s=poll_s, max_k=max_k)
        announce(f"serving {bundle.version} ({len(bundle.index)} items, {bundle.index.metric}) "
                 f"on http://{host}:{port}  (try: curl 'http://{host}:{port}/recommend?user_id=1&k=10')")
        if workers > 1:  # validated above; the workers load their own copies
            del services, bundle
            os.environ[SERVE_ENV] = json.dumps(
                {"model": model, "dataset": dataset, "poll_s": poll_s, "max_k": max_k, "inline": not threadpool}
            )
            uvicorn.run("recommender.serving.wiring:app_from_env", factory=True, workers=workers,
                        host=host, port=port, log_level=log_level, access_log=False)
            return
        uvicorn.run(create_app(services, inline=not threadpool), host=host, port=port, log_level=log_level, access_log=False)


def check(ws: Workspace, model: str | Path, dataset: str | None, user_id: int, k: int = 10) -> dict[str, Any]:
    """One ``GET /recommend`` through the real app in-process (Redis features -> user tower ->
    FAISS); the demo's ``serve_check`` step. Raises when the app does not answer 200."""
    from fastapi.testclient import TestClient

    from recommender.serving.app import create_app

    with ws.online():
        services, _bundle = build(ws, model, dataset)
        with TestClient(create_app(services)) as client:
            r = client.get("/recommend", params={"user_id": user_id, "k": k})
    if r.status_code != 200:
        raise EcaugError(f"/recommend answered {r.status_code}: {r.text[:200]}")
    body = r.json()
    return {"request": f"GET /recommend?user_id={user_id}&k={k}", "items": [it["item_id"] for it in body["items"]],
            "fallback": body.get("fallback"), "model_version": body.get("model_version")}
