"""Embedded Redis: start/status/stop across processes, external URL, connection strings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis

from ecaug_feast.errors import EcaugError
from ecaug_feast.redis_server import EmbeddedRedis, feast_connection_string, redis_status


def _ecaug(args, home, extra_env=None):
    env = {k: v for k, v in os.environ.items() if k != "ECAUG_REDIS_URL"}
    env["ECAUG_HOME"] = str(home)
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", *args], capture_output=True, text=True, env=env, timeout=120)


def test_start_status_stop_across_processes(tmp_path):
    home = tmp_path / "h"
    r = _ecaug(["redis", "start", "--json"], home)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["running"] and info["url"].startswith("redis://127.0.0.1:")
    try:
        client = redis.Redis.from_url(info["url"])
        client.set("k", "v")
        st = json.loads(_ecaug(["redis", "status", "--json"], home).stdout.strip().splitlines()[-1])
        assert st["running"] and st["pid"] == info["pid"]
        # a second start is a no-op on the same server
        again = json.loads(_ecaug(["redis", "start", "--json"], home).stdout.strip().splitlines()[-1])
        assert again["pid"] == info["pid"]
    finally:
        stop = _ecaug(["redis", "stop", "--json"], home)
    assert json.loads(stop.stdout.strip().splitlines()[-1])["stopped"] is True
    assert (home / "redis" / "dump.rdb").exists()  # data kept under the state dir
    assert not EmbeddedRedis.for_state(home).status()["running"]
    # restart: the key survived
    server = EmbeddedRedis.for_state(home)
    url = server.start()
    try:
        assert redis.Redis.from_url(url).get("k") == b"v"
    finally:
        server.stop()


def test_external_url(redis_url, monkeypatch, tmp_path):
    monkeypatch.setenv("ECAUG_REDIS_URL", redis_url)
    st = redis_status()
    assert st == {"mode": "external", "url": redis_url, "running": True}
    r = _ecaug(["redis", "start"], tmp_path, {"ECAUG_REDIS_URL": redis_url})
    assert r.returncode == 2 and "ECAUG_REDIS_URL is set" in r.stderr and "Traceback" not in r.stderr


def test_busy_port(redis_url, tmp_path):
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(EcaugError, match="in use"):
        EmbeddedRedis.for_state(tmp_path, port=port).start()


@pytest.mark.parametrize(
    "url, expected",
    [
        ("redis://localhost:6379/0", "localhost:6379,db=0"),
        ("redis://localhost", "localhost:6379"),
        ("redis://:secret@cache.internal:6380/3", "cache.internal:6380,db=3,password=secret"),
        ("rediss://h:1", "h:1,ssl=true"),
        ("host:6379,db=1", "host:6379,db=1"),
    ],
)
def test_connection_strings(url, expected):
    assert feast_connection_string(url) == expected
