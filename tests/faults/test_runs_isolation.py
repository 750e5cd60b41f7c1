"""Fault suite: synthetic runs are isolated (issue 12, item 3).

Before: two concurrent ``ecaug augment`` got the same run number and synthetic id range and both
activated, so Redis held rows of both; ``runs rollback`` never removed a run's keys (after rolling
back to none Redis still served 1,000 synthetic rows); a rollback to a broken run switched
``active`` first and failed after. Now run numbers come from a lock, activation and publication
are exclusive, Redis holds the active run's synthetic keys only, and a rollback target is checked
before the switch.

Runs here are written with ``synth_store.write_run`` from real feature rows moved into the
synthetic key space (the GAN is not what is tested; tests/synth_store runs it end to end).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from _stores import fake_run
from ecaug_feast import synth_store
from ecaug_feast.errors import EcaugError
from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE

ALLOC = textwrap.dedent("""
    import json, sys
    from ecaug_feast import synth_store
    out = [synth_store.new_run_id() for _ in range(int(sys.argv[1]))]
    print(json.dumps(out))
""")


def _fake_run(seq: int, run_id: str, n: int = 40, gate: str = "pass", base: pd.DataFrame | None = None) -> str:
    """Write a run of ``n`` synthetic users (real-looking feature rows, ids in run ``seq``'s range)."""
    return fake_run(n, base, gate=gate, reserved=(run_id, seq))


def _new_fake(**kw) -> str:
    rid, seq = synth_store.new_run_id()
    return _fake_run(seq, rid, **kw)


def test_concurrent_allocations_get_distinct_numbers_and_disjoint_ranges(tmp_path):
    env = {**os.environ, "ECAUG_HOME": str(tmp_path / "home")}
    procs = [subprocess.Popen([sys.executable, "-c", ALLOC, "15"], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(3)]
    got = [tuple(x) for p in procs for x in json.loads(p.communicate(timeout=120)[0])]
    assert all(p.returncode == 0 for p in procs)
    seqs = [s for _, s in got]
    ids = [r for r, _ in got]
    assert len(set(seqs)) == len(seqs) == 45 and sorted(seqs) == list(range(1, 46))
    assert len(set(ids)) == 45
    starts = sorted(synth_store.user_id_start(s) for s in seqs)
    assert all(b - a >= synth_store.RUN_ID_SPACE for a, b in zip(starts, starts[1:]))  # disjoint id ranges


def test_run_numbers_survive_unfinished_runs(tmp_path, monkeypatch):
    """A number handed out to a run still being generated is never handed out again."""
    monkeypatch.setenv("ECAUG_HOME", str(tmp_path / "home"))
    a = synth_store.new_run_id()
    b = synth_store.new_run_id()  # `a` has not written its folder yet
    assert b[1] == a[1] + 1
    _fake_run(b[1], b[0])
    assert synth_store.new_run_id()[1] == b[1] + 1


def test_reservations_do_not_pile_up(tmp_path, monkeypatch):
    """A failed augmentation releases its id; a killed one's reservation goes at the next allocation."""
    home = tmp_path / "home"
    monkeypatch.setenv("ECAUG_HOME", str(home))
    rid, _ = synth_store.new_run_id()
    synth_store.release_run_id(rid)
    code = "from ecaug_feast import synth_store; import os; synth_store.new_run_id(); os._exit(0)"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "ECAUG_HOME": str(home)}, timeout=60)
    assert len(list(synth_store.runs_root().glob(".tmp-*"))) == 1  # the dead writer's reservation
    rid2, seq2 = synth_store.new_run_id()
    assert [p.name for p in synth_store.runs_root().glob(".tmp-*")] == [f".tmp-{rid2}"]
    _fake_run(seq2, rid2)
    assert not list(synth_store.runs_root().glob(".tmp-*"))
    assert not (synth_store.runs_root() / rid2 / synth_store.OWNER_FILE).exists()


def test_activation_is_exclusive(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("ECAUG_HOME", str(home))
    rid, seq = synth_store.new_run_id()
    _fake_run(seq, rid)
    synth_store.ensure_sources()
    code = f"from ecaug_feast import synth_store; synth_store.activate({rid!r}); print('done')"
    with synth_store.runs_lock():
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "ECAUG_HOME": str(home)})
        time.sleep(3.0)
        assert child.poll() is None  # waits for the lock
        assert synth_store.active_run() is None
    assert child.communicate(timeout=60)[0].strip() == "done"
    assert synth_store.active_run() == rid


