"""Issue 31 item 2 (first part): behaviour from the grocer's own event log. The repo file names
its purchases source and declares its twin with ``synthetic_events``; ``ecaug augment --repo R --events purchases`` reads the
events through the shop's offline store, splits first (leave-last-out), expands the training
histories with the product's sequence path (a tiny generator here) and writes the twin of the
event source: synthetic shoppers under the reserved String prefix (UUID keys, file offline store)
or the Int64 range (numeric keys, DuckDB offline store), the shop's own skus; then the
shopper_behaviour twin's rows of the generated shoppers, computed by the grocer's own feature
function and materialized, the shop's real Redis keys byte-identical (db 6 / 7: its keys only)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest

from _grocer import write_grocer_repo
from _shop import dump_keys, ecaug_cli, feast_cli

pytestmark = pytest.mark.slow

TINY = {"gan": dict(embedding_dim=16, num_layers=1, num_heads=1, max_len=20, mle_epochs=2, adv_steps=4, adv_batch=16,
                    batch_size=32, gen_max_len=6, threads=1, device="cpu"),
        "expand_below": 6, "n_new": 3, "synthetic_share": 0.1, "c2st_rows": 500, "max_c2st_auc": 1.0}


@pytest.mark.parametrize("keys,offline,db", [("uuid", "file", 6), ("int64", "duckdb", 7)])
def test_events_twin_from_the_shop_event_log(keys: str, offline: str, db: int, tmp_path: Path, redis_url: str,
                                             monkeypatch, capsys):
    import redis
    from feast import FeatureStore

    from ecaug_feast.plugin import event_histories, read_events

    from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE

    repo = write_grocer_repo(tmp_path / "grocer", redis_url, db, shoppers=150, products=40, shopper_keys=keys, offline=offline)
    client = redis.Redis(host=urlparse(redis_url).hostname, port=urlparse(redis_url).port, db=db)
    client.flushdb()
    feast_cli(repo, ["apply"], monkeypatch)
    feast_cli(repo, ["materialize", "2025-01-01T00:00:00", "2025-07-01T00:00:00", "--views", "shopper_behaviour"], monkeypatch)
    before = dump_keys(client)
    real = pd.read_parquet(repo / "data" / "purchases.parquet")

    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    cmd = ["augment", "--repo", str(repo), "--config", str(tmp_path / "tiny.json"), "--json", "--events"]
    code, _, err = ecaug_cli([*cmd, "nope"], capsys, monkeypatch)
    assert code == 2 and "--events nope: no such data source" in err and "Traceback" not in err, err
    code, out, err = ecaug_cli([*cmd, "purchases"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    res = json.loads(out.strip().splitlines()[-1])
    assert res["events"] == "purchases" and res["real_events"] == len(real)
    assert res["gate"] == "pass" and res["activated"] is True, res
    # split first (leave-last-out): each shopper's last event (test) and the one before (validation) held out
    assert res["held_out_events"] == 300 and res["train_events"] == len(real) - 300
    syn = pd.read_parquet(Path(res["run_dir"]) / "purchases_synth.parquet")
    assert len(syn) == res["events_written"] > 0
    if keys == "uuid":
        assert syn["shopper_ref"].str.startswith(f"ecaug:{res['run_id']}:").all()
    else:
        assert str(syn["shopper_ref"].dtype) == "int64" and (syn["shopper_ref"] >= SYNTHETIC_USER_ID_BASE).all()
    assert set(syn["sku"]) <= set(real["sku"]) and syn["is_synthetic"].all()
    assert set(syn["kind"]) <= {"expanded", "synthetic"} and (syn["kind"] == "expanded").any()
    # the twin is a Feast source like the shop's own: read back through the offline store
    store = FeatureStore(repo_path=str(repo))
    twin = store.get_data_source("purchases_synth")
    back = read_events(store, twin, "shopper_ref", "sku")
    assert len(back) == len(syn) and set(back["shopper_ref"]) == set(syn["shopper_ref"])
    assert dump_keys(client) == before  # events are not online: the shop's Redis is untouched
    hist = event_histories(store, "purchases")  # for sequence consumers: real and synthetic histories
    real_h, syn_h = hist[~hist["is_synthetic"]], hist[hist["is_synthetic"]]
    assert len(real_h) == 150 and real_h["run_id"].isna().all() and (syn_h["run_id"] == res["run_id"]).all()
    assert set(syn_h["shopper_ref"]) == set(syn["shopper_ref"])
    first = syn_h.iloc[0]
    assert first["items"] == syn[syn["shopper_ref"] == first["shopper_ref"]].sort_values("bought_at")["sku"].tolist()

    # features follow the generated behaviour, computed by the grocer's own function (its repo file)
    code, out, err = ecaug_cli([*cmd[:-1], "--view", "shopper_behaviour", "--events", "purchases"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    res2 = json.loads(out.strip().splitlines()[-1])
    assert res2["gate"] == "pass" and res2["previous_run"] == res["run_id"], res2
    ev2 = pd.read_parquet(Path(res2["run_dir"]) / "purchases_synth.parquet")
    rows = pd.read_parquet(Path(res2["run_dir"]) / "shopper_behaviour_synth.parquet")
    assert res2["materialized"] == {"shopper_behaviour_synth": ev2["shopper_ref"].nunique()} == {"shopper_behaviour_synth": len(rows)}
    after = dump_keys(client)
    assert {k: after[k] for k in before} == before and len(after) == len(before) + len(rows)
    some = rows["shopper_ref"].iloc[0]
    newest = ev2[ev2["shopper_ref"] == some].sort_values("bought_at")["sku"].tolist()[::-1][:7]
    got = store.get_online_features(features=["shopper_behaviour_synth:last_items_bought", "shopper_behaviour_synth:run_id"],
                                    entity_rows=[{"shopper_ref": some if keys == "uuid" else int(some)}]).to_dict()
    assert got["last_items_bought"] == [newest] and got["run_id"] == [res2["run_id"]]
    # without a function: ecaug's builders named per field (count, recent_items:5, top_item)
    code, out, err = ecaug_cli([*cmd[:-1], "--view", "shopper_activity", "--events", "purchases"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    res3 = json.loads(out.strip().splitlines()[-1])
    ev3 = pd.read_parquet(Path(res3["run_dir"]) / "purchases_synth.parquet").sort_values("bought_at", kind="stable")
    act = pd.read_parquet(Path(res3["run_dir"]) / "shopper_activity_synth.parquet").set_index("shopper_ref")
    assert res3["materialized"]["shopper_activity_synth"] == len(act) == ev3["shopper_ref"].nunique()
    for ref, g in list(ev3.groupby("shopper_ref"))[:20]:
        row = act.loc[ref]
        assert row["n_purchases"] == len(g) and list(row["recent_skus"]) == g["sku"].tolist()[::-1][:5]
        assert row["top_sku"] in set(g["sku"][g["sku"].map(g["sku"].value_counts()) == g["sku"].value_counts().max()])
    code, _, err = ecaug_cli([*cmd[:-1], "--view", "product_stats", "--events", "purchases"], capsys, monkeypatch)
    assert code == 2 and "--view product_stats: keyed by 'product_no'" in err, err


def test_builder_specs_checked_before_fitting():
    """A field without a builder, or an unknown builder: one line naming view and field."""
    from ecaug_feast.errors import EcaugError
    from ecaug_feast.jobs.repo_features import builtin_function

    make = lambda spec: builtin_function("v", ["n", "recent"], json.dumps(spec), "u", "i", "t")  # noqa: E731
    with pytest.raises(EcaugError, match="field\\(s\\) recent name no builder"):
        make({"n": "count"})
    with pytest.raises(EcaugError, match="--view v, field 'recent': unknown builder 'latest'"):
        make({"n": "count", "recent": "latest"})
    with pytest.raises(EcaugError, match="recent_items:x: N must be a positive integer"):
        make({"n": "count", "recent": "recent_items:x"})
    with pytest.raises(EcaugError, match="recent_items:0: N must be a positive integer"):
        make({"n": "count", "recent": "recent_items:0"})
    ev = pd.DataFrame({"u": ["a", "a", "b"], "i": [1, 2, 3], "t": pd.to_datetime(["2025-01-01", "2025-01-02", "2025-01-01"])})
    rows = make({"n": "count", "recent": "recent_items:1"})(ev)
    assert rows.to_dict("list") == {"u": ["a", "b"], "n": [2, 1], "recent": [[2], [3]]}


def test_view_rows_keep_only_the_generated_users(caplog):
    """A feature function returning rows of real keys: those rows are dropped (a warning with the
    count), never written to the twin nor materialized onto a real entity."""
    from feast import Entity, FeatureView, Field, FileSource
    from feast.types import Int64, String

    from ecaug_feast.jobs.augment_events import view_rows
    from ecaug_feast.plugin import synthetic_twins

    shopper = Entity(name="shopper", join_keys=["u"])
    view = FeatureView(name="v", entities=[shopper], schema=[Field(name="u", dtype=String), Field(name="n", dtype=Int64)],
                       source=FileSource(path="v.parquet", timestamp_field="t"))
    twin = synthetic_twins([view])[0]
    ev = pd.DataFrame({"u": ["ecaug:r:0", "ecaug:r:0", "ecaug:r:1"], "i": [1, 2, 3],
                       "t": pd.to_datetime(["2025-01-01", "2025-01-02", "2025-01-01"], utc=True)})
    leaky = lambda e: pd.DataFrame({"u": ["ecaug:r:0", "ecaug:r:1", "real-7", "real-8"], "n": [2, 1, 9, 9]})  # noqa: E731
    with caplog.at_level("WARNING"):
        rows, dropped = view_rows("v", twin, leaky, ev, "u", "t", "r")
    assert dropped == 2 and "dropped 2 row(s)" in caplog.text
    assert rows["u"].tolist() == ["ecaug:r:0", "ecaug:r:1"] and rows["is_synthetic"].all()


def test_event_twin_prefix_checked_like_the_views():
    """synthetic_events checks its key_prefix as synthetic_twins does; a view whose twin's prefix
    differs from the event twin's is refused before any fitting (a rollback by the run's keys would
    miss its rows)."""
    from types import SimpleNamespace

    from feast import Entity, FeatureView, Field, FileSource
    from feast.types import Int64, String

    from ecaug_feast.errors import EcaugError
    from ecaug_feast.ids import DEFAULT_KEY_PREFIX
    from ecaug_feast.jobs.augment_events import feature_functions
    from ecaug_feast.jobs.repo_keys import KeySpace
    from ecaug_feast.plugin import KEY_PREFIX_TAG, SynthTwinConfig, synthetic_events, synthetic_twins

    src = FileSource(name="purchases", path="p.parquet", timestamp_field="t")
    for bad in ("", " x:"):
        with pytest.raises(EcaugError, match="synthetic_events: key_prefix .* must be non-empty"):
            synthetic_events(src, user_key="u", item_key="i", config=SynthTwinConfig(key_prefix=bad))
    assert synthetic_events(src, user_key="u", item_key="i").tags[KEY_PREFIX_TAG] == DEFAULT_KEY_PREFIX

    view = FeatureView(name="v", entities=[Entity(name="shopper", join_keys=["u"])],
                       schema=[Field(name="u", dtype=String), Field(name="n", dtype=Int64)],
                       source=FileSource(path="v.parquet", timestamp_field="t"))
    twin = synthetic_twins([view], config=SynthTwinConfig(key_prefix="other:"), features={"v": {"n": "count"}})[0]
    store = SimpleNamespace(config=SimpleNamespace(repo_path="."), get_feature_view=lambda name: view,
                            list_feature_views=lambda: [twin])
    with pytest.raises(EcaugError, match="--view v: its twin's key_prefix 'other:' differs from the event twin's 'ecaug:'"):
        feature_functions(store, ["v"], KeySpace("u", "string", DEFAULT_KEY_PREFIX), "i", "t")
    assert set(feature_functions(store, ["v"], KeySpace("u", "string", "other:"), "i", "t")) == {"v"}
