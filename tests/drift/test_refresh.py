"""ecaug drift / ecaug refresh against a real Feast repo and a real Redis.

The module has its own state dir and its own embedded Redis (so appending events and switching
runs here never changes what the session's ``feast_env`` serves): a 300-user slice of the bundled
Beauty data is ingested, applied, materialized, and a small gated run is active. The "new" events
are the slice's validation events (one per user, the day after every training event).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE
from redis_hashes import hashes

REAL_VIEWS = (b"_ts:user_features", b"_ts:item_features")
SMALL = dict(rows=300, steps=60)


def _small_config(max_c2st: float = 0.999):
    from ecaug_feast.quality.gates import GateConfig
    from ecaug_feast.synth.gan import GANConfig
    from ecaug_feast.synth.pipeline import AugmentConfig

    return AugmentConfig(gan=GANConfig(max_steps=SMALL["steps"], eval_every=30, eval_rows=500, calib_rows=2000),
                         gates=GateConfig(max_c2st_auc=max_c2st, min_column_shapes=0.5, min_pair_trends=0.5,
                                          max_privacy_drop_share=0.9, min_accepted_share=0.05),
                         max_fit_rows=3000, holdout_rows=400)


@pytest.fixture(scope="module")
def env(tmp_path_factory, redis_url):
    from ecaug_feast import feast_io, synth_store
    from ecaug_feast.datasets import load_dataset, subset_users
    from ecaug_feast.datasets.store import load_processed
    from ecaug_feast.features.ingest import ingest_dataset
    from ecaug_feast.jobs.augment import augment_run
    from ecaug_feast.jobs.workspace import Workspace
    from ecaug_feast.redis_server import EmbeddedRedis, free_port

    home = tmp_path_factory.mktemp("drift_home")
    old = {k: os.environ.get(k) for k in ("ECAUG_HOME", "ECAUG_REDIS_URL")}
    server = EmbeddedRedis.for_state(home, port=free_port())
    url = server.start()
    os.environ["ECAUG_HOME"], os.environ["ECAUG_REDIS_URL"] = str(home), url
    try:
        ds = subset_users(load_dataset("beauty"), 300)
        ingest_dataset(ds)
        repo = feast_io.render_repo(home / "feature_repo", state_dir=home, redis_url=url)
        feast_io.apply(repo)
        feast_io.materialize(repo)
        ws = Workspace(state_dir=home, repo_dir=repo, redis_url=url)
        run = augment_run(ws, rows=SMALL["rows"], seed=0, config=_small_config())
        assert run["activated"], run
        data = load_processed(ds.name)
        events = data.valid[["user_id", "item_id", "event_timestamp"]]
        ev_path = home / "new_events.parquet"
        events.to_parquet(ev_path, index=False)
        yield SimpleNamespace(home=home, repo=repo, url=url, ws=ws, run_a=run["run_id"], events=events, events_path=ev_path,
                              data=data)
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _real_keys(url: str) -> dict[bytes, dict[bytes, bytes]]:
    """Every Redis hash that holds a real view (user_features / item_features), field by field."""
    return hashes(url, REAL_VIEWS)


def _synthetic_online(env, run_id: str):
    from ecaug_feast import feast_io, synth_store

    uid = int(synth_store.load_run(run_id).user_features()["user_id"].iloc[0])
    assert uid >= SYNTHETIC_USER_ID_BASE
    df = feast_io.online_features([{"user_id": uid}], ["user_features_synth:n_interactions"], repo_dir=env.repo)
    return df["n_interactions"].iloc[0]


def _cli(env, *args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "ECAUG_HOME": str(env.home), "ECAUG_REDIS_URL": env.url, **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", *args], capture_output=True, text=True,
                          env=e, timeout=300)


def test_manifest_records_fit_window(env):
    from ecaug_feast import synth_store

    fw = synth_store.load_run(env.run_a).manifest["lineage"]["fit_window"]
    assert fw["rows"] > 0 and pd.Timestamp(fw["start"]) < pd.Timestamp(fw["end"])


def test_drift_without_new_rows_is_not_drift(env):
    p = _cli(env, "drift", "--json")
    assert p.returncode == 0, p.stderr
    js = json.loads(p.stdout.strip().splitlines()[-1])
    assert js["drifted"] is False and js["reason"].startswith("too few rows") and js["report"] is None


def test_drift_cli_bad_input_exits_2(env, tmp_path):
    p = _cli(env, "drift", "--window", "thirty")
    assert p.returncode == 2 and "--window" in p.stderr and "Traceback" not in p.stderr
    bad = tmp_path / "drift.yaml"
    bad.write_text("psii: 0.3\n")
    p = _cli(env, "drift", "--config", str(bad))
    assert p.returncode == 2 and "psii" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_append_events_equals_full_rebuild_and_leaves_other_keys(env, tmp_path):
    """The incremental append gives the touched users the rows a full rebuild gives them, and
    the online store changes only for the users/items the events touch."""
    from ecaug_feast import feast_io, paths
    from ecaug_feast.datasets.store import ProcessedDataset
    from ecaug_feast.features.build import write_features
    from ecaug_feast.features.append import append_events, read_events
    from ecaug_feast.jobs.repair import materialize_appended

    before = _real_keys(env.url)
    new = read_events(env.events_path)
    touched_users = set(new["user_id"].iloc[:40])
    part = new[new["user_id"].isin(touched_users)]
    app = append_events(part)
    assert app["events"] == len(part) and app["users"] == len(touched_users)
    mat = materialize_appended(env.ws, app["first"])
    assert mat["mode"] == "window"  # replayed events lie before the last materialization's end
    after = _real_keys(env.url)
    changed = [k for k in before if before[k] != after.get(k)]
    assert changed and len(changed) <= len(touched_users) + part["item_id"].nunique()
    assert set(before) <= set(after)

    # a full rebuild with the same events in the training split
    inter = env.data.interactions.copy()
    key = inter.set_index(["user_id", "item_id", "event_timestamp"]).index
    inter.loc[key.isin(part.set_index(["user_id", "item_id", "event_timestamp"]).index), "split"] = "train"
    full = ProcessedDataset(env.data.name, inter, env.data.items, env.data.users, env.data.meta, env.data.path)
    write_features(full, out_dir=tmp_path / "full")
    cols = ["user_id", "event_timestamp", "n_interactions", "recent_items", "top_attributes"]
    inc = pd.read_parquet(paths.feast_data_dir() / "user_features.parquet")
    ref = pd.read_parquet(tmp_path / "full" / "user_features.parquet")
    a = inc[inc["user_id"].isin(touched_users)].sort_values(["user_id", "event_timestamp"]).reset_index(drop=True)
    b = ref[ref["user_id"].isin(touched_users)].sort_values(["user_id", "event_timestamp"]).reset_index(drop=True)
    # the incremental set also keeps each touched user's previous serving row (last event + 1 ms)
    a = a.merge(b[["user_id", "event_timestamp"]], on=["user_id", "event_timestamp"])
    assert len(a) == len(b)
    for c in ("n_interactions",):
        assert (a[c].to_numpy() == b[c].to_numpy()).all()
    assert [list(x) for x in a["recent_items"]] == [list(x) for x in b["recent_items"]]
    for c in ("mean_item_popularity", "attr_diversity", "days_since_last"):
        assert (a[c] - b[c]).abs().max() < 1e-4, c
    online = feast_io.online_user_features(sorted(touched_users)[:5], ["user_features:n_interactions"], repo_dir=env.repo)
    last = b.sort_values("event_timestamp").groupby("user_id").last()
    assert online["n_interactions"].tolist() == last.loc[sorted(touched_users)[:5], "n_interactions"].tolist()


def test_drift_json_and_exit_codes(env, tmp_path):
    """After the append there are new rows: the verdict follows the thresholds, exit 3 on drift."""
    strict = tmp_path / "strict.yaml"
    strict.write_text("min_rows: 20\nc2st_auc: 0.0\n")  # any AUC crosses
    p = _cli(env, "drift", "--json", "--config", str(strict))
    assert p.returncode == 3, p.stderr
    js = json.loads(p.stdout.strip().splitlines()[-1])
    assert js["drifted"] is True and "c2st_auc" in js["crossed"]
    assert set(js) >= {"drifted", "scores", "thresholds", "report"}
    rep = Path(js["report"])
    assert (rep / "report.md").exists() and (rep / "plots" / "scores.png").stat().st_size > 1000
    quiet = tmp_path / "quiet.yaml"
    quiet.write_text("min_rows: 20\n" + "".join(f"{k}: null\n" for k in (
        "psi", "ks", "c2st_auc", "item_js", "item_topk_overlap", "new_item_share", "label_rate_change")))
    p = _cli(env, "drift", "--json", "--config", str(quiet))
    assert p.returncode == 0, p.stderr
    js = json.loads(p.stdout.strip().splitlines()[-1])
    assert js["drifted"] is False and js["scores"]["item_js"] >= 0
    p = _cli(env, "refresh", "--json", "--config", str(quiet))
    js = json.loads(p.stdout.strip().splitlines()[-1])
    assert p.returncode == 0 and js["activated"] is False and js["run_id"] is None
    assert js["parent_run_id"] == env.run_a and js["seconds"] >= 0


@pytest.mark.parametrize("where", ["after_fit", "before_publish"])
def test_interrupted_refresh_leaves_active_run_serving(env, where):
    from ecaug_feast import synth_store
    from ecaug_feast.jobs.augment import augment_run
    from ecaug_feast.jobs.refresh import refresh_job

    before = _real_keys(env.url)
    served = _synthetic_online(env, env.run_a)
    assert served is not None

    def boom():
        raise RuntimeError(f"injected failure at {where}")

    with pytest.raises(RuntimeError, match="injected"):
        refresh_job(env.ws, force=True, rows=SMALL["rows"], steps=SMALL["steps"], max_c2st=0.999, tolerance=1.0,
                    augment=lambda ws, **kw: augment_run(ws, **{**kw, "config": _warm(kw["config"])}),
                    hooks={where: boom})
    assert synth_store.active_run() == env.run_a
    assert _synthetic_online(env, env.run_a) == served
    newest = synth_store.list_runs()[-1]
    assert newest.run_id != env.run_a and not newest.active
    assert newest.manifest["lineage"]["parent_run_id"] == env.run_a
    uid = int(newest.user_features()["user_id"].iloc[0])
    from ecaug_feast import feast_io
    df = feast_io.online_features([{"user_id": uid}], ["user_features_synth:n_interactions"], repo_dir=env.repo)
    assert pd.isna(df["n_interactions"].iloc[0])  # the unfinished run's rows are not in Redis
    assert _real_keys(env.url) == before


def _warm(cfg):
    """The small test config with the refresh's warm start and step budget carried over."""
    small = _small_config()
    small.gan.warm_start, small.gan.max_steps = cfg.gan.warm_start, cfg.gan.max_steps
    small.gates = cfg.gates
    return small


