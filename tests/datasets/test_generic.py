"""Generic adapter: a dataset with other column names through --map and YAML; every bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from ecaug_feast.datasets import load_generic
from ecaug_feast.datasets.generic import parse_map_flag
from ecaug_feast.errors import DataValidationError, EcaugError

MAP = {"user": "customer", "item": "sku", "timestamp": "ordered_at", "weight": "qty"}


def make_shop(tmp_path, n_users=40, n_items=25, seed=3):
    """A generated shop: string ids, ISO timestamps, an item table with brand + '|' tags."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        k = int(rng.integers(3, 9))
        items = rng.choice(n_items, size=k, replace=False)
        t0 = pd.Timestamp("2023-01-01", tz="UTC") + pd.Timedelta(hours=int(rng.integers(0, 2000)))
        for j, it in enumerate(items):
            rows.append({"customer": f"C{u:03d}", "sku": f"SKU-{it}", "ordered_at": (t0 + pd.Timedelta(hours=7 * j)).isoformat(),
                         "qty": int(rng.integers(1, 4)), "bought": 1})
    inter = pd.DataFrame(rows)
    items = pd.DataFrame({"sku": [f"SKU-{i}" for i in range(n_items)],
                          "brand": [f"b{i % 4}" for i in range(n_items)],
                          "tags": ["red|matte" if i % 2 else "blue" for i in range(n_items)]})
    users = pd.DataFrame({"customer": [f"C{u:03d}" for u in range(n_users)], "age_band": [u % 3 for u in range(n_users)]})
    inter.to_csv(tmp_path / "orders.csv", index=False)
    items.to_parquet(tmp_path / "products.parquet", index=False)
    users.to_csv(tmp_path / "customers.csv", index=False)
    return inter, items, users


def test_generated_shop_via_flags(tmp_path):
    inter, items, users = make_shop(tmp_path)
    ds = load_generic(tmp_path / "orders.csv", MAP, items=tmp_path / "products.parquet", users=tmp_path / "customers.csv", name="shop")
    assert ds.name == "shop" and ds.split_kind == "temporal"
    assert len(ds.interactions) == len(inter)
    assert ds.interactions["user_id"].between(1, inter["customer"].nunique()).all()
    assert sorted(ds.interactions["weight"].unique()) == sorted(inter["qty"].astype(float).unique())
    # the raw ids map back exactly
    umap = dict(zip(ds.user_map["user_id"], ds.user_map["raw_user_id"]))
    imap = dict(zip(ds.item_map["item_id"], ds.item_map["raw_item_id"]))
    back = set(zip(ds.interactions["user_id"].map(umap), ds.interactions["item_id"].map(imap)))
    assert back == set(zip(inter["customer"], inter["sku"]))
    # attributes: brand value + each '|' tag -> distinct ids; same brand -> same id
    attrs = {imap[i]: a for i, a in zip(ds.items["item_id"], ds.items["attributes"])}
    assert len(attrs["SKU-1"]) == 3 and len(attrs["SKU-0"]) == 2
    assert set(attrs["SKU-1"]) & set(attrs["SKU-5"])  # both brand b1, both red|matte
    assert ds.users is not None and list(ds.users.columns) == ["user_id", "age_band"]


def test_generated_shop_via_yaml(tmp_path):
    make_shop(tmp_path)
    cfg = {"name": "yamlshop", "interactions": "orders.csv", "items": "products.parquet",
           "columns": {"user": "customer", "item": "sku", "timestamp": "ordered_at", "label": "bought"},
           "item_attributes": ["brand"], "split": "leave_last_out"}
    (tmp_path / "map.yaml").write_text(yaml.safe_dump(cfg))
    ds = load_generic(mapping_file=tmp_path / "map.yaml")
    assert ds.name == "yamlshop" and ds.split_kind == "leave_last_out"
    assert ds.items["attributes"].map(len).eq(1).all()  # only the brand column


def test_numeric_timestamps_and_negative_labels(tmp_path):
    df = pd.DataFrame({"u": [1, 1, 2, 2], "i": [5, 6, 5, 7], "t": [1_700_000_000_000, 1_700_000_060_000, 1_700_000_000_000, 1_700_000_001_000], "y": [1, 0, 1, 1]})
    df.to_parquet(tmp_path / "e.parquet")
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"timestamp_unit": "ms", "columns": {"user": "u", "item": "i", "timestamp": "t", "label": "y"}}))
    ds = load_generic(tmp_path / "e.parquet", mapping_file=tmp_path / "m.yaml")
    assert len(ds.interactions) == 3 and ds.meta["negative_label_rows_dropped"] == 1
    assert ds.interactions["event_timestamp"].min() == pd.Timestamp(1_700_000_000_000, unit="ms", tz="UTC")
    assert ds.items["attributes"].map(lambda a: a == [1]).all()  # no item table -> attribute 1


