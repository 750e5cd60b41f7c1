"""Vectorised CSR/KJT batching equals the obvious per-row construction."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE
from ecaug_feast.histories import csr_from_lists, csr_take
from recommender.batching import ItemCatalog, KJT_KEYS, encode_users, make_kjt, user_bucket


def test_csr_take_matches_python_loop():
    rng = np.random.default_rng(0)
    lists = [list(rng.integers(1, 50, size=rng.integers(0, 6))) for _ in range(200)]
    v, o = csr_from_lists(pd.Series(lists + [None]))
    rows = rng.integers(0, 201, size=64)
    vals, lens = csr_take(v, o, rows)
    expect = [x for r in rows for x in ((lists + [[]])[r])]
    assert vals.tolist() == expect
    assert lens.tolist() == [len((lists + [[]])[r]) for r in rows]


def test_truncation_keeps_most_recent_first():
    v, o = csr_from_lists(pd.Series([list(range(30, 0, -1)), [5]]), max_len=20)
    assert np.diff(o).tolist() == [20, 1]
    assert v[:20].tolist() == list(range(30, 10, -1))


def test_user_encoding_and_kjt():
    items = pd.DataFrame({"item_id": [1, 2, 3], "attributes": [[1, 2], [3], [2]]})
    cat = ItemCatalog.from_frame(items)
    users = pd.DataFrame({
        "user_id": [5, SYNTHETIC_USER_ID_BASE + 3],
        "recent_items": [[3, 1], None],
        "top_attributes": [[2], [99]],  # 99: unknown attribute -> row 0
        "n_interactions": [2, 0], "days_since_last": [1.0, -1.0], "attr_diversity": [0.5, 0.0], "mean_item_popularity": [3.0, 0.0],
    })
    enc = encode_users(users, cat, user_buckets=64, mean=[0] * 4, std=[1] * 4)
    sp, dense = enc.take(np.array([0, 1]))
    assert sp["recent_attributes"][0].tolist() == [2, 1, 2]  # attributes of items 3 then 1
    assert sp["recent_attributes"][1].tolist() == [3, 0]
    assert sp["top_attributes"][0].tolist() == [2, 0]
    assert sp["user_id"][0][1] == 0 and sp["user_id"][0][0] > 0  # synthetic user -> shared bucket 0
    kjt = make_kjt(sp, None, 2)
    assert kjt.keys() == KJT_KEYS
    assert kjt["item_id"].lengths().tolist() == [0, 0]
    assert kjt["recent_items"].values().tolist() == [3, 1]
    assert np.allclose(dense[0], [np.log1p(2), np.log1p(1), 0.5, np.log1p(3)])


def test_user_bucket_range():
    b = user_bucket(np.array([1, 2, 10**6, 0, -4, SYNTHETIC_USER_ID_BASE]), 100)
    assert ((b[:3] >= 1) & (b[:3] < 100)).all()
    assert b[3:].tolist() == [0, 0, 0]
