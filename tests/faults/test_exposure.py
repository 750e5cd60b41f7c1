"""Fault suite, exposure (issue 12 item 8): ``/admin/*`` needs a token (off without one) and is
rate limited, ``/docs`` is off by default, a long bad input is not echoed back, and a Redis
password never leaves the process: not in ``redis status --json``, errors, logs, the demo's JSON
or the rendered feature_store.yaml."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from _ecaug_cli import run_inprocess
from recommender.serving.app import Services, create_app
from recommender.serving.components import ItemCatalog, Popularity, SeenItems, UserFeatures
from recommender.serving.index import ItemIndex
from recommender.serving.metrics import ServingMetrics
from recommender.serving.model_bundle import ModelBundle, ModelHolder

TOKEN = "t0ken-" + "x" * 26
PASSWORD = "s3cret-pw-4711"


class _Reader:
    def read(self, user_ids):
        return [UserFeatures(u, True, {"n_interactions": 1, "recent_items": [1]}) for u in user_ids]

    def ping(self) -> bool:
        return True


def _services() -> Services:
    items = pd.DataFrame({"item_id": np.arange(1, 21), "attributes": [[1]] * 20})
    vecs = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    loads = []

    def load() -> ModelBundle:
        loads.append(1)
        return ModelBundle(f"m{len(loads)}", ItemIndex.build(vecs, np.arange(1, 21)), lambda fs: vecs[: len(fs)])

    inter = pd.DataFrame({"user_id": [1, 2], "item_id": [1, 2]})
    return Services(
        features=_Reader(), models=ModelHolder(load, lambda: 0, poll_s=60.0), seen=SeenItems.from_interactions(inter),
        popularity=Popularity.from_interactions(inter, catalogue=items["item_id"]), catalog=ItemCatalog(items),
        metrics=ServingMetrics(),
    )


@pytest.fixture()
def no_admin_env(monkeypatch):
    for k in ("ECAUG_ADMIN_TOKEN", "ECAUG_ADMIN_TOKEN_FILE", "ECAUG_DOCS"):
        monkeypatch.delenv(k, raising=False)


def test_admin_and_docs_are_off_without_configuration(no_admin_env):
    # old code: POST /admin/reload reloaded for anyone, /docs and /openapi.json were public
    with TestClient(create_app(_services())) as client:
        assert client.post("/admin/reload").status_code == 404
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(path).status_code == 404, path
        assert client.get("/recommend", params={"user_id": 1, "k": 3}).status_code == 200


def test_admin_needs_the_token_from_env(no_admin_env, monkeypatch):
    monkeypatch.setenv("ECAUG_ADMIN_TOKEN", TOKEN)
    with TestClient(create_app(_services())) as client:
        assert client.post("/admin/reload").status_code == 401
        assert client.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 403
        r = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.json()["model_version"].startswith("m")
        assert client.post("/admin/reload", headers={"X-Admin-Token": TOKEN}).status_code == 200


def test_admin_token_from_file_and_rate_limit(no_admin_env, monkeypatch, tmp_path):
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    monkeypatch.setenv("ECAUG_ADMIN_TOKEN_FILE", str(f))
    # old code: 810 reloads/s were accepted
    with TestClient(create_app(_services(), admin_rate=5)) as client:
        codes = [client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}).status_code for _ in range(8)]
    assert codes[:5] == [200] * 5 and codes[5:] == [429] * 3


def test_guessing_the_token_is_rate_limited_too(no_admin_env, monkeypatch):
    monkeypatch.setenv("ECAUG_ADMIN_TOKEN", TOKEN)
    with TestClient(create_app(_services(), admin_rate=3)) as client:
        codes = [client.post("/admin/reload", headers={"Authorization": f"Bearer guess{i}"}).status_code for i in range(5)]
    assert codes == [403, 403, 403, 429, 429]


def test_unreadable_token_file_is_an_error(no_admin_env, monkeypatch, tmp_path):
    from ecaug_feast.errors import EcaugError

    monkeypatch.setenv("ECAUG_ADMIN_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(EcaugError, match="cannot read the admin token"):
        create_app(_services())


def test_docs_on_when_asked(no_admin_env, monkeypatch):
    monkeypatch.setenv("ECAUG_DOCS", "1")
    with TestClient(create_app(_services())) as client:
        assert client.get("/openapi.json").status_code == 200


def test_a_10kb_user_id_is_not_echoed(no_admin_env):
    huge = "9" * 10_000
    with TestClient(create_app(_services())) as client:
        r = client.get("/recommend", params={"user_id": huge})
    assert r.status_code == 422
    assert huge not in r.text and len(r.text) < 1000
    assert "10000 characters" in r.text


# ---------------------------------------------------------------- redaction

def test_redact_helper():
    from ecaug_feast.redact import redact

    assert redact(f"redis://:{PASSWORD}@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact(f"redis://user:{PASSWORD}@h:1") == "redis://user:***@h:1"
    assert redact(f"127.0.0.1:6379,db=0,password={PASSWORD},ssl=true") == "127.0.0.1:6379,db=0,password=***,ssl=true"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_redis_status_json_hides_the_password(capsys, monkeypatch):
    from ecaug_feast.redis_server import free_port

    # old code: {"url": "redis://:s3cret-pw-4711@..."} on stdout
    monkeypatch.setenv("ECAUG_REDIS_URL", f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0")
    res = run_inprocess(["redis", "status", "--json"], capsys, monkeypatch)
    assert res.code == 1 and PASSWORD not in res.out + res.err
    assert json.loads(res.out.strip().splitlines()[-1])["url"].startswith("redis://:***@127.0.0.1:")


def test_errors_and_logs_hide_the_password(capsys, monkeypatch, tmp_path, caplog):
    from ecaug_feast.redis_server import free_port

    monkeypatch.setenv("ECAUG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ECAUG_REDIS_URL", f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0")
    res = run_inprocess(["redis", "start"], capsys, monkeypatch)  # "ECAUG_REDIS_URL is set (...)"
    assert res.clean_error and PASSWORD not in res.err and "***" in res.err, res.err
    res = run_inprocess(["apply"], capsys, monkeypatch)  # "no Redis answers there"
    assert res.clean_error and PASSWORD not in res.err, res.err
    with caplog.at_level(logging.INFO):
        logging.getLogger("ecaug.test").warning("connecting to redis://:%s@h:1", PASSWORD)
    assert PASSWORD not in caplog.text and "redis://:***@h:1" in caplog.text


def test_rendered_feature_store_yaml_holds_no_password(tmp_path, monkeypatch):
    from feast.repo_config import load_repo_config

    from ecaug_feast import feast_io

    monkeypatch.delenv("ECAUG_REDIS_PASSWORD", raising=False)
    repo = feast_io.render_repo(tmp_path / "repo", state_dir=tmp_path, redis_url=f"redis://:{PASSWORD}@127.0.0.1:6399/1")
    text = (repo / "feature_store.yaml").read_text()
    assert PASSWORD not in text and "password=${ECAUG_REDIS_PASSWORD}" in text
    # Feast still gets the password: it expands ${...} from the environment when it reads the yaml
    cfg = load_repo_config(repo, repo / "feature_store.yaml")
    assert cfg.online_store.connection_string == f"127.0.0.1:6399,db=1,password={PASSWORD}"


def test_demo_json_summary_hides_the_password(monkeypatch, capsys):
    """The demo's JSON summary path, on its redis and summary steps only (a step result that
    carries a password-bearing URL, as ``step_redis`` returns it for such an ECAUG_REDIS_URL)."""
    from ecaug_feast.cli import demo_cmd

    monkeypatch.setattr(demo_cmd, "DEMO_STEPS", [
        demo_cmd.Step("redis", lambda ctx: {"url": f"redis://:{PASSWORD}@127.0.0.1:1/0", "mode": "external"}),
        demo_cmd.Step("summary", demo_cmd.step_summary),
    ])
    res = run_inprocess(["demo", "--json"], capsys, monkeypatch)
    assert res.code == 0, res.err
    assert PASSWORD not in res.out and "redis://:***@127.0.0.1:1/0" in res.out
