"""``ecaug serve``: the recommendation API (:mod:`ecaug_feast.jobs.serve`). Heavy imports stay inside the command."""

from __future__ import annotations

from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``ecaug`` app."""

    @app.command("serve")
    def serve(
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (0.0.0.0 in a container)."),
        port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
        model: str = typer.Option(
            "latest", "--model", "-m",
            help="Checkpoint dir or name under <state>/models/ (with --repo: <state>/repos/<project>/models/); "
                 "'latest' follows the newest one.",
        ),
        repo: Optional[str] = typer.Option(
            None, "--repo",
            help="A shop's own Feast repo: serve the model `ecaug train --repo` trained from it; "
                 "user_id is the shop's user key, item ids are its item keys.",
        ),
        dataset: str = typer.Option(
            None, "--dataset", "-d", help="Processed dataset (default: the one the checkpoint was trained on)."
        ),
        poll: float = typer.Option(2.0, "--poll", min=0.1, help="Seconds between checks for a new checkpoint."),
        max_k: int = typer.Option(1000, "--max-k", min=1, help="Largest k accepted (422 above)."),
        log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
        workers: Optional[int] = typer.Option(
            None, "--workers", min=1,
            help="Worker processes, each loading the model once (default: one per core). "
                 "/metrics counts per worker.",
        ),
        threadpool: bool = typer.Option(
            False, "--threadpool/--inline",
            help="Run /recommend in FastAPI's thread pool instead of on the event loop.",
        ),
    ) -> None:
        """Serve GET /recommend?user_id=&k=, /items/{id}, /health, /metrics.

        Features come from Feast's online store (Redis: $ECAUG_REDIS_URL, else
        the embedded server, started if needed). A new checkpoint is hot-reloaded.

        /metrics needs $ECAUG_METRICS_TOKEN (scrape only) or $ECAUG_ADMIN_TOKEN
        as 'Authorization: Bearer <token>' (or from a file: ..._TOKEN_FILE);
        without either it is off (404). POST /admin/reload: the admin token.

        With --repo R: the model trained from a shop's repo; the user's history
        is the list feature it was trained with, read from the shop's online store.

        A port in use exits 2 before anything is loaded.
        """
        from ecaug_feast.jobs.serve import serve as serve_job
        from ecaug_feast.jobs.workspace import Workspace

        serve_job(Workspace.from_env(repo=repo), host=host, port=port, model=model, dataset=dataset, poll_s=poll, max_k=max_k,
                  log_level=log_level, workers=workers, threadpool=threadpool, announce=lambda s: typer.echo(s, err=True))
