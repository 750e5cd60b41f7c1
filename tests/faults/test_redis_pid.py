"""Fault suite: ``ecaug redis stop|status`` against stale records and failed saves (issue 12, item 2).

Before: a ``server.json`` naming another process made ``stop`` SIGTERM then SIGKILL it and print
"redis stopped"; a failed ``SHUTDOWN SAVE`` (full disk) was followed by SIGKILL and "redis
stopped", losing most of the online store. Now the pid is checked against the real Redis before any
signal, and a failed save is an error that leaves the server (and its data) running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from ecaug_feast.redis_server import EmbeddedRedis, free_port


def ecaug(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ECAUG_REDIS_URL"}
    env["ECAUG_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.fixture
def sleeper():
    """A live process that is not Redis (what a recycled pid looks like)."""
    p = subprocess.Popen(["sleep", "120"])
    yield p
    p.kill()
    p.wait()


def _record(home: Path, pid: int, port: int) -> None:
    d = home / "redis"
    d.mkdir(parents=True, exist_ok=True)
    (d / "server.json").write_text(json.dumps({"pid": pid, "port": port, "url": f"redis://127.0.0.1:{port}/0",
                                               "host": "127.0.0.1"}))


def test_foreign_pid_is_never_signalled(tmp_path, sleeper):
    home = tmp_path / "home"
    _record(home, sleeper.pid, free_port())
    st = ecaug(["redis", "status", "--json"], home)
    assert st.returncode == 1
    info = json.loads(st.stdout.strip().splitlines()[-1])
    assert info["running"] is False and info["record"] == "foreign" and "sleep" in info["detail"]
    r = ecaug(["redis", "stop"], home)
    assert r.returncode == 0, r.stderr
    assert "not running" in r.stdout and str(sleeper.pid) in r.stdout and "nothing signalled" in r.stdout
    assert sleeper.poll() is None  # still alive: neither SIGTERM nor SIGKILL reached it
    assert not (home / "redis" / "server.json").exists()  # the wrong record is gone


def test_stale_pid_says_not_running(tmp_path):
    p = subprocess.Popen(["true"])
    p.wait()
    home = tmp_path / "home"
    _record(home, p.pid, free_port())
    st = EmbeddedRedis.for_state(home).status()
    assert st["running"] is False and st["record"] == "stale"
    r = ecaug(["redis", "stop", "--json"], home)
    assert r.returncode == 0 and json.loads(r.stdout.strip().splitlines()[-1])["stopped"] is False


@pytest.mark.slow
def test_record_with_wrong_pid_but_our_redis_on_the_port(tmp_path, sleeper):
    """The port answers with our data dir but the record names another pid: stop our Redis by
    protocol, never signal the recorded pid."""
    home = tmp_path / "home"
    server = EmbeddedRedis.for_state(home, port=free_port())
    url = server.start()
    real_pid = server.status()["pid"]
    info = json.loads(server.info_file.read_text())
    info["pid"] = sleeper.pid
    server.info_file.write_text(json.dumps(info))
    st = server.status()
    assert st["running"] and st["pid"] == real_pid
    res = server.shutdown()
    assert res["stopped"] and sleeper.poll() is None
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()


@pytest.mark.slow
def test_failed_save_is_an_error_and_the_server_keeps_its_data(tmp_path):
    home = tmp_path / "home"
    server = EmbeddedRedis.for_state(home, port=free_port())
    url = server.start()
    client = redis.Redis.from_url(url)
    client.set("k", "v")
    # dump.rdb as a directory: the snapshot cannot be renamed into place (a full disk as root)
    (home / "redis" / "dump.rdb").mkdir()
    try:
        r = ecaug(["redis", "stop"], home)
        assert r.returncode == 1, (r.stdout, r.stderr)
        errs = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert len(errs) == 1 and "SHUTDOWN SAVE" in errs[0] and "still running" in errs[0], r.stderr
        assert "Traceback" not in r.stderr and "redis stopped" not in r.stdout
        assert client.get("k") == b"v"  # not killed: the data is still there
        assert server.status()["running"]
    finally:
        (home / "redis" / "dump.rdb").rmdir()
    r = ecaug(["redis", "stop", "--json"], home)
    assert r.returncode == 0 and json.loads(r.stdout.strip().splitlines()[-1])["stopped"] is True
    assert (home / "redis" / "dump.rdb").is_file()
    url = server.start()  # the key survived the restart
    try:
        assert redis.Redis.from_url(url).get("k") == b"v"
    finally:
        server.stop()


@pytest.mark.slow
def test_unresponsive_redis_is_terminated_never_killed(tmp_path):
    """A hung server (SIGSTOP) is still recognised by its command line and asked to exit with
    SIGTERM, which lets it save; if it does not exit, stop reports it instead of SIGKILLing it."""
    import signal

    from ecaug_feast.errors import EcaugError
    from ecaug_feast.redis_server import RedisStopError

    home = tmp_path / "home"
    server = EmbeddedRedis.for_state(home, port=free_port())
    url = server.start()
    redis.Redis.from_url(url).set("k", "v")
    pid = server.status()["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        st = server.status()
        assert st["record"] == "hung" and not st["running"]
        with pytest.raises(EcaugError, match="does not answer"):
            server.start()  # no second server on the same data dir
        with pytest.raises(RedisStopError, match="not killed"):
            server.shutdown(timeout=1.0)
    finally:
        os.kill(pid, signal.SIGCONT)  # the pending SIGTERM now lets it save and exit
    deadline = time.monotonic() + 20
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert (home / "redis" / "dump.rdb").is_file()
    url = server.start()
    try:
        assert redis.Redis.from_url(url).get("k") == b"v"
    finally:
        server.stop()
