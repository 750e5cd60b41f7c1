"""A synthetic run end to end through Feast and Redis (real registry, offline store, Redis).

Real users' online features must be byte-identical in Redis before and after a synthetic
materialize; synthetic users land in their own key space and are readable online; runs can be
listed, shown and rolled back; a failed gate is never activated.
"""

from __future__ import annotations

import numpy as np
import pytest

from ecaug_feast.errors import EcaugError
from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE
from ecaug_feast.quality.gates import GateConfig
from ecaug_feast.synth.gan import GANConfig
from ecaug_feast.synth.pipeline import AugmentConfig


def _redis_dump(url: str) -> dict[bytes, bytes]:
    import redis

    r = redis.Redis.from_url(url)
    return {k: r.dump(k) for k in r.scan_iter(count=1000)}


def _real_keys(url: str, dump: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """The keys of real entities (a synthetic key holds only the synthetic views' fields)."""
    import redis

    r = redis.Redis.from_url(url)
    synth = {b"_ts:user_features_synth", b"_ts:interactions_synth"}
    return {k: v for k, v in dump.items() if not {f for f in r.hkeys(k) if f.startswith(b"_ts:")} <= synth}


def _small_config(max_c2st: float) -> AugmentConfig:
    # smoke-sized GAN; loose gate so the run passes (gate behaviour is tested in tests/quality)
    return AugmentConfig(gan=GANConfig(max_steps=60, eval_every=30, calib_rows=2000), max_fit_rows=2500,
                         holdout_rows=500, gates=GateConfig(max_c2st_auc=max_c2st, min_column_shapes=0.0,
                                                            min_pair_trends=0.0, c2st_rows=1000))


def test_augment_materialize_keeps_real_online_features(feast_env) -> None:
    from ecaug_feast import synth_store
    from ecaug_feast.jobs.augment import augment_run
    from ecaug_feast.jobs.workspace import Workspace

    # feast_env is shared by the session: another test may already have published a run
    earlier = [r.run_id for r in synth_store.list_runs() if r.manifest.get("gate") == "pass"]
    before = _real_keys(feast_env.redis_url, _redis_dump(feast_env.redis_url))  # another run's keys leave Redis
    assert before, "feast_env should have materialized real features"
    real_ids = feast_env.data.train["user_id"].drop_duplicates().to_numpy()[:50]
    online_before = feast_env.store.get_online_features(
        features=[f"user_features:{c}" for c in ("n_interactions", "recent_items", "mean_item_popularity")],
        entity_rows=[{"user_id": int(u)} for u in real_ids]).to_dict()

    out = augment_run(Workspace.from_env(repo=feast_env.repo_dir), rows=300, seed=0, config=_small_config(1.0))
    assert out["gate"] == "pass" and out["activated"], out
    assert 0 < out["rows_accepted"] <= 300
    assert out["materialized"]["user_features_synth"] == out["rows_accepted"]
    run = synth_store.load_run(out["run_id"])
    users, inter = run.user_features(), run.interactions()
    assert (users["user_id"] >= SYNTHETIC_USER_ID_BASE).all() and users["user_id"].is_unique
    assert set(inter["item_id"]).issubset(set(feast_env.data.items["item_id"]))   # real items only
    assert {"is_synthetic", "run_id", "generator_version"} <= set(users.columns)
    assert (run.path / "report.md").exists() and (run.path / "plots" / "columns.png").exists()
    assert (run.path / "model" / "generator.pt").exists()

    after = _redis_dump(feast_env.redis_url)
    for key, blob in before.items():                      # every real key byte-identical
        assert after.get(key) == blob
    assert len(after) == len(before) + out["rows_accepted"]  # one hash per synthetic user of the active run only
    online_after = feast_env.store.get_online_features(
        features=[f"user_features:{c}" for c in ("n_interactions", "recent_items", "mean_item_popularity")],
        entity_rows=[{"user_id": int(u)} for u in real_ids]).to_dict()
    assert online_after == online_before

    # synthetic users are served from their own view, and have no real features
    sid = int(users["user_id"].iloc[0])
    got = feast_env.store.get_online_features(
        features=["user_features_synth:n_interactions", "interactions_synth:label"],
        entity_rows=[{"user_id": sid}]).to_dict()
    assert got["n_interactions"] == [int(users["n_interactions"].iloc[0])]
    assert got["label"] == [int(inter.loc[inter["user_id"] == sid, "label"].iloc[0])]
    assert synth_store.active_run() == out["run_id"]
    assert [r.run_id for r in synth_store.list_runs()][-1] == out["run_id"]

    # offline: the recommender's point-in-time join finds the synthetic rows
    from ecaug_feast import feast_io

    hist = feast_io.historical_features(inter[["user_id", "event_timestamp"]].head(20),
                                        features=["user_features_synth:n_interactions", "interactions_synth:label"],
                                        repo_dir=feast_env.repo_dir)
    assert hist["n_interactions"].notna().all()
    np.testing.assert_array_equal(hist["label"].to_numpy(), inter["label"].head(20).to_numpy())

    # a failed gate is written but never activated/materialized
    bad = augment_run(Workspace.from_env(repo=feast_env.repo_dir), rows=100, seed=1, config=_small_config(0.0))
    assert bad["gate"] == "fail" and not bad["activated"]
    assert synth_store.active_run() == out["run_id"]
    with pytest.raises(EcaugError, match="failed its quality gate"):
        synth_store.activate(bad["run_id"])
    assert _redis_dump(feast_env.redis_url).keys() == after.keys()

    # rollback: to the previous passing run, or (in a fresh state) to empty synthetic views
    prev = earlier[-1] if earlier else None
    assert synth_store.rollback() == prev and synth_store.active_run() == prev
    assert synth_store.activate(out["run_id"]).active
    with pytest.raises(EcaugError, match="unknown run"):
        synth_store.load_run("nope")
