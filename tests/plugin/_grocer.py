"""A grocer's Feast repo that ecaug's code has never seen (issue 31): shoppers keyed by UUID
strings (or Int64 numbers), products by Int32 numbers, a list feature (the last items bought), a
file (or DuckDB) offline store,
the session's Redis online; the repo file declares the twins as docs/guide/plugin.md says.

- ``shopper`` / ``shopper_ref`` (String, UUIDs): view ``shopper_behaviour`` (basket value, visits
  per week, favourite aisle, ``last_items_bought: Array(String)``);
- ``product`` / ``product_no`` (Int32): view ``product_stats`` (price, sold last week, aisle);
- ``basket`` / ``basket_ref``: string keys in the data but an entity without a value type, so its
  twin declares Int64 keys: the wrong key type ecaug must refuse before fitting;
- service ``ranking_inputs`` (shopper and product views);
- ``shopper_activity`` (purchases, recent skus, top sku), its twin filled by ecaug's builders;
- the event log ``purchases`` (shopper_ref, sku, bought_at) with its twin (``synthetic_events``);
  the shopper_behaviour twin names the grocer's own feature function."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from _shop import write_store_yaml

REPO_FILE = '''\
"""The grocer's repo file (never seen by ecaug's code)."""
from datetime import timedelta

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float32, Int32, Int64, String

from ecaug_feast.plugin import synthetic_events, synthetic_twins

shopper = Entity(name="shopper", join_keys=["shopper_ref"], value_type=ValueType.__SHOPPER_VT__)
product = Entity(name="product", join_keys=["product_no"], value_type=ValueType.INT32)
basket = Entity(name="basket", join_keys=["basket_ref"])

shopper_behaviour = FeatureView(
    name="shopper_behaviour", entities=[shopper], ttl=timedelta(days=90), online=True,
    schema=[Field(name="shopper_ref", dtype=__SHOPPER_T__), Field(name="basket_value", dtype=Float32),
            Field(name="visits_per_week", dtype=Int64), Field(name="favourite_aisle", dtype=String),
            Field(name="last_items_bought", dtype=Array(String))],
    source=FileSource(name="shoppers_source", path="data/shoppers.parquet", timestamp_field="seen_at"),
)
product_stats = FeatureView(
    name="product_stats", entities=[product], ttl=timedelta(days=90), online=True,
    schema=[Field(name="product_no", dtype=Int32), Field(name="price", dtype=Float32),
            Field(name="sold_last_week", dtype=Int64), Field(name="aisle", dtype=String)],
    source=FileSource(name="products_source", path="data/products.parquet", timestamp_field="seen_at"),
)
basket_totals = FeatureView(
    name="basket_totals", entities=[basket], ttl=timedelta(days=90), online=True,
    schema=[Field(name="total", dtype=Float32), Field(name="n_items", dtype=Int64)],
    source=FileSource(name="baskets_source", path="data/baskets.parquet", timestamp_field="seen_at"),
)
shopper_activity = FeatureView(
    name="shopper_activity", entities=[shopper], ttl=timedelta(days=90), online=True,
    schema=[Field(name="shopper_ref", dtype=__SHOPPER_T__), Field(name="n_purchases", dtype=Int64),
            Field(name="recent_skus", dtype=Array(String)), Field(name="top_sku", dtype=String)],
    source=FileSource(name="activity_source", path="data/activity.parquet", timestamp_field="seen_at"),
)
ranking_inputs = FeatureService(name="ranking_inputs", features=[shopper_behaviour, product_stats])

# the shop's event log (one row per purchase) and its twin: where generated behaviour goes
purchases = FileSource(name="purchases", path="data/purchases.parquet", timestamp_field="bought_at")
purchases_synth = synthetic_events(purchases, user_key="shopper_ref", item_key="sku", user_type=__SHOPPER_T__,
                                   runs_dir="data/ecaug_runs")



def shopper_features(events: pd.DataFrame) -> pd.DataFrame:
    """The grocer's own feature code: one shopper_behaviour row per shopper from its purchases."""
    g = events.sort_values("bought_at").groupby("shopper_ref")
    weeks = g["bought_at"].agg(lambda t: max(1.0, (t.max() - t.min()).days / 7))
    return pd.DataFrame({
        "basket_value": (g.size() * 4.5).astype("float32"),
        "visits_per_week": (g.size() / weeks).round().clip(lower=1).astype("int64"),
        "favourite_aisle": "produce",
        "last_items_bought": g["sku"].agg(lambda s: list(s)[::-1][:7]),
    }).reset_index()


