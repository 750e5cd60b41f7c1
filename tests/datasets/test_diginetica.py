"""Diginetica adapter: anonymous-session rule, timestamps, categories (on a tiny hand-made copy)."""

from __future__ import annotations

import pandas as pd
import pytest

from ecaug_feast import paths
from ecaug_feast.datasets import load_dataset
from ecaug_feast.datasets.diginetica import load_diginetica
from ecaug_feast.errors import DataValidationError

PURCHASES = """sessionId;userId;timeframe;eventdate;ordernumber;itemId
10;NA;1000;2016-05-01;1;100
10;NA;2000;2016-05-01;1;101
11;NA;500;2016-05-02;2;100
12;7;0;2016-05-03;3;102
13;7;60000;2016-05-04;4;100
13;7;60000;2016-05-04;4;100
"""
CATEGORIES = "itemId;categoryId\n100;5\n101;9\n102;5\n103;1\n"


def _tiny(tmp_path, purchases=PURCHASES, categories=CATEGORIES):
    (tmp_path / "train-purchases.csv").write_text(purchases)
    (tmp_path / "product-categories.csv").write_text(categories)
    return tmp_path


def test_anonymous_sessions_and_known_users(tmp_path):
    ds = load_diginetica(_tiny(tmp_path))
    umap = dict(zip(ds.user_map["raw_user_id"], ds.user_map["user_id"]))
    assert set(umap) == {"s10", "s11", "u7"}  # one pseudo-user per anonymous session, u7 merged
    inter = ds.interactions
    u7 = inter[inter["user_id"] == umap["u7"]]
    assert len(u7) == 2  # exact duplicate row dropped
    assert ds.meta["duplicates_dropped"] == 1
    s10 = inter[inter["user_id"] == umap["s10"]].sort_values("event_timestamp")
    assert s10["event_timestamp"].tolist() == [
        pd.Timestamp("2016-05-01T00:00:01Z"), pd.Timestamp("2016-05-01T00:00:02Z")
    ]
    imap = dict(zip(ds.item_map["raw_item_id"].astype(int), ds.item_map["item_id"]))
    attrs = dict(zip(ds.items["item_id"], ds.items["attributes"]))
    assert attrs[imap[100]] == attrs[imap[102]] != attrs[imap[101]]  # same category -> same attribute id
    assert ds.split_kind == "temporal"


def test_bad_date_and_missing_category(tmp_path):
    bad = PURCHASES.replace("2016-05-02", "05/02/2016")
    with pytest.raises(DataValidationError, match="unparseable date") as ei:
        load_diginetica(_tiny(tmp_path, purchases=bad))
    assert ei.value.column == "eventdate"
    with pytest.raises(DataValidationError, match="no attributes"):
        load_diginetica(_tiny(tmp_path, categories="itemId;categoryId\n100;5\n"))
    with pytest.raises(DataValidationError, match="duplicate key"):
        load_diginetica(_tiny(tmp_path, categories=CATEGORIES + "100;6\n"))
    with pytest.raises(DataValidationError, match="missing column") as ei:
        load_diginetica(_tiny(tmp_path, purchases=PURCHASES.replace("itemId", "item")))
    assert ei.value.column == "itemId"


@pytest.mark.skipif(not (paths.shared_data_dir() / "diginetica" / "train-purchases.csv").exists(), reason="../shared absent")
def test_real_diginetica():
    ds = load_dataset("diginetica")
    assert len(ds.interactions) + ds.meta["duplicates_dropped"] == 18025
    assert ds.interactions["event_timestamp"].min() >= pd.Timestamp("2016-01-02", tz="UTC")
