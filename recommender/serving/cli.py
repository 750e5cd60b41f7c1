"""``ecaug serve``: the recommendation API (uvicorn). Heavy imports stay inside the command."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``ecaug`` app."""

    @app.command("serve")
    def serve(
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (0.0.0.0 in a container)."),
        port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
        model: str = typer.Option(
            "latest", "--model", "-m",
            help="Checkpoint dir or name under <state>/models/; 'latest' follows the newest one.",
        ),
        dataset: str = typer.Option(
            None, "--dataset", "-d", help="Processed dataset (default: the one the checkpoint was trained on)."
        ),
        poll: float = typer.Option(2.0, "--poll", min=0.1, help="Seconds between checks for a new checkpoint."),
        max_k: int = typer.Option(1000, "--max-k", min=1, help="Largest k accepted (422 above)."),
        log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
        workers: int = typer.Option(
            1, "--workers", min=1,
            help="Worker processes (each loads the model; /metrics is per worker).",
        ),
        threadpool: bool = typer.Option(
            False, "--threadpool/--inline",
            help="Run /recommend in FastAPI's thread pool instead of on the event loop.",
        ),
    ) -> None:
        """Serve GET /recommend?user_id=&k=, /items/{id}, /health, /metrics.

        Features come from Feast's online store (Redis: $ECAUG_REDIS_URL, else the embedded
        server, started if needed); the model is hot-reloaded when a new checkpoint lands.
        """
        import json
        import os

        import uvicorn

        from recommender.serving.app import create_app
        from recommender.serving.wiring import SERVE_ENV, build_services, configure_threads

        from ecaug_feast.errors import EcaugError

        configure_threads(1)
        try:
            services = build_services(model, dataset, poll_s=poll, max_k=max_k)
            bundle = services.models.load()  # fail here, as one line, rather than in the first request
            app_ = create_app(services, inline=not threadpool) if workers == 1 else None
        except EcaugError:
            raise
        except Exception as exc:  # a checkpoint that does not load, a catalogue that does not fit
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise EcaugError(f"cannot serve model {model!r}: {type(exc).__name__}: {first[:300]}") from None
        typer.echo(
            f"serving {bundle.version} ({len(bundle.index)} items, {bundle.index.metric}) "
            f"on http://{host}:{port}  (try: curl 'http://{host}:{port}/recommend?user_id=1&k=10')",
            err=True,
        )
        if workers > 1:  # each worker process builds its own services (see wiring.app_from_env)
            del services, bundle  # validated above; the workers load their own copies
            os.environ[SERVE_ENV] = json.dumps(
                {"model": model, "dataset": dataset, "poll_s": poll, "max_k": max_k, "inline": not threadpool}
            )
            uvicorn.run("recommender.serving.wiring:app_from_env", factory=True, workers=workers,
                        host=host, port=port, log_level=log_level, access_log=False)
            return
        uvicorn.run(app_, host=host, port=port, log_level=log_level, access_log=False)