def test_rollback_to_a_broken_run_fails_before_switching(tmp_path, monkeypatch):
    monkeypatch.setenv("ECAUG_HOME", str(tmp_path / "home"))
    good = _new_fake()
    synth_store.activate(good)
    broken_parquet = _new_fake()
    (synth_store.runs_root() / broken_parquet / synth_store.USER_FILE).write_bytes(b"PAR1 truncated")
    broken_manifest = _new_fake()
    (synth_store.runs_root() / broken_manifest / "manifest.json").write_text('{"gate": "pass", ')
    failed_gate = _new_fake(gate="fail")
    link_before = os.readlink(synth_store.runs_root() / synth_store.ACTIVE)
    for target, needle in ((broken_parquet, "unreadable run source"), (broken_manifest, "corrupt run manifest"),
                           (failed_gate, "failed its quality gate"), ("nosuchrun", "unknown run")):
        with pytest.raises(EcaugError, match=needle):
            synth_store.rollback(to=target)
        assert os.readlink(synth_store.runs_root() / synth_store.ACTIVE) == link_before
        assert synth_store.active_run() == good
    with pytest.raises(EcaugError, match="corrupt run manifest"):
        synth_store.load_run(broken_manifest)  # `runs show`: one line, not a JSONDecodeError


def _keys(url: str) -> dict[bytes, tuple[set[bytes], bytes]]:
    import redis

    r = redis.Redis.from_url(url)
    return {k: ({f for f in r.hkeys(k) if f.startswith(b"_ts:")}, r.dump(k)) for k in r.scan_iter(count=1000)}


def _real(keys: dict) -> dict:
    synth = {b"_ts:user_features_synth", b"_ts:interactions_synth"}
    return {k: v[1] for k, v in keys.items() if not v[0] <= synth}


def _online_synth(store, ids) -> list:
    got = store.get_online_features(features=["user_features_synth:n_interactions"],
                                    entity_rows=[{"user_id": int(u)} for u in ids]).to_dict()
    return got["n_interactions"]


@pytest.mark.slow
def test_redis_holds_only_the_active_runs_keys(feast_env):
    """Two runs activated one after the other (what two concurrent augments do, now serialized by
    the lock): Redis ends with the second run's rows only; rollback to none removes them; real keys
    stay byte-identical throughout."""
    from ecaug_feast.features.build import USER_FEATURES

    uf = pd.read_parquet(feast_env.state_dir / "feast" / f"{USER_FEATURES}.parquet").head(60)
    base = uf.drop(columns=["user_id"]).assign(item_id=1)
    before = _keys(feast_env.redis_url)
    real_before = _real(before)
    assert real_before
    runs = []
    for _ in range(2):
        rid, seq = synth_store.new_run_id()
        runs.append(_fake_run(seq, rid, n=60, base=base))
    ids = {r: synth_store.load_run(r).user_features()["user_id"].to_numpy() for r in runs}
    assert not set(ids[runs[0]]) & set(ids[runs[1]])
    assert min(min(v) for v in ids.values()) >= SYNTHETIC_USER_ID_BASE
    for r in runs:
        with synth_store.runs_lock():
            synth_store.activate(r)
            synth_store.publish(r, feast_env.repo_dir)
    keys = _keys(feast_env.redis_url)
    assert _real(keys) == real_before
    assert len(keys) == len(real_before) + 60  # the second run's users only
    assert _online_synth(feast_env.store, ids[runs[0]][:10]) == [None] * 10
    assert _online_synth(feast_env.store, ids[runs[1]][:3]) == [int(x) for x in base["n_interactions"].head(3)]

    # roll back all the way to none: Redis serves 0 synthetic rows, real keys untouched
    while synth_store.active_run() is not None:
        with synth_store.runs_lock():
            synth_store.rollback()
            out = synth_store.publish(None, feast_env.repo_dir)
    assert out["removed_keys"] >= 0
    keys = _keys(feast_env.redis_url)
    assert _real(keys) == real_before and len(keys) == len(real_before)
    for r in runs:
        assert _online_synth(feast_env.store, ids[r]) == [None] * len(ids[r])


@pytest.mark.slow
def test_cli_rollback_removes_keys(feast_env):
    """``ecaug runs rollback`` (the command) reports and removes the keys of the run it leaves."""
    from ecaug_feast.features.build import USER_FEATURES

    uf = pd.read_parquet(feast_env.state_dir / "feast" / f"{USER_FEATURES}.parquet").head(25)
    rid, seq = synth_store.new_run_id()
    _fake_run(seq, rid, n=25, base=uf.drop(columns=["user_id"]).assign(item_id=1))
    real_before = _real(_keys(feast_env.redis_url))
    with synth_store.runs_lock():
        synth_store.activate(rid)
        synth_store.publish(rid, feast_env.repo_dir)
    assert len(_keys(feast_env.redis_url)) == len(real_before) + 25
    env = {**os.environ, "ECAUG_HOME": str(feast_env.state_dir), "ECAUG_REDIS_URL": feast_env.redis_url}
    prev = [r.run_id for r in synth_store.list_runs() if r.manifest.get("gate") == "pass" and r.run_id != rid]
    r = subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", "runs", "rollback", "--json"], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["previous"] == rid and out["removed_keys"] >= 25
    keys = _keys(feast_env.redis_url)
    assert _real(keys) == real_before
    if out["active"] is None:
        assert len(keys) == len(real_before)
    else:
        assert out["active"] == prev[-1]
        with synth_store.runs_lock():  # leave the session state as other tests expect it: none active
            while synth_store.rollback() is not None:
                pass
            synth_store.publish(None, feast_env.repo_dir)
    assert _online_synth(feast_env.store, [synth_store.user_id_start(seq)]) == [None]
