"""Issue 31 item 4 (training side): ``ecaug train --repo R --events SRC`` and ``ecaug finetune
--repo R --events SRC`` train the product's sequence model from a shop's own Feast repo, whatever
its key types, on repos generated here that ecaug's code has never seen (stock ``feast apply``,
real Feast):

- the grocer (``_grocer.py``): shoppers keyed by UUID strings, skus by strings, file offline store;
  train, then ``ecaug augment --repo --events`` (the sequence path), then finetune on the real and
  the twin's synthetic histories (``plugin.training_rows(events=...)``);
- a hardware shop written below: customers keyed by Int64 numbers, products by Int32 numbers, a
  DuckDB offline store, an ``Array(Int32)`` list feature of recent products as ``--history``.

The checkpoint lives under ``<state>/repos/<project>/models/<name>`` with the shop's item keys
(``item_keys.json``) and ``config.json`` ``data.repo`` (docs/CONTRACT.md §8)."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _grocer import write_grocer_repo
from _shop import ecaug_cli, feast_cli, write_store_yaml

pytestmark = pytest.mark.slow

TINY_AUGMENT = {"gan": dict(embedding_dim=16, num_layers=1, num_heads=1, max_len=20, mle_epochs=2, adv_steps=4, adv_batch=16,
                            batch_size=32, gen_max_len=6, threads=1, device="cpu"),
                "expand_below": 6, "n_new": 3, "synthetic_share": 0.1, "c2st_rows": 500, "max_c2st_auc": 1.0}
TINY_TRAIN = ["--epochs", "2", "--batch-size", "32", "--dim", "16", "--json"]

HARDWARE_REPO = '''\
"""A hardware shop's repo file (never seen by ecaug's code): numeric keys."""
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Int32, Int64

from ecaug_feast.plugin import synthetic_events

customer = Entity(name="customer", join_keys=["customer_no"], value_type=ValueType.INT64)
customer_recent = FeatureView(
    name="customer_recent", entities=[customer], ttl=timedelta(days=90), online=True,
    schema=[Field(name="customer_no", dtype=Int64), Field(name="recent_products", dtype=Array(Int32)),
            Field(name="n_orders", dtype=Int64)],
    source=FileSource(name="recent_source", path="data/recent.parquet", timestamp_field="at"),
)
orders = FileSource(name="orders", path="data/orders.parquet", timestamp_field="ordered_at")
orders_synth = synthetic_events(orders, user_key="customer_no", item_key="product_id", user_type=Int64, item_type=Int32,
                                runs_dir="data/ecaug_runs")
'''


def write_hardware_repo(repo: Path, redis_url: str, db: int, customers: int = 200) -> tuple[Path, pd.DataFrame]:
    """Orders of ``customers`` Int64-keyed customers over Int32 product numbers (a walk along the
    catalogue, as the grocer's), a DuckDB offline store."""
    rng = np.random.default_rng(11)
    (repo / "data").mkdir(parents=True)
    start = datetime(2025, 3, 1, tzinfo=timezone.utc)
    products = rng.choice(np.arange(10_000, 99_999), 60, replace=False)
    rows = []
    for c in rng.choice(10**12, customers, replace=False) + 1:
        at, p = start, int(rng.integers(len(products)))
        for _ in range(int(rng.integers(3, 10))):
            at += timedelta(hours=float(rng.uniform(1, 100)))
            rows.append({"customer_no": int(c), "product_id": int(products[p]), "ordered_at": at})
            p = (p + int(rng.integers(1, 4))) % len(products)
    orders = pd.DataFrame(rows).astype({"customer_no": "int64", "product_id": "int32"})
    orders.to_parquet(repo / "data" / "orders.parquet")
    recent = orders.sort_values("ordered_at").groupby("customer_no").agg(
        at=("ordered_at", "max"), recent_products=("product_id", lambda s: [int(x) for x in s][::-1][:5]),
        n_orders=("product_id", "size")).reset_index()
    recent.to_parquet(repo / "data" / "recent.parquet")
    write_store_yaml(repo, redis_url, db, "hardware", "duckdb")
    (repo / "hardware_repo.py").write_text(HARDWARE_REPO)
    return repo, orders


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def _checkpoint(path: str) -> tuple[dict, dict]:
    d = Path(path)
    return json.loads((d / "config.json").read_text()), json.loads((d / "item_keys.json").read_text())


def test_grocer_uuid_keys_train_augment_finetune(tmp_path: Path, redis_url: str, ecaug_home: Path, monkeypatch, capsys):
    from feast import FeatureStore

    from ecaug_feast.plugin import training_rows

    repo = write_grocer_repo(tmp_path / "grocer", redis_url, 10, shoppers=200, products=40, shopper_keys="uuid")
    feast_cli(repo, ["apply"], monkeypatch)
    real = pd.read_parquet(repo / "data" / "purchases.parquet")
    train = ["train", "--repo", str(repo), *TINY_TRAIN]

    # wrong names: one line, exit 2, before any reading or fitting
    for args, msg in [(["--events", "nope"], "--events nope: no such data source"),
                      (["--events", "purchases", "--history", "shopper_behaviour:basket_value"],
                       "'basket_value' is Float32; the item keys ('sku') need Array(String)"),
                      (["--events", "purchases", "--history", "product_stats:aisle"], "keyed by ['product_no']"),
                      (["--events", "purchases", "--history", "nope"], "expected VIEW:FIELD"),
                      (["--events", "purchases", "--name", "../x"], "checkpoint name '../x': not a valid name"),
                      (["--events", "purchases", "--model", "bag"], "--model does not apply with --repo"),
                      ([], "--repo needs --events")]:
        code, _, err = ecaug_cli([*train, *args], capsys, monkeypatch)
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert code == 2 and msg in err and len(lines) == 1 and "Traceback" not in err, (args, err)
    # a registry older than the repo file: the registry check leaves it to the full one, same words
    later = time.time() + 5
    os.utime(repo / "grocer_repo.py", (later, later))
    code, _, err = ecaug_cli([*train, "--events", "purchases", "--history", "shopper_behaviour:basket_value"], capsys, monkeypatch)
    assert code == 2 and "'basket_value' is Float32; the item keys ('sku') need Array(String)" in err, err
    os.utime(repo / "grocer_repo.py", (time.time() - 60, time.time() - 60))

    code, out, err = ecaug_cli([*train, "--events", "purchases", "--history", "shopper_behaviour:last_items_bought"], capsys, monkeypatch)
    assert code == 0, err[-3000:]
    res = _last_json(out)
    ckpt = ecaug_home / "repos" / "grocer" / "models" / "real"
    assert Path(res["checkpoint"]) == ckpt and not (ecaug_home / "models" / "real").exists()
    assert not list(repo.rglob("model.pt"))  # never inside the shop's repo
    cfg, keys = _checkpoint(res["checkpoint"])
    assert keys == {"dtype": "string", "keys": sorted(set(real["sku"]))}
    assert cfg["data"]["repo"] == {"project": "grocer", "events": "purchases", "user_key": "shopper_ref", "item_key": "sku",
                                   "user_dtype": "string", "item_dtype": "string",
                                   "history": {"view": "shopper_behaviour", "field": "last_items_bought"}}
    assert cfg["model"]["num_items"] == len(keys["keys"]) == res["items"]
    # split first, leave-last-out: every shopper (3+ purchases) has a validation and a test event
    assert res["users"] == 200 and res["held_out_events"] == 400 and res["train_events"] == len(real) - 400
    assert res["valid_users"] == res["test_users"] == res["test"]["users"] == 200
    for split in ("valid", "test"):
        assert 0 <= res[split]["ndcg@10"] <= res[split]["recall@10"] <= 1

    code, out, err = ecaug_cli(["augment", "--repo", str(repo), "--events", "purchases", "--config",
                                str(_write(tmp_path / "tiny.json", TINY_AUGMENT)), "--json"], capsys, monkeypatch)
    assert code == 0, err[-3000:]
    aug = _last_json(out)
    assert aug["gate"] == "pass" and aug["activated"] and aug["histories_accepted"] > 0, aug
    assert aug["train_events"] == res["train_events"]  # the same split as training's

    # sequence consumers: real training histories (held-out events removed) + the active run's
    store = FeatureStore(repo_path=str(repo))
    rows = training_rows(store, mix_ratio=0.25, seed=3, events="purchases")
    real_rows, syn_rows = rows[~rows["is_synthetic"]], rows[rows["is_synthetic"]]
    assert len(real_rows) == 200 and real_rows["items"].map(len).sum() == res["train_events"]
    assert len(syn_rows) == min(50, aug["histories_accepted"]) and (syn_rows["run_id"] == aug["run_id"]).all()
    assert set(syn_rows["shopper_ref"]).isdisjoint(real["shopper_ref"])
    assert set(x for h in syn_rows["items"] for x in h) <= set(real["sku"])
    last = real.sort_values("bought_at").groupby("shopper_ref")["sku"].agg(list)
    some = real_rows.iloc[0]
    assert some["items"] == last[some["shopper_ref"]][:-2]  # the last two events held out
    assert len(training_rows(store, mix_ratio=0.0, events="purchases")) == 200
    with pytest.raises(Exception, match="is not active"):
        training_rows(store, mix_ratio=1.0, events="purchases", run_id="r-nope")

    # finetune reads the shop's events once (the real read, counted by source, not replaced)
    from ecaug_feast import plugin

    reads: list[str] = []
    read_events = plugin.read_events
    monkeypatch.setattr(plugin, "read_events", lambda st, src, u, i: reads.append(src.name) or read_events(st, src, u, i))
    code, out, err = ecaug_cli(["finetune", "--repo", str(repo), "--events", "purchases", "--mix-ratio", "1", "--epochs", "1",
                                "--batch-size", "32", "--json"], capsys, monkeypatch)
    assert code == 0, err[-3000:]
    assert reads.count("purchases") == 1 and len(reads) == 2, reads  # the real source once, the twin's run once
    ft = _last_json(out)
    assert Path(ft["checkpoint"]) == ecaug_home / "repos" / "grocer" / "models" / "finetuned"
    assert ft["run_id"] == aug["run_id"] and ft["protocol"] == "pretrain"
    assert ft["synthetic_histories"] == min(200, aug["histories_accepted"]) and ft["histories"] == 200 + ft["synthetic_histories"]
    assert ft["train_events"] == res["train_events"] and ft["test"]["users"] == 200
    assert {"valid_before", "valid_pretrain", "valid", "test"} <= set(ft)
    cfg2, keys2 = _checkpoint(ft["checkpoint"])
    assert keys2 == keys and cfg2["data"]["repo"] == cfg["data"]["repo"] and cfg2["data"]["run_id"] == aug["run_id"]
    code, _, err = ecaug_cli(["finetune", "--repo", str(repo), "--events", "purchases", "--from", "nope"], capsys, monkeypatch)
    assert code == 2 and "checkpoint not found" in err and "Traceback" not in err, err


def _write(path: Path, obj: dict) -> Path:
    path.write_text(json.dumps(obj))
    return path


def test_hardware_int_keys_train(tmp_path: Path, redis_url: str, ecaug_home: Path, monkeypatch, capsys):
    repo, orders = write_hardware_repo(tmp_path / "hardware", redis_url, 11)
    code, _, err = ecaug_cli(["train", "--repo", str(repo), "--events", "orders", *TINY_TRAIN], capsys, monkeypatch)
    assert code == 2 and "run `feast apply`" in err and "Traceback" not in err, err  # nothing registered yet
    feast_cli(repo, ["apply"], monkeypatch)
    code, _, err = ecaug_cli(["train", "--repo", str(repo), "--events", "order", *TINY_TRAIN], capsys, monkeypatch)
    assert code == 2 and "--events order: no such data source" in err and "orders" in err and "Traceback" not in err, err
    code, out, err = ecaug_cli(["train", "--repo", str(repo), "--events", "orders", "--history", "customer_recent:recent_products",
                                "--name", "v1", *TINY_TRAIN], capsys, monkeypatch)
    assert code == 0, err[-3000:]
    res = _last_json(out)
    assert Path(res["checkpoint"]) == ecaug_home / "repos" / "hardware" / "models" / "v1"
    cfg, keys = _checkpoint(res["checkpoint"])
    assert keys == {"dtype": "int32", "keys": sorted(int(x) for x in set(orders["product_id"]))}
    assert cfg["data"]["repo"] == {"project": "hardware", "events": "orders", "user_key": "customer_no", "item_key": "product_id",
                                   "user_dtype": "int64", "item_dtype": "int32",
                                   "history": {"view": "customer_recent", "field": "recent_products"}}
    n = orders["customer_no"].nunique()
    assert res["users"] == n and res["held_out_events"] == 2 * n and res["test"]["users"] == n
    from recommender.item_keys import ItemKeys

    ik = ItemKeys.load(res["checkpoint"])
    assert ik.key_of(ik.index_of([int(orders["product_id"].iloc[0])])) == [int(orders["product_id"].iloc[0])]
    # fine-tuning needs the twin's active run: without `ecaug augment`, one line before any training
    code, _, err = ecaug_cli(["finetune", "--repo", str(repo), "--events", "orders", "--from", "v1"], capsys, monkeypatch)
    assert code == 2 and "no synthetic run is active for orders_synth" in err and "Traceback" not in err, err
    assert not (ecaug_home / "repos" / "hardware" / "models" / "finetuned").exists()


def test_event_log_split_is_assign_splits_rule():
    """The split of a shop's log in read order (ties in time included) labels each event as
    ``assign_split`` labels the same events sorted by user and time, the order
    ``ecaug augment --repo --events`` sorts them in: one rule, so no synthetic history holds a
    held-out event."""
    from ecaug_feast.datasets.split import assign_split, event_log_split

    rng = np.random.default_rng(0)
    n = 2000
    ev = pd.DataFrame({"u": rng.choice([f"u{i}" for i in range(250)], n),
                       "t": pd.to_datetime(rng.integers(0, 40, n) * 86400, unit="s", utc=True)})  # many equal times
    got = event_log_split(ev["u"], ev["t"])
    s = ev.assign(user_id=pd.factorize(ev["u"])[0], event_timestamp=ev["t"], row=np.arange(n))
    s = s.sort_values(["user_id", "event_timestamp"], kind="stable")
    want = np.empty(n, dtype=object)
    want[s["row"].to_numpy()] = assign_split(s, "leave_last_out")[0]
    assert (got == want).all() and set(got) == {"train", "valid", "test"}
    assert event_log_split(["a", "b", "b"], pd.to_datetime(["2025-01-01"] * 3, utc=True)).tolist() == ["train", "train", "test"]


def test_item_keys_of_another_type_than_declared_are_one_line():
    """The vocabulary is the source's item keys of the type the twin declares; a key of another
    type is refused in one line naming the source and column (before any fitting)."""
    from dataclasses import replace

    from ecaug_feast.errors import EcaugError
    from ecaug_feast.jobs.repo_train import ShopEvents, _item_keys

    shop = ShopEvents(None, "p", "orders", None, "u", "sku", "string", "int32")
    with pytest.raises(EcaugError, match="--events orders, column 'sku': key 'sku-1' is not an integer but the twin declares Int32"):
        _item_keys(shop, pd.Series(["sku-1", "sku-2"]))
    with pytest.raises(EcaugError, match="key 3 is not a string but the twin declares String item keys"):
        _item_keys(replace(shop, item_dtype="string"), pd.Series([3]))
    keys = _item_keys(replace(shop, item_dtype="int64"), pd.Series(np.array([50, 3, 50], dtype=np.int32)))
    assert keys.keys == (3, 50) and keys.dtype == "int64" and keys.index_of([50, 7]).tolist() == [2, 0]
