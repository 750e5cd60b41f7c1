"""The serve job (``ecaug serve``): the port bound, Redis up, services built and checked, then
uvicorn: one process, or (default: one per core) uvicorn's supervisor with N worker processes on
the bound socket, each loading the model once (the work is GIL-bound Python: threads would not
use a second core).

The API itself lives in :mod:`recommender.serving`; this job only composes it for a workspace.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import threading
import time
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
    from recommender.serving.wiring import build_repo_services, build_services, redis_relocator

    try:
        store = ws.store()
        if ws.repo_dir is not None:  # a shop's repo: its keys, its history feature, its checkpoints
            if dataset is not None:
                raise EcaugError("--dataset: not with --repo (the checkpoint names the shop's events)")
            services = build_repo_services(store, ws.models_dir, model, poll_s=poll_s, max_k=max_k)
        else:
            # the rendered repo follows the embedded Redis if it restarts elsewhere; an external
            # Redis keeps its address
            relocate = redis_relocator(ws.state_dir) if ws.redis_url is None else None
            services = build_services(model, dataset, store=store, relocate=relocate, poll_s=poll_s, max_k=max_k)
        bundle = services.models.load()
    except EcaugError:
        raise
    except Exception as exc:  # a checkpoint that does not load, a catalogue that does not fit
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise EcaugError(f"cannot serve model {str(model)!r}: {type(exc).__name__}: {first[:300]}") from None
    return services, bundle


SERVE_ENV = "ECAUG_SERVE_CONFIG"  # what each worker process builds (JSON), set by serve()
WORKER_HEALTHCHECK_S = 60  # a worker loading its model on a busy machine answers the supervisor late


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity; ``os.cpu_count()`` where unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything is loaded or announced: a port in use (or a
    host that is not this machine's) is one line, exit 2."""
    try:
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise EcaugError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise EcaugError(f"port {port} on {host} is in use: stop what listens there or choose another --port") from None
        raise EcaugError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)  # the worker processes serve on this socket
    return sock


def serve(ws: Workspace, host: str = "127.0.0.1", port: int = 8000, model: str = "latest", dataset: str | None = None,
          poll_s: float = 2.0, max_k: int = 1000, log_level: str = "warning", workers: int | None = None,
          threadpool: bool = False, announce: Callable[[str], None] = lambda s: None) -> None:
    """Serve ``/recommend`` until stopped. Binds the port first, starts (or attaches) Redis, loads
    and checks the model once here; ``announce`` then gets the one line saying what is served
    where. ``workers`` (default: the number of cores) > 1: uvicorn's supervisor runs that many
    processes on the one socket, each building its own services (:func:`worker_app`)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from recommender.serving.app import create_app
    from recommender.serving.wiring import configure_threads

    workers = workers or default_workers()
    sock = bind(host, port)
    try:
        configure_threads(1)
        with ws.online():
            if ws.repo_dir is None:  # ecaug's own steps; a shop's repo records none (its Redis is its own)
                repair.redo_pending(ws)  # a crash left Redis behind the offline store: redo that step before serving
            services, bundle = build(ws, model, dataset, poll_s=poll_s, max_k=max_k)
            announce(f"serving {bundle.version} ({len(bundle.index)} items, {bundle.index.metric}) "
                     f"on http://{host}:{port} with {workers} worker{'s' if workers > 1 else ''}  "
                     f"(try: curl 'http://{host}:{port}/recommend?user_id={_example_user(ws)}&k=10')")
            common = dict(log_level=log_level, access_log=False, timeout_worker_healthcheck=WORKER_HEALTHCHECK_S)
            if workers == 1:
                server = uvicorn.Server(uvicorn.Config(create_app(services, inline=not threadpool,
                                                                  state_dir=_intents_dir(ws)), **common))
                server.run(sockets=[sock])
                if not server.started:
                    raise EcaugError("the server did not start (see the log lines above)")
                return
            del services, bundle  # checked; each worker loads its own copy
            os.environ[SERVE_ENV] = json.dumps({"supervisor": os.getpid(),
                                                "state_dir": str(ws.state_dir), "repo_dir": ws.repo_dir and str(ws.repo_dir),
                                                "model": model, "dataset": dataset, "poll_s": poll_s, "max_k": max_k,
                                                "inline": not threadpool})
            config = uvicorn.Config(f"{__name__}:worker_app", factory=True, workers=workers, **common)
            Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()


def worker_app() -> Any:
    """uvicorn app factory of one worker process (``ecaug serve --workers N``): the same services
    as a single-process server, built from ``$ECAUG_SERVE_CONFIG``, the model loaded once."""
    from recommender.serving.app import create_app
    from recommender.serving.wiring import configure_threads

    from ecaug_feast.redis_server import external_url

    cfg = json.loads(os.environ[SERVE_ENV])
    _exit_with_supervisor(int(cfg["supervisor"]))
    configure_threads(1)
    repo = cfg.get("repo_dir")
    ws = Workspace(state_dir=Path(cfg["state_dir"]), repo_dir=Path(repo) if repo else None, redis_url=external_url())
    services, _bundle = build(ws, cfg["model"], cfg.get("dataset"), poll_s=float(cfg["poll_s"]), max_k=int(cfg["max_k"]))
    return create_app(services, inline=bool(cfg["inline"]), state_dir=_intents_dir(ws))


def _intents_dir(ws: Workspace) -> Path | None:
    """Where ``/health`` looks for unfinished steps: ecaug's own state; None for a shop's repo
    (ecaug's materialize/publish intents say nothing about the shop's Redis)."""
    return ws.state_dir if ws.repo_dir is None else None


def _example_user(ws: Workspace) -> str:
    return "1" if ws.repo_dir is None else "<your user key>"


def _exit_with_supervisor(supervisor: int, poll_s: float = 1.0) -> None:
    """Stop this worker (SIGTERM: uvicorn's graceful exit) once its supervisor is gone: a
    supervisor killed with SIGKILL cannot stop its workers, which would serve on (and hold the
    port) forever. The supervisor's pid comes from the config, not ``getppid()`` here: it may
    have died while this worker was still importing."""

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def check(ws: Workspace, model: str | Path, dataset: str | None, user_id: Any, k: int = 10) -> dict[str, Any]:
    """One ``GET /recommend`` through the real app in-process (Redis features -> user tower ->
    FAISS); the demo's ``serve_check`` step. Raises when the app does not answer 200."""
    from fastapi.testclient import TestClient

    from recommender.serving.app import create_app

    with ws.online():
        services, _bundle = build(ws, model, dataset)
        with TestClient(create_app(services, state_dir=_intents_dir(ws))) as client:
            r = client.get("/recommend", params={"user_id": user_id, "k": k})
    if r.status_code != 200:
        raise EcaugError(f"/recommend answered {r.status_code}: {r.text[:200]}")
    body = r.json()
    return {"request": f"GET /recommend?user_id={user_id}&k={k}", "items": [it["item_id"] for it in body["items"]],
            "fallback": body.get("fallback"), "model_version": body.get("model_version")}
