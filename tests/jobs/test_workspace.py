"""Workspace: resolved once, nothing created on read, Redis only through ``online()`` (real Redis)."""

from __future__ import annotations

import pytest

from ecaug_feast.errors import EcaugError
from ecaug_feast.jobs.workspace import Workspace


@pytest.fixture
def bare_env(tmp_path, monkeypatch):
    """A state dir that does not exist yet and no external Redis."""
    state = tmp_path / "state"
    monkeypatch.setenv("ECAUG_HOME", str(state))
    monkeypatch.delenv("ECAUG_REDIS_URL", raising=False)
    return state


def test_from_env_creates_nothing(bare_env):
    ws = Workspace.from_env()
    assert ws.state_dir == bare_env.resolve()
    assert ws.redis_url is None and ws.repo_dir is None
    assert ws.runs_dir == bare_env / "runs" and ws.models_dir == bare_env / "models"
    assert not bare_env.exists()


def test_from_env_refuses_a_folder_that_is_not_a_feast_repo(bare_env, tmp_path):
    with pytest.raises(EcaugError, match="no feature_store.yaml"):
        Workspace.from_env(repo=tmp_path)


def test_store_and_get_store_never_start_redis(bare_env):
    """Reading the registry / offline store must not start a redis-server (it used to)."""
    from ecaug_feast import feast_io

    store = Workspace.from_env().store()
    assert str(store.config.online_store.connection_string).startswith("127.0.0.1:0")
    feast_io.get_store()
    assert not (bare_env / "redis").exists()


def test_online_starts_the_embedded_redis_and_renders_the_repo_for_it(bare_env):
    from ecaug_feast.redis_server import current_url, feast_connection_string, ping

    ws = Workspace.from_env()
    with ws.online(keep=False) as url:
        assert ping(url)
        assert current_url(ws.state_dir) == url
        assert ws.store().config.online_store.connection_string == feast_connection_string(url)
    assert not ping(url)  # keep=False: the server this call started is stopped again
    assert current_url(ws.state_dir) is None


def test_online_with_an_external_url_that_does_not_answer(bare_env):
    from ecaug_feast.redis_server import free_port

    ws = Workspace(state_dir=bare_env, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(EcaugError, match="no Redis answers"):
        with ws.online():
            pass
    assert not (bare_env / "redis").exists()
