"""Fault suite: synthetic runs (issue 32 item 5).

Before: deleting the active run's folder and rolling back failed ("unknown run") and left its
synthetic keys in Redis, since a run's keys were found through its folder only; a run whose
manifest was corrupt was left out of ``ecaug runs list``. Now every published run's id range is
recorded in ``<runs>/published.json`` before its keys are written, and removed keys are found
there; a broken run is listed with the reason.
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from _ecaug_cli import run_inprocess
from _stores import fake_run
from ecaug_feast import synth_store

SYNTH_FIELDS = (b"_ts:user_features_synth", b"_ts:interactions_synth")


def _synth_keys(url: str) -> int:
    import redis

    r = redis.Redis.from_url(url)
    return sum(1 for k in r.scan_iter(count=1000) if any(f in SYNTH_FIELDS for f in r.hkeys(k)))


@pytest.mark.slow
def test_deleted_active_run_leaves_no_keys_after_rollback(feast_env, capsys, monkeypatch):
    from ecaug_feast.features.build import USER_FEATURES

    uf = pd.read_parquet(feast_env.state_dir / "feast" / f"{USER_FEATURES}.parquet").head(40)
    rid = fake_run(40, uf.drop(columns=["user_id"]).assign(item_id=1))
    with synth_store.runs_lock():
        synth_store.activate(rid)
        synth_store.publish(rid, feast_env.repo_dir)
    assert _synth_keys(feast_env.redis_url) == 40
    shutil.rmtree(synth_store.runs_root() / rid)  # the user deletes the active run's folder

    res = run_inprocess(["runs", "rollback", "--json"], capsys, monkeypatch)
    assert res.code == 0, res.err
    out = json.loads(res.out.strip().splitlines()[-1])
    assert out["previous"] == rid and out["removed_keys"] >= 40
    now = synth_store.active_run()
    expected = 0 if now is None else len(synth_store._run_user_ids(synth_store.load_run(now)))
    assert _synth_keys(feast_env.redis_url) == expected  # no orphan keys of the deleted run
    with synth_store.runs_lock():  # leave the session state as other tests expect it: none active
        while synth_store.active_run() is not None:
            synth_store.rollback()
        synth_store.publish(None, feast_env.repo_dir)
    assert _synth_keys(feast_env.redis_url) == 0


def test_corrupt_manifest_is_listed_as_broken(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ECAUG_HOME", str(tmp_path / "home"))
    run = synth_store.runs_root() / "20240101-000000-abcd"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text('{"seq": 1, "gate": "pa', encoding="utf-8")
    res = run_inprocess(["runs", "list", "--json"], capsys, monkeypatch)
    assert res.code == 0, res.err
    (entry,) = json.loads(res.out.strip().splitlines()[-1])["runs"]
    assert entry["run_id"] == run.name and "corrupt manifest.json" in entry["broken"]
    res = run_inprocess(["runs", "list"], capsys, monkeypatch)
    assert f"{run.name}  BROKEN: corrupt manifest.json" in res.out
    with pytest.raises(Exception, match="corrupt"):
        synth_store.rollback(run.name)  # a broken run is never activated
