"""The workspace every job runs in: state folder, Feast repo and Redis, resolved once.

An entry point (the CLI, the demo, a scheduler's task) builds one ``Workspace`` with
:meth:`Workspace.from_env` and passes it to each job, as Feast passes ``RepoConfig``: no job looks
up ``$ECAUG_HOME`` or ``$ECAUG_REDIS_URL`` itself.

Reading never changes anything: resolving the state folder creates no folder, and
:meth:`Workspace.store` (offline reads, registry) never starts Redis. Only
:meth:`Workspace.online` starts the embedded server (or checks the external one) for the jobs that
read or write the online store: materialize, publish a run, serve.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ecaug_feast import paths
from ecaug_feast.errors import EcaugError

if TYPE_CHECKING:
    from feast import FeatureStore


@dataclass(frozen=True)
class Workspace:
    """Where a job reads and writes.

    ``state_dir``: ``$ECAUG_HOME`` or ``./.ecaug`` (not created here). ``repo_dir``: a shop's own
    Feast repo (plugin use), used as it is; None = ecaug's repo rendered into
    ``<state>/feature_repo``. ``redis_url``: an external Redis; None = the embedded server whose
    data lives under ``<state>/redis``.
    """

    state_dir: Path
    repo_dir: Path | None = None
    redis_url: str | None = None

    @classmethod
    def from_env(cls, repo: str | Path | None = None, redis_url: str | None = None) -> "Workspace":
        """Resolve the workspace from the environment once (``$ECAUG_HOME``, ``$ECAUG_REDIS_URL``)."""
        from ecaug_feast.redis_server import external_url

        repo_dir = None
        if repo is not None:
            repo_dir = Path(repo).expanduser().resolve()
            if not (repo_dir / "feature_store.yaml").exists():
                raise EcaugError(f"{repo_dir}: not a Feast repo (no feature_store.yaml)")
        return cls(state_dir=paths.state_dir(), repo_dir=repo_dir, redis_url=(redis_url or external_url()))

    # ------------------------------------------------------------------ folders (never created here)
    @property
    def datasets_dir(self) -> Path:
        return self.state_dir / "datasets"

    @property
    def feast_dir(self) -> Path:
        return self.state_dir / "feast"

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    @property
    def models_dir(self) -> Path:
        """``<state>/models``; for a shop's repo ``<state>/repos/<feast project>/models`` (its
        checkpoints never mix with ecaug's own, and never land inside the shop's repo)."""
        if self.repo_dir is None:
            return self.state_dir / "models"
        return repo_home(self.state_dir, repo_project(self.repo_dir)) / "models"

    # ------------------------------------------------------------------ Feast
    def feast_repo(self, redis_url: str | None = None) -> Path:
        """The Feast repo jobs run against: the shop's repo as it is, else ecaug's repo rendered
        for this state dir naming ``redis_url`` (default: the Redis running now, none started)."""
        if self.repo_dir is not None:
            return self.repo_dir
        from ecaug_feast import feast_io
        from ecaug_feast.redis_server import NOT_RUNNING_URL, current_url

        url = redis_url or self.redis_url or current_url(self.state_dir) or NOT_RUNNING_URL
        return feast_io.render_repo(feast_io.default_repo_dir(self.state_dir), state_dir=self.state_dir, redis_url=url)

    def store(self) -> "FeatureStore":
        """A ``FeatureStore`` for offline reads and the registry. Never starts Redis."""
        from ecaug_feast import feast_io

        return feast_io.get_store(self.feast_repo())

    @contextlib.contextmanager
    def online(self, keep: bool = True) -> Iterator[str]:
        """Redis for online reads and writes; yields its URL, with the repo rendered for it.

        External (``redis_url``): it must answer; nothing is started or stopped. Embedded: started
        under ``<state>/redis`` when not running; ``keep=False`` stops it again on exit if this
        call started it (the default leaves it up, as ``ecaug materialize`` and ``serve`` need).
        A shop repo names its own online store: its address is yielded, nothing is started."""
        from ecaug_feast.redis_server import EmbeddedRedis, ping

        if self.repo_dir is not None and self.redis_url is None:
            yield str(self.store().config.online_store.connection_string)
            return
        started: EmbeddedRedis | None = None
        if self.redis_url is not None:
            if not ping(self.redis_url, timeout=3.0):
                raise EcaugError(f"ECAUG_REDIS_URL={self.redis_url}: no Redis answers there")
            url = self.redis_url
        else:
            server = EmbeddedRedis.for_state(self.state_dir)
            was_running = server.status()["running"]
            url = server.start()
            started = None if was_running else server
        try:
            self.feast_repo(url)
            yield url
        finally:
            if started is not None and not keep:
                started.stop()


def repo_home(state_dir: Path, project: str) -> Path:
    """``<state>/repos/<feast project>``: what ecaug keeps of a shop's repo (its models, the
    intent record of its publish), never inside the shop's repo."""
    return Path(state_dir) / "repos" / project


def repo_project(repo_dir: Path) -> str:
    """The ``project`` of a Feast repo's ``feature_store.yaml``, read with a YAML parser alone (no
    Feast import), checked to be one safe path component."""
    import yaml

    from ecaug_feast.names import check_name

    path = Path(repo_dir) / "feature_store.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise EcaugError(f"{path}: cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    project = raw.get("project") if isinstance(raw, dict) else None
    if not project:
        raise EcaugError(f"{path}: no 'project' set")
    return check_name(str(project), f"{path}: project")
