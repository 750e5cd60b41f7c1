"""Fault suite, exposure and Redis URLs (issue 32 items 6, 7, 9, 10): ``ecaug doctor`` never
prints the password of ``ECAUG_REDIS_URL``; every command reads a Redis URL the same way
(``:pw@``, ``user:pw@``, ``?password=``, %-encoded passwords) against a real password-protected
Redis, Feast included; a wrong password says "authentication failed"; a bad port or scheme and an
``ECAUG_HOME`` that is a file are one line (exit 2); redaction does not eat ordinary words."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from _ecaug_cli import run_inprocess

PASSWORD = "p@ss:w/rd%7-s3cret"  # needs %-encoding in a URL
USER_PASSWORD = "u-s3cret-4711"


@pytest.fixture(scope="module")
def protected_redis(tmp_path_factory):
    """A real redis-server with ``requirepass`` and an ACL user ``shop``; yields its port."""
    from ecaug_feast.redis_server import free_port, ping, redis_binary

    d = tmp_path_factory.mktemp("protected-redis")
    port = free_port()
    proc = subprocess.Popen([redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d), "--save", "",
                             "--appendonly", "no", "--requirepass", PASSWORD,
                             "--user", "shop", "on", f">{USER_PASSWORD}", "~*", "+@all"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while not ping(url, timeout=0.5):
        assert time.monotonic() < deadline and proc.poll() is None, "protected redis did not start"
        time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def _forms(port: int) -> dict[str, str]:
    enc = quote(PASSWORD, safe="")
    return {
        "userinfo, %-encoded": f"redis://:{enc}@127.0.0.1:{port}/0",
        "?password=, %-encoded": f"redis://127.0.0.1:{port}/0?password={enc}",
        "user:password": f"redis://shop:{USER_PASSWORD}@127.0.0.1:{port}/0",
    }


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------- item 6: doctor

def test_doctor_never_prints_the_redis_password(capsys, monkeypatch, protected_redis):
    # old code: "external $ECAUG_REDIS_URL redis://:<password>@127.0.0.1:... answers" (text and JSON)
    for url in _forms(protected_redis).values():
        monkeypatch.setenv("ECAUG_REDIS_URL", url)
        for args in (["doctor", "--no-import"], ["doctor", "--no-import", "--json"]):
            res = run_inprocess(args, capsys, monkeypatch)
            text = res.out + res.err
            assert not res.traceback, res.err
            for secret in (PASSWORD, quote(PASSWORD, safe=""), USER_PASSWORD):
                assert secret not in text, (url, args)
        check = next(c for c in _last_json(res.out)["checks"] if c["name"] == "redis-server")
        assert check["status"] == "ok" and "***@127.0.0.1" in check["detail"], check


# ---------------------------------------------------------------- item 7: one URL reader

@pytest.mark.parametrize("form", ["userinfo, %-encoded", "?password=, %-encoded", "user:password"])
def test_every_url_form_works_for_redis_status_and_feast(form, capsys, monkeypatch, tmp_path, protected_redis):
    """``redis status`` and the rendered Feast repo (what ``materialize`` and ``serve`` read
    through) both reach the protected server. Old code: Feast got the %-encoded password as is,
    no ``?password=`` and no user, and was refused."""
    from feast.infra.online_stores.redis import RedisOnlineStore
    from feast.repo_config import load_repo_config

    from ecaug_feast import feast_io

    url = _forms(protected_redis)[form]
    monkeypatch.setenv("ECAUG_REDIS_URL", url)
    monkeypatch.delenv(feast_io.REDIS_PASSWORD_ENV, raising=False)
    res = run_inprocess(["redis", "status", "--json"], capsys, monkeypatch)
    assert res.code == 0 and _last_json(res.out)["running"] is True, res.out + res.err
    repo = feast_io.render_repo(tmp_path / "repo", state_dir=tmp_path, redis_url=url)
    text = (repo / "feature_store.yaml").read_text()
    assert PASSWORD not in text and quote(PASSWORD, safe="") not in text and USER_PASSWORD not in text
    cfg = load_repo_config(repo, repo / "feature_store.yaml")
    assert RedisOnlineStore()._get_client(cfg.online_store).ping() is True


def test_wrong_password_says_authentication_failed(capsys, monkeypatch, tmp_path, protected_redis):
    # old code: "no Redis answers there" (apply), "not running" (status): as if the server were down
    monkeypatch.setenv("ECAUG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ECAUG_REDIS_URL", f"redis://:wrong-pw-123@127.0.0.1:{protected_redis}/0")
    res = run_inprocess(["apply"], capsys, monkeypatch)
    assert res.clean_error and "authentication failed" in res.err and "no Redis answers" not in res.err, res.err
    assert "wrong-pw-123" not in res.err
    res = run_inprocess(["redis", "status", "--json"], capsys, monkeypatch)
    assert res.code == 1 and "authentication failed" in _last_json(res.out)["detail"], res.out
    res = run_inprocess(["redis", "status"], capsys, monkeypatch)
    assert "authentication failed" in res.out + res.err
    res = run_inprocess(["doctor", "--no-import", "--json"], capsys, monkeypatch)
    check = next(c for c in _last_json(res.out)["checks"] if c["name"] == "redis-server")
    assert check["status"] == "fail" and "authentication failed" in check["detail"]


# ---------------------------------------------------------------- item 10: one line, exit 2

@pytest.mark.parametrize("url, says", [
    ("redis://127.0.0.1:99999/0", "bad port"),
    ("redis://127.0.0.1:abc/0", "bad port"),
    ("http://127.0.0.1:6379/0", "unsupported scheme"),
    ("redis://127.0.0.1:6379/zero", "bad database"),
    ("redis://[::1:6379/0", "not a Redis URL"),  # an unclosed IPv6 bracket: urlsplit's ValueError
])
@pytest.mark.parametrize("args", [["redis", "status"], ["apply"], ["materialize"]])
def test_bad_redis_url_is_one_line(url, says, args, capsys, monkeypatch, tmp_path):
    # old code: a ValueError traceback from redis-py's URL parser (57 lines)
    monkeypatch.setenv("ECAUG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ECAUG_REDIS_URL", url)
    res = run_inprocess(args, capsys, monkeypatch)
    assert res.clean_error and says in res.err, res.err


def test_ecaug_home_that_is_a_file_is_one_line(capsys, monkeypatch, tmp_path):
    # old code: a FileExistsError / NotADirectoryError traceback
    f = tmp_path / "home-file"
    f.write_text("not a folder\n")
    monkeypatch.delenv("ECAUG_REDIS_URL", raising=False)
    for home in (f, f / "below"):
        monkeypatch.setenv("ECAUG_HOME", str(home))
        for args in (["apply"], ["runs", "list"]):
            res = run_inprocess(args, capsys, monkeypatch)
            assert res.clean_error and "is a file, not a folder" in res.err, (args, res.err)
    res = run_inprocess(["doctor", "--no-import", "--json"], capsys, monkeypatch)
    check = next(c for c in _last_json(res.out)["checks"] if c["name"] == "state dir")
    assert check["status"] == "fail" and "is a file" in check["detail"]


# ---------------------------------------------------------------- item 9: redaction

def test_redaction_does_not_eat_a_path_error(capsys, monkeypatch, tmp_path):
    # old code: "<tmp>/token: *** file type (use .csv, .tsv or .parquet)"
    monkeypatch.setenv("ECAUG_HOME", str(tmp_path / "home"))
    for name in ("token", "secret", "password"):
        f = tmp_path / name
        f.write_text("u,i,t\n1,2,2024-01-01\n")
        res = run_inprocess(["ingest", "--interactions", str(f), "--map", "user=u,item=i,timestamp=t", "--name", "shop"],
                            capsys, monkeypatch)
        assert res.clean_error and f"{name}: unsupported file type" in res.err and "***" not in res.err, res.err


def test_redaction_still_masks_secrets():
    from ecaug_feast.redact import redact

    assert redact("/data/token: unsupported file type") == "/data/token: unsupported file type"
    assert redact("password: hunter22") == "password: ***"
    assert redact("token=abc123 x") == "token=*** x"
    assert redact("redis://127.0.0.1:1/0?password=abc&db=1") == "redis://127.0.0.1:1/0?password=***&db=1"
    assert redact("redis://:p@ss@h:1/0 then") == "redis://:***@h:1/0 then"  # an unencoded '@' in the password
    assert redact("h:1,username=shop,password=pw,ssl=true") == "h:1,username=shop,password=***,ssl=true"