def test_refresh_activates_warm_started_child_never_touching_real_keys_and_rollback_works(env):
    from ecaug_feast import synth_store
    from ecaug_feast.jobs.augment import augment_run
    from ecaug_feast.jobs.refresh import refresh_job

    before = _real_keys(env.url)
    out = refresh_job(env.ws, force=True, rows=SMALL["rows"], steps=SMALL["steps"], max_c2st=0.999, tolerance=1.0,
                      augment=lambda ws, **kw: augment_run(ws, **{**kw, "config": _warm(kw["config"])}))
    assert out["activated"], out
    assert out["parent_run_id"] == env.run_a and out["warm_started"] is True
    assert set(out["quick_study"]["new"]) >= {"tstr_auc", "c2st_auc"}
    assert synth_store.active_run() == out["run_id"]
    man = synth_store.load_run(out["run_id"]).manifest
    assert man["lineage"]["parent_run_id"] == env.run_a and man["config"]["gan"]["warm_start"].endswith("model")
    assert _synthetic_online(env, out["run_id"]) is not None
    assert pd.isna(_synthetic_online(env, env.run_a))  # the parent's synthetic keys left Redis
    assert _real_keys(env.url) == before  # byte for byte

    with synth_store.runs_lock():
        now = synth_store.rollback()
        synth_store.publish(now, env.repo)
    assert now == env.run_a and synth_store.active_run() == env.run_a
    assert _synthetic_online(env, env.run_a) is not None
    assert _real_keys(env.url) == before
