"""Fault suite, serving recovery (issue 12 item 5): a running app whose Redis stops and comes
back on *another port* answers non-degraded again without a restart, whether the address comes
from the embedded server's ``server.json`` or from ``$ECAUG_REDIS_URL``. Real parts: Feast, two
embedded redis-servers, a one-epoch TorchRec checkpoint, the FastAPI app."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ecaug_feast.redis_server import EmbeddedRedis, free_port

pytestmark = pytest.mark.slow
MODEL = "recovery-test"


@pytest.fixture(scope="module")
def checkpoint(feast_env) -> Path:
    """One epoch of the real trainer on the session's Feast data (as tests/serving does)."""
    from ecaug_feast.paths import models_dir
    from recommender.checkpoint import save_checkpoint
    from ecaug_feast.jobs.train_data import load_real_from_feast
    from recommender.train import TrainConfig, catalog_for, model_config_for, train

    data = load_real_from_feast(feast_env.data.name, store=feast_env.store)
    cfg = model_config_for(data, embedding_dim=16, hidden_dim=32, out_dim=16)
    res = train(data, None, cfg, TrainConfig(epochs=1, batch_size=256, seed=0))
    state = res.state if res.state is not None else res.model.state_dict()
    return save_checkpoint(models_dir() / MODEL, state, res.cfg, catalog_for(data), data={"dataset": feast_env.data.name})


def _copy_keys(src_url: str, dst_url: str) -> int:
    """The online store of the session Redis, copied key by key (DUMP/RESTORE) into another."""
    import redis

    src, dst = redis.Redis.from_url(src_url), redis.Redis.from_url(dst_url)
    n = 0
    for key in src.scan_iter(count=1000):
        dst.restore(key, 0, src.dump(key), replace=True)
        n += 1
    return n


def _get(client: TestClient, uid: int) -> dict:
    r = client.get("/recommend", params={"user_id": uid, "k": 5})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("mode", ["server_json", "env_url"])
def test_serving_follows_redis_to_a_new_port(mode, feast_env, checkpoint, tmp_path, monkeypatch):
    from ecaug_feast import feast_io
    from recommender.serving.app import create_app
    from recommender.serving.wiring import build_services, redis_relocator

    state = tmp_path / "state"
    first = EmbeddedRedis.for_state(state, port=free_port())
    url_a = first.start()
    second = None
    try:
        assert _copy_keys(feast_env.redis_url, url_a) > 0
        if mode == "server_json":
            monkeypatch.delenv("ECAUG_REDIS_URL")
        else:
            monkeypatch.setenv("ECAUG_REDIS_URL", url_a)
        store = feast_io.get_store(feast_io.render_repo(tmp_path / "repo", redis_url=url_a))
        services = build_services(MODEL, store=store, retry_s=0.2, relocate=redis_relocator(state))
        uid = int(feast_env.data.train["user_id"].iloc[0])
        with TestClient(create_app(services, admin_token=None)) as client:
            body = _get(client, uid)
            assert body["degraded"] is False and body["fallback"] is None

            first.stop()
            body = _get(client, uid)
            assert body["degraded"] is True and body["fallback"] == "feature_store_unavailable"

            second = EmbeddedRedis.for_state(state, port=free_port())  # same data dir: dump.rdb reloads
            url_b = second.start()
            assert url_b != url_a
            if mode == "env_url":
                monkeypatch.setenv("ECAUG_REDIS_URL", url_b)
            deadline = time.monotonic() + 15
            while True:  # old code: degraded until Redis came back on the *old* port
                body = _get(client, uid)
                if not body["degraded"] or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert body["degraded"] is False and body["fallback"] is None, body
            assert services.features.relocations == 1
            assert client.get("/health").json()["feature_store"] == "up"
    finally:
        for server in (first, second):
            if server is not None:
                server.stop()


def test_relocator_keeps_the_store_while_the_address_is_unchanged(feast_env, tmp_path, monkeypatch):
    from ecaug_feast import feast_io
    from recommender.serving.wiring import redis_relocator

    monkeypatch.setenv("ECAUG_REDIS_URL", feast_env.redis_url)
    store = feast_io.get_store(feast_io.render_repo(tmp_path / "repo", redis_url=feast_env.redis_url))
    assert redis_relocator()(store) is None
    monkeypatch.delenv("ECAUG_REDIS_URL")  # and nothing running in an empty state dir: nothing to move to
    assert redis_relocator(tmp_path / "empty")(store) is None
