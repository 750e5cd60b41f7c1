"""The plugin on a Feast repo ecaug has never seen (issue 10, item 2).

The shop's repo is built the way ``feast init`` builds its example (Feast's own
``create_driver_hourly_stats_df``, an entity without a value type, a ``FileSource`` with a
created-timestamp column, the file offline store) with other names: entity ``courier`` /
``courier_id``, view ``courier_hourly`` with ``on_time_rate``, ``accept_rate``,
``trips_per_day`` and a string ``vehicle``; online store: the session's real Redis (db 3, so the
shop's keys are the only ones there). Its repo file declares the twin with the one call.

End to end: stock ``feast apply`` (no run yet, nothing written by the import), stock
``feast materialize`` of the real view, a dump of the real Redis keys, ``ecaug augment --repo ...
--json``, then: the twin is materialized under synthetic keys only, ``training_rows`` mixes
real and synthetic rows at the asked ratio, the real keys are byte-identical, and a second stock
``feast apply`` keeps the twin.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest

from _shop import dump_keys as _dump, ecaug_cli as _ecaug, feast_cli, write_shop_repo

pytestmark = pytest.mark.slow

SHOP_DB = 3


@pytest.fixture(scope="module")
def shop_repo(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Path:
    return write_shop_repo(tmp_path_factory.mktemp("courier_shop") / "feature_repo", redis_url, SHOP_DB,
                           couriers=40, days=8)


def test_shop_repo_expanded_end_to_end(shop_repo: Path, redis_url: str, monkeypatch, capsys):
    import redis
    from feast import FeatureStore

    from ecaug_feast import plugin
    from ecaug_feast.errors import EcaugError
    from ecaug_feast.jobs.augment_repo import remove_twin_keys
    from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE

    u = urlparse(redis_url)
    client = redis.Redis(host=u.hostname, port=u.port, db=SHOP_DB)
    client.flushdb()
    runs = shop_repo / "data" / "ecaug_runs"

    # 1. stock `feast apply` before any run: validates (Feast only warns about the missing twin
    #    source), registers the twin, and importing the repo file wrote nothing.
    feast_cli(shop_repo, ["apply"], monkeypatch)
    store = FeatureStore(repo_path=str(shop_repo))
    assert {v.name for v in store.list_feature_views()} == {"courier_hourly", "courier_hourly_synth"}
    twin = store.get_feature_view("courier_hourly_synth")
    assert twin.tags["kind"] == "synthetic" and twin.tags["twin_of"] == "courier_hourly"
    assert [(c.name, str(c.dtype)) for c in twin.entity_columns] == [("courier_id", "Int64")]
    assert {f.name for f in twin.features} == {"on_time_rate", "accept_rate", "trips_per_day", "vehicle",
                                               "is_synthetic", "run_id", "generator_version"}
    assert not runs.exists()

    # 2. the shop materializes its real view; its keys in Redis are dumped byte for byte
    feast_cli(shop_repo, ["materialize", "2025-01-01T00:00:00", "2025-04-01T00:00:00", "--views", "courier_hourly"],
               monkeypatch)
    before = _dump(client)
    assert len(before) == 40  # one hash per courier

    # 3. a wrong name is one line, exit 2, nothing written
    code, _, err = _ecaug(["augment", "--repo", str(shop_repo), "--entity", "courier", "--view", "nope"], capsys, monkeypatch)
    assert code == 2 and "--view nope" in err and "Traceback" not in err
    assert _dump(client) == before

    # 4. the plugin augment, through the CLI
    code, out, err = _ecaug(["augment", "--repo", str(shop_repo), "--entity", "courier", "--view", "courier_hourly",
                             "--service", "courier_model_v1", "--rows", "300", "--steps", "300", "--json"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    res = json.loads(out.strip().splitlines()[-1])
    assert res["gate"] == "pass" and res["activated"] is True, res
    assert res["twin"] == "courier_hourly_synth" and res["rows_accepted"] > 0
    assert res["materialized"] == {"courier_hourly_synth": res["rows_accepted"]}
    assert res["training_features"] == [f"courier_hourly:{f}" for f in ("on_time_rate", "accept_rate", "trips_per_day", "vehicle")]
    run_dir = Path(res["run_dir"])
    assert run_dir.parent == runs and (runs / "active").resolve() == run_dir.resolve()
    synth = pd.read_parquet(run_dir / "courier_hourly_synth.parquet")
    assert len(synth) == res["rows_accepted"] and synth["courier_id"].min() >= SYNTHETIC_USER_ID_BASE
    assert synth["is_synthetic"].all() and (synth["run_id"] == res["run_id"]).all()
    assert set(synth["vehicle"]) <= {"bike", "car", "scooter"}

    # 5. Redis: the real keys are byte-identical; every new key is a synthetic key of this run
    after = _dump(client)
    assert {k: after[k] for k in before} == before
    new = set(after) - set(before)
    assert len(new) == res["rows_accepted"]
    store = FeatureStore(repo_path=str(shop_repo))
    online = store._get_provider().online_store
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    want = online._generate_redis_keys_for_entities(
        store.config, [EntityKey(join_keys=["courier_id"], entity_values=[Value(int64_val=int(u))]) for u in synth["courier_id"]])
    assert new == set(want)
    ids = [int(u) for u in synth["courier_id"][:5]]
    got = store.get_online_features(features=["courier_hourly_synth:on_time_rate", "courier_hourly_synth:run_id"],
                                    entity_rows=[{"courier_id": u} for u in ids]).to_dict()
    assert got["run_id"] == [res["run_id"]] * 5 and all(v is not None for v in got["on_time_rate"])
    real_online = store.get_online_features(features=["courier_hourly:on_time_rate"], entity_rows=[{"courier_id": 1001}]).to_dict()
    assert real_online["on_time_rate"][0] is not None

    # 6. training rows for any training job: real + synthetic at the mix ratio, through Feast
    real_rows = pd.read_parquet(shop_repo / "data" / "courier_stats.parquet")
    ent = real_rows.sample(200, random_state=1)[["courier_id", "event_timestamp"]].reset_index(drop=True)
    ent["label"] = np.arange(200) % 2
    mixed = plugin.training_rows(store, ent, "courier_model_v1", mix_ratio=0.5, run_id=res["run_id"], seed=0)
    assert len(mixed) == 300 and int(mixed["is_synthetic"].sum()) == 100
    syn, real = mixed[mixed["is_synthetic"]], mixed[~mixed["is_synthetic"]]
    assert (syn["courier_id"] >= SYNTHETIC_USER_ID_BASE).all() and (real["courier_id"] < SYNTHETIC_USER_ID_BASE).all()
    assert syn["on_time_rate"].notna().all() and (syn["run_id"] == res["run_id"]).all() and syn["label"].isna().all()
    assert set(syn["courier_id"]) <= set(synth["courier_id"])
    direct = store.get_historical_features(entity_df=ent, features=store.get_feature_service("courier_model_v1")).to_df()
    key = ["courier_id", "event_timestamp"]
    pd.testing.assert_frame_equal(
        real.sort_values(key)[direct.columns].reset_index(drop=True), direct.sort_values(key).reset_index(drop=True),
        check_dtype=False)
    assert len(plugin.training_rows(store, ent, ["courier_hourly:on_time_rate"], mix_ratio=0.0)) == 200
    with pytest.raises(EcaugError, match="not active"):
        plugin.training_rows(store, ent, ["courier_hourly:on_time_rate"], mix_ratio=0.5, run_id="20000101-000000-abcd")

    # 7. a second stock `feast apply` keeps the twin (declared in a repo file) and its online rows
    feast_cli(shop_repo, ["apply"], monkeypatch)
    store = FeatureStore(repo_path=str(shop_repo))
    assert "courier_hourly_synth" in {v.name for v in store.list_feature_views()}
    assert _dump(client) == after

    # 8. removing the twin's rows (what the next run's publish does to this one) deletes exactly
    #    the synthetic keys, even when real ids are passed along
    twin = store.get_feature_view("courier_hourly_synth")
    ids = np.concatenate([synth["courier_id"].to_numpy(), np.arange(1001, 1041)])
    assert remove_twin_keys(store, twin, ids) == res["rows_accepted"]
    assert _dump(client) == before
