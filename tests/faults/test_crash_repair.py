"""Fault suite: a crash between the offline and the online store is repaired (issue 32, item 2).

Before: a kill -9 during ``ecaug materialize`` left Redis without the views it had not reached,
with nothing on record; a kill -9 during ``ecaug refresh`` after its append left Redis stale, and
a rerun appended 0 events and materialized nothing; a kill -9 during a publish left the synthetic
views half written. Now each step writes ``<state>/intents/<step>.json`` first and removes it at
the end; ``ecaug repair`` (and the next command that needs the online store) redoes it.

The kills are real: ``benchmarks/kill_at.py`` runs ``ecaug``, which sends itself SIGKILL when Feast
is asked to materialize a chosen view (after the views before it were written), so the crash
point is the same on every machine. Own state dir and own embedded Redis (the Redis is flushed here).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from _stores import fake_run, hashes, private_store
from ecaug_feast import intents

REAL_VIEWS = (b"_ts:user_features", b"_ts:item_features")
SYNTH_VIEW = b"_ts:user_features_synth"

KILL_AT = Path(__file__).resolve().parents[2] / "benchmarks" / "kill_at.py"  # ecaug, SIGKILLed at a view


@pytest.fixture(scope="module")
def env(tmp_path_factory, redis_url):
    with private_store(tmp_path_factory.mktemp("crash_home"), 150) as store:
        yield store


def _env(env, **extra: str) -> dict[str, str]:
    return {**os.environ, "ECAUG_HOME": str(env.home), "ECAUG_REDIS_URL": env.url, "OMP_NUM_THREADS": "1", **extra}


def _cli(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", *args], capture_output=True, text=True,
                          env=_env(env), timeout=300)


def _killed(env, kill_at: str, *args: str) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, str(KILL_AT), kill_at, *args], capture_output=True, text=True,
                       env=_env(env), timeout=300)
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr[-2000:])
    return p


def _flush(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def _clean_materialize(env) -> dict:
    from ecaug_feast import feast_io

    _flush(env.url)
    feast_io.materialize(env.repo)
    return hashes(env.url, REAL_VIEWS)


def test_intent_is_written_first_and_removed_only_on_success(tmp_path):
    with intents.intent(tmp_path, "materialize", views=["a"]) as rec:
        on_disk = intents.pending(tmp_path)
        assert [r["step"] for r in on_disk] == ["materialize"] and on_disk[0]["args"] == {"views": ["a"]}
        assert on_disk[0]["pid"] == os.getpid() and rec["started_at"]
    assert intents.pending(tmp_path) == []
    with pytest.raises(RuntimeError):
        with intents.intent(tmp_path, "publish", run_id="r1"):
            raise RuntimeError("crash")
    (left,) = intents.pending(tmp_path)
    assert left["step"] == "publish" and left["args"] == {"run_id": "r1"} and not left["running"]
    assert intents.clear(tmp_path, "publish") and intents.pending(tmp_path) == []
    (tmp_path / "intents" / "refresh.json").write_text("{not json")
    assert [(r["step"], bool(r.get("corrupt"))) for r in intents.pending(tmp_path)] == [("refresh", True)]
    assert intents.pending(tmp_path / "nowhere") == []


def test_killed_materialize_is_repaired(env):
    clean = _clean_materialize(env)
    _flush(env.url)
    _killed(env, "user_features", "materialize")  # item_features written, user_features not
    (rec,) = intents.pending(env.home)
    assert rec["step"] == "materialize" and not rec["running"]
    assert hashes(env.url, REAL_VIEWS) != clean  # the crash is real: users are missing

    p = _cli(env, "repair", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert [d["step"] for d in out["repaired"]] == ["materialize"] and out["pending"] == []
    assert intents.pending(env.home) == []
    assert hashes(env.url, REAL_VIEWS) == clean


def test_next_materialize_redoes_the_interrupted_one(env):
    clean = _clean_materialize(env)
    _flush(env.url)
    _killed(env, "user_features", "materialize")
    p = _cli(env, "materialize", "--view", "item_features")  # a narrower command repairs the wider step first
    assert p.returncode == 0, p.stderr
    assert "redoing the materialize" in p.stderr
    assert intents.pending(env.home) == [] and hashes(env.url, REAL_VIEWS) == clean


def _synth_users(url: str) -> int:
    return len(hashes(url, (SYNTH_VIEW,)))


def test_killed_publish_is_repaired(env):
    from ecaug_feast import synth_store

    a, b = fake_run(), fake_run()
    with synth_store.runs_lock():
        synth_store.activate(a)
        synth_store.publish(a, env.repo)
    assert _synth_users(env.url) == 30
    _killed(env, "user_features_synth", "runs", "rollback", "--to", b)  # A's keys deleted, B's not yet written
    assert synth_store.active_run() == b
    assert [r["step"] for r in intents.pending(env.home)] == ["publish"]
    assert _synth_users(env.url) == 0

    p = _cli(env, "repair")
    assert p.returncode == 0 and "repaired: publish" in p.stdout, p.stderr
    assert intents.pending(env.home) == []
    keys = hashes(env.url, (SYNTH_VIEW,))
    ids = set(synth_store._run_user_ids(synth_store.load_run(b)).tolist())
    assert len(keys) == 30 and len(ids) == 30


def _serving_rows(env) -> pd.DataFrame:
    uf = pd.read_parquet(env.home / "feast" / "user_features.parquet")
    return uf.sort_values("event_timestamp").groupby("user_id").tail(1).set_index("user_id")


def test_killed_refresh_converges_on_rerun(env, tmp_path):
    """kill -9 after the append, before Redis has the appended window; the rerun of the same
    refresh appends nothing twice and redoes the materialize: Redis then equals a clean
    materialize of the appended store."""
    from ecaug_feast import synth_store

    if synth_store.active_run() is None:
        rid = fake_run()
        with synth_store.runs_lock():
            synth_store.activate(rid)
            synth_store.publish(rid, env.repo)
    events = env.data.valid[["user_id", "item_id", "event_timestamp"]].head(40)
    ev_path = tmp_path / "events.parquet"
    events.to_parquet(ev_path, index=False)
    quiet = tmp_path / "quiet.yaml"
    quiet.write_text("".join(f"{k}: null\n" for k in (
        "psi", "ks", "c2st_auc", "item_js", "item_topk_overlap", "new_item_share", "label_rate_change")))
    _killed(env, "user_features", "refresh", "--events", str(ev_path), "--config", str(quiet))
    (rec,) = intents.pending(env.home)
    assert rec["step"] == "refresh" and rec["args"]["first"]
    assert len(pd.read_parquet(env.home / "feast" / "current" / "appended_events.parquet")) == len(events)  # the append happened
    from ecaug_feast import feast_io

    users = sorted(set(events["user_id"]))[:10]
    serving = _serving_rows(env)

    def online() -> list:
        return feast_io.online_user_features(users, ["user_features:n_interactions"], repo_dir=env.repo)["n_interactions"].tolist()

    assert online() != serving.loc[users, "n_interactions"].tolist()  # the crash is real: Redis is stale

    p = _cli(env, "refresh", "--events", str(ev_path), "--config", str(quiet), "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["appended"]["events"] == 0 and out["appended"]["already_appended"] == len(events)
    assert [d["step"] for d in out["repaired"]] == ["refresh"]
    assert intents.pending(env.home) == []
    assert len(pd.read_parquet(env.home / "feast" / "current" / "appended_events.parquet")) == len(events)  # not appended twice
    assert online() == serving.loc[users, "n_interactions"].tolist()
    repaired = hashes(env.url, REAL_VIEWS)
    assert repaired == _clean_materialize(env)


def test_a_corrupt_bound_or_seed_in_an_intent_record_widens_the_redo_not_a_traceback():
    # a record that is valid JSON but whose 'start' is no ISO time (or whose seed is no number) made
    # every command that needs the online store raise ValueError before it ran
    from ecaug_feast.jobs import repair

    assert repair._time("yesterday") is None and repair._time(None) is None
    assert repair._time("2024-01-05T00:00:00+00:00").year == 2024
    assert repair._int("x") == 0 and repair._int(None) == 0 and repair._int("7") == 7