shopper_behaviour_synth, product_stats_synth, basket_totals_synth, shopper_activity_synth = synthetic_twins(
    [shopper_behaviour, product_stats, basket_totals, shopper_activity], entities=[shopper, product, basket],
    runs_dir="data/ecaug_runs",
    features={"shopper_behaviour": shopper_features,  # the grocer's own function
              "shopper_activity": {"n_purchases": "count", "recent_skus": "recent_items:5", "top_sku": "top_item"}})
'''

AISLES = ["dairy", "bakery", "produce", "frozen", "drinks"]


def write_grocer_repo(repo: Path, redis_url: str, db: int, shoppers: int = 200, products: int = 300,
                      snapshots: int = 3, project: str = "grocer", shopper_keys: str = "uuid",
                      offline: str = "file") -> Path:
    """Write the repo (yaml with the Redis at ``redis_url``, db ``db``, the ``offline`` store), its
    data and repo file. ``shopper_keys``: ``uuid`` (String keys) or ``int64`` (numbers)."""
    rng = np.random.default_rng(7)
    (repo / "data").mkdir(parents=True)
    end = datetime(2025, 6, 1, tzinfo=timezone.utc)
    times = [end - timedelta(days=7 * k) for k in range(snapshots)]
    refs = ([str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(shoppers)] if shopper_keys == "uuid"
            else [int(x) for x in rng.choice(10**9, shoppers, replace=False) + 1])
    skus = [f"sku-{i:04d}" for i in range(300)]
    pop = 1.0 / np.arange(1, len(skus) + 1)
    pop /= pop.sum()
    events = []
    for ref in refs:  # each shopper walks the aisles: the next sku is mostly near the last one
        at, sku = end - timedelta(days=60), int(rng.choice(len(skus), p=pop))
        for _ in range(int(rng.integers(3, 12))):
            at += timedelta(hours=float(rng.uniform(2, 200)))
            events.append({"shopper_ref": ref, "sku": skus[sku], "bought_at": at})
            sku = int((sku + rng.integers(1, 6)) % len(skus)) if rng.random() < 0.7 else int(rng.choice(len(skus), p=pop))
    pd.DataFrame(events).to_parquet(repo / "data" / "purchases.parquet")
    ev = pd.DataFrame(events)
    pd.DataFrame([{"shopper_ref": ref, "seen_at": g["bought_at"].max(), "n_purchases": len(g),
                   "recent_skus": g["sku"].tolist()[::-1][:5], "top_sku": g["sku"].mode().iloc[0]}
                  for ref, g in ev.groupby("shopper_ref")]).to_parquet(repo / "data" / "activity.parquet")
    rows = []
    for ref in refs:
        spend = rng.gamma(3.0, 15.0)
        for t in times:
            k = int(rng.integers(1, 8))
            rows.append({"shopper_ref": ref, "seen_at": t, "basket_value": np.float32(spend * rng.uniform(0.7, 1.3)),
                         "visits_per_week": int(rng.poisson(2) + 1), "favourite_aisle": str(rng.choice(AISLES)),
                         "last_items_bought": list(rng.choice(skus, k, replace=False, p=pop))})
    pd.DataFrame(rows).to_parquet(repo / "data" / "shoppers.parquet")
    prods = []
    for n in range(1, products + 1):
        aisle, price = str(rng.choice(AISLES)), rng.gamma(2.0, 2.5)
        for t in times:  # cheaper products sell more
            prods.append({"product_no": n, "seen_at": t, "price": np.float32(price * rng.uniform(0.9, 1.1)),
                          "sold_last_week": int(rng.poisson(60 / (1 + price))), "aisle": aisle})
    prods = pd.DataFrame(prods)
    prods["product_no"] = prods["product_no"].astype("int32")
    prods.to_parquet(repo / "data" / "products.parquet")
    pd.DataFrame([{"basket_ref": f"b-{i}", "seen_at": times[0], "total": np.float32(rng.gamma(3.0, 15.0)),
                   "n_items": int(rng.integers(1, 20))} for i in range(80)]).to_parquet(repo / "data" / "baskets.parquet")
    write_store_yaml(repo, redis_url, db, project, offline)
    kind = {"uuid": ("String", "STRING"), "int64": ("Int64", "INT64")}[shopper_keys]
    (repo / "grocer_repo.py").write_text(REPO_FILE.replace("__SHOPPER_T__", kind[0]).replace("__SHOPPER_VT__", kind[1]))
    return repo
