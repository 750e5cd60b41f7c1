"""A shop repo's publish (the switch of its twins' active run, ``jobs/repo_runs.py``) writes an
intent record and is repaired after a crash between its steps.

On a shop repo built like ``feast init``'s example (``_shop.py``; real Feast, the session's real
Redis, db 10 so the shop's keys are the only ones there): run A is published by ``ecaug augment
--repo``; the publish of run B dies after the active link moved and before A's rows left Redis.
The record ``<state>/repos/<project>/intents/publish.json`` is there (previous A, target B) and
the online store is inconsistent (A's rows online, B active); ``ecaug repair --repo`` completes
the switch: exactly B's synthetic keys, the shop's real keys byte for byte as before. Then a
rollback B -> A dies the same way and the next switch (``runs rollback --repo`` to no run)
deletes the rows of every run the record names: Redis holds the real keys alone, as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest

from _shop import dump_keys, ecaug_cli, feast_cli, write_shop_repo

pytestmark = pytest.mark.slow

DB = 10
PROJECT = "courier_crash"


def _crash(*_args, **_kwargs):
    raise RuntimeError("crash between the publish's steps")


def _twin_keys(repo: Path, run_dir: Path) -> set[bytes]:
    """The Redis keys Feast writes for the synthetic couriers of a run's twin file."""
    from feast import FeatureStore
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    store = FeatureStore(repo_path=str(repo))
    ids = pd.read_parquet(run_dir / "courier_hourly_synth.parquet", columns=["courier_id"])["courier_id"]
    rows = [EntityKey(join_keys=["courier_id"], entity_values=[Value(int64_val=int(u))]) for u in ids.unique()]
    return set(store._get_provider().online_store._generate_redis_keys_for_entities(store.config, rows))


def test_shop_publish_killed_between_steps_is_repaired(tmp_path: Path, redis_url: str, ecaug_home: Path,
                                                        monkeypatch, capsys):
    """The failure is a monkeypatched exception in the switch's second step (``keys_of``, which
    reads the previous run's keys to delete them): it stands in for a crash (kill -9, power
    loss) at that point, which the test process could not survive to check the record."""
    import redis

    from ecaug_feast import intents
    from ecaug_feast.jobs import repo_runs

    repo = write_shop_repo(tmp_path / "feature_repo", redis_url, DB, couriers=40, days=8, project=PROJECT)
    u = urlparse(redis_url)
    client = redis.Redis(host=u.hostname, port=u.port, db=DB)
    client.flushdb()
    feast_cli(repo, ["apply"], monkeypatch)
    feast_cli(repo, ["materialize", "2025-01-01T00:00:00", "2025-04-01T00:00:00", "--views", "courier_hourly"], monkeypatch)
    real = dump_keys(client)
    assert len(real) == 40
    home = ecaug_home / "repos" / PROJECT
    runs = repo / "data" / "ecaug_runs"
    augment = ["augment", "--repo", str(repo), "--entity", "courier", "--view", "courier_hourly",
               "--rows", "200", "--steps", "200", "--json"]

    # run A, published cleanly: no record left
    code, out, err = ecaug_cli(augment + ["--seed", "0"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    a = json.loads(out.strip().splitlines()[-1])
    assert a["activated"] is True
    keys_a = set(dump_keys(client)) - set(real)
    assert keys_a == _twin_keys(repo, runs / a["run_id"]) and intents.pending(home) == []

    # run B's publish dies after the link moved, before A's rows are deleted
    with monkeypatch.context() as m:
        m.setattr(repo_runs, "keys_of", _crash)
        with pytest.raises(RuntimeError, match="crash"):
            ecaug_cli(augment + ["--seed", "1"], capsys, monkeypatch)
    b_id = (runs / "active").resolve().name
    assert b_id != a["run_id"] and (runs / b_id / "manifest.json").exists()
    [rec] = intents.pending(home)
    assert (home / "intents" / "publish.json").exists() and rec["step"] == "publish"
    assert rec["args"]["previous"] == a["run_id"] and rec["args"]["target"] == b_id
    assert rec["args"]["repo"] == str(repo) and rec["args"]["root"] == str(runs)
    assert set(dump_keys(client)) - set(real) == keys_a  # inconsistent: B active, A's rows online
    # ecaug's own records say nothing of the shop (the folder itself may exist: ecaug_home is shared
    # by the session's tests, and others write their own intents there)
    assert not [r for r in intents.pending(ecaug_home) if str(repo) in json.dumps(r.get("args", {}))]

    # ecaug repair --repo completes the switch
    code, out, err = ecaug_cli(["repair", "--repo", str(repo), "--json"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    res = json.loads(out.strip().splitlines()[-1])
    assert [r["step"] for r in res["repaired"]] == ["publish"] and res["pending"] == []
    assert res["repaired"][0]["active"] == b_id and res["repaired"][0]["removed_keys"] == len(keys_a)
    assert intents.pending(home) == []
    now = dump_keys(client)
    assert {k: now.get(k) for k in real} == real  # the shop's real keys, byte for byte
    keys_b = _twin_keys(repo, runs / b_id)
    assert set(now) - set(real) == keys_b and not keys_b & keys_a
    code, out, _ = ecaug_cli(["repair", "--repo", str(repo), "--json"], capsys, monkeypatch)
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["repaired"] == []

    # a rollback B -> A dies the same way; the next switch deletes every named run's rows
    with monkeypatch.context() as m:
        m.setattr(repo_runs, "keys_of", _crash)
        with pytest.raises(RuntimeError, match="crash"):
            ecaug_cli(["runs", "rollback", "--repo", str(repo)], capsys, monkeypatch)
    [rec] = intents.pending(home)
    assert (rec["args"]["previous"], rec["args"]["target"]) == (b_id, a["run_id"])
    assert (runs / "active").resolve().name == a["run_id"]
    assert set(dump_keys(client)) - set(real) == keys_b  # A active, B's rows online
    code, out, err = ecaug_cli(["runs", "rollback", "--repo", str(repo), "--json"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    back = json.loads(out.strip().splitlines()[-1])
    assert back["active"] is None and back["interrupted_runs"] == [b_id]
    assert intents.pending(home) == []
    assert dump_keys(client) == real  # only the shop's real keys, as before any run