def _csv(tmp_path, text, name="e.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


BASIC = {"user": "u", "item": "i", "timestamp": "t"}


@pytest.mark.parametrize(
    "text, mapping, column, reason",
    [
        ("u,i,t\n", BASIC, None, "empty"),
        ("u,i,x\n1,2,2024-01-01\n", BASIC, "t", "missing column"),
        ("u,i,t\n1,2,2024-01-01\n1,3,yesterday-ish\n", BASIC, "t", "unparseable timestamps"),
        ("u,i,t\n1,2,2024-01-01\n,3,2024-01-02\n", BASIC, "u", "NaN"),
        ("u,i,t\n1,2.5,2024-01-01\n1,3,2024-01-02\n", BASIC, "i", "fractional"),
        ("u,i,t,w\n1,2,2024-01-01,many\n", {**BASIC, "weight": "w"}, "w", "expected numbers"),
        ("u,i,t,w\n1,2,2024-01-01,-1\n", {**BASIC, "weight": "w"}, "w", "positive"),
        ("u,i,t\n1,2,2024-01-01\n1,2,2024-01-01\n", BASIC, "u, i, t", "duplicate keys"),
        ("u,i,t,y\n1,2,2024-01-01,0\n", {**BASIC, "label": "y"}, "y", "no rows with a positive label"),
    ],
)
def test_bad_interactions(tmp_path, text, mapping, column, reason):
    p = _csv(tmp_path, text)
    with pytest.raises(DataValidationError, match=reason) as ei:
        load_generic(p, mapping)
    assert ei.value.file == str(p)
    assert ei.value.column == column


def test_bad_item_tables(tmp_path):
    p = _csv(tmp_path, "u,i,t\n1,a,2024-01-01\n1,b,2024-01-02\n")
    dup = _csv(tmp_path, "i,brand\na,x\na,y\nb,z\n", "items_dup.csv")
    with pytest.raises(DataValidationError, match="duplicate key") as ei:
        load_generic(p, BASIC, items=dup)
    assert ei.value.file == str(dup) and ei.value.column == "i"
    missing = _csv(tmp_path, "i,brand\na,x\n", "items_missing.csv")
    with pytest.raises(DataValidationError, match="no row, so no attributes"):
        load_generic(p, BASIC, items=missing)
    empty_attr = _csv(tmp_path, "i,brand\na,x\nb,\n", "items_noattr.csv")
    with pytest.raises(DataValidationError, match="1 items have no attributes"):
        load_generic(p, BASIC, items=empty_attr)
    dup_users = _csv(tmp_path, "u,age\n1,3\n1,4\n", "users.csv")
    with pytest.raises(DataValidationError, match="duplicate key") as ei:
        load_generic(p, BASIC, users=dup_users)
    assert ei.value.column == "u"


def test_missing_file_and_bad_mapping(tmp_path):
    with pytest.raises(DataValidationError, match="file not found"):
        load_generic(tmp_path / "nope.csv", BASIC)
    with pytest.raises(DataValidationError, match="unsupported file type"):
        load_generic(_csv(tmp_path, "x", "e.xlsx"), BASIC)
    with pytest.raises(EcaugError, match="lacks 'timestamp'"):
        load_generic(_csv(tmp_path, "u,i\n1,2\n"), {"user": "u", "item": "i"})
    with pytest.raises(EcaugError, match="unknown key"):
        parse_map_flag("user=u,shop=s")
    with pytest.raises(EcaugError, match="KEY=COLUMN"):
        parse_map_flag("user")
    (tmp_path / "bad.yaml").write_text("columns: [1, 2\n")
    with pytest.raises(DataValidationError, match="not valid YAML"):
        load_generic(mapping_file=tmp_path / "bad.yaml")
    (tmp_path / "unk.yaml").write_text("colums: {}\n")
    with pytest.raises(DataValidationError, match="unknown key") as ei:
        load_generic(mapping_file=tmp_path / "unk.yaml")
    assert ei.value.column == "colums"
    assert parse_map_flag("user=a, item=b,timestamp=c") == {"user": "a", "item": "b", "timestamp": "c"}
