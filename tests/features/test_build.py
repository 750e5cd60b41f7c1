"""Point-in-time features: hand-checked values, a naive reference on Beauty, no leakage of held-out events."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from ecaug_feast.datasets import Dataset, load_dataset, subset_users
from ecaug_feast.datasets.store import load_processed, write_processed
from ecaug_feast.features.build import (RECENT_ITEMS, SERVING_OFFSET, build_tables, build_user_features, popularity_at,
                                        read_feature_meta, write_features)

D = [pd.Timestamp(f"2024-01-0{d}", tz="UTC") for d in range(1, 6)]


@pytest.fixture()
def tiny(monkeypatch, tmp_path):
    """u1: items 1,2,3 train, 4 valid, 5 test; u2: items 2,1 train, 5 valid, 4 test."""
    monkeypatch.setenv("ECAUG_HOME", str(tmp_path))
    inter = pd.DataFrame({
        "user_id": np.array([1, 1, 1, 1, 1, 2, 2, 2, 2], dtype=np.int64),
        "item_id": np.array([1, 2, 3, 4, 5, 2, 1, 5, 4], dtype=np.int64),
        "event_timestamp": [D[0], D[1], D[2], D[3], D[4], D[0], D[1], D[2], D[3]],
        "weight": 1.0,
    })
    items = pd.DataFrame({"item_id": np.arange(1, 6, dtype=np.int64), "attributes": [[1, 2], [2], [3], [4], [5]]})
    write_processed(Dataset("tiny", inter, items))
    return load_processed("tiny")


def test_hand_checked_user_rows(tiny):
    t = build_tables(tiny, neg_per_pos=1)
    uf = t.user_features
    u1 = uf[uf["user_id"] == 1].reset_index(drop=True)
    assert u1["event_timestamp"].tolist() == [D[0], D[1], D[2], D[2] + SERVING_OFFSET]
    assert u1["n_interactions"].tolist() == [0, 1, 2, 3]
    assert u1["recent_items"].map(list).tolist() == [[], [1], [2, 1], [3, 2, 1]]
    assert u1["top_attributes"].map(list).tolist() == [[], [1, 2], [2, 1], [2, 1, 3]]
    assert u1["days_since_last"].tolist()[:3] == [-1.0, 1.0, 1.0]
    h3 = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))
    np.testing.assert_allclose(u1["attr_diversity"], [0.0, math.log(2), h3, -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))], rtol=1e-6)
    # popularity of the consumed item at consumption time: i1@d1 -> 0, i2@d2 -> 1 (u2@d1), i3@d3 -> 0
    np.testing.assert_allclose(u1["mean_item_popularity"], [0.0, 0.0, 0.5, 1 / 3], rtol=1e-6)


def test_popularity_at_counts_strictly_earlier_reference_events():
    """Against a brute-force count, with ties in time; on its own rows, against a rank within item."""
    rng = np.random.default_rng(0)
    ev = pd.DataFrame({"user_id": rng.integers(0, 30, 2000), "item_id": rng.integers(1, 25, 2000),
                       "event_timestamp": pd.to_datetime(rng.integers(0, 60, 2000) * 86_400 * 10**9, utc=True)})
    rank = ev.groupby("item_id")["event_timestamp"].rank(method="min").to_numpy() - 1  # 1 + strictly earlier events
    np.testing.assert_array_equal(popularity_at(ev, ev), rank)
    ref, q = ev.iloc[:700], ev.iloc[1200:1500]
    brute = [int(((ref["item_id"] == i) & (ref["event_timestamp"] < t)).sum()) for i, t in zip(q["item_id"], q["event_timestamp"])]
    np.testing.assert_array_equal(popularity_at(q, ref), brute)


def test_popularity_reference_leaves_the_rows_own_events_uncounted(tiny):
    """Rows built with a reference count only the reference's events: a second user consuming item 1
    on d2 raises u1's popularity of it without a reference, not with the first user's events alone."""
    d = tiny.interactions
    one = d[(d["user_id"] == 1) & (d["event_timestamp"] <= D[2])][["user_id", "item_id", "event_timestamp"]]
    other = pd.DataFrame({"user_id": [9, 9], "item_id": [2, 3], "event_timestamp": [D[0], D[1]]})
    both = pd.concat([one, other], ignore_index=True)
    attrs = {i: [] for i in range(1, 6)}
    plain = build_user_features(both, attrs)
    ref = build_user_features(both, attrs, popularity_reference=one)
    pop = lambda uf: uf[uf["user_id"] == 1]["mean_item_popularity"].tolist()
    np.testing.assert_allclose(pop(plain), [0.0, 0.0, 0.5, 2 / 3], rtol=1e-6)  # u9's 2@d1, 3@d2 counted
    np.testing.assert_allclose(pop(ref), [0.0, 0.0, 0.0, 0.0], rtol=1e-6)


def test_hand_checked_item_rows_and_no_leak(tiny):
    t = build_tables(tiny, neg_per_pos=1)
    itf = t.item_features
    base = D[0] - pd.Timedelta(days=1)
    i1 = itf[itf["item_id"] == 1]
    assert i1["event_timestamp"].tolist() == [base, D[0] + SERVING_OFFSET, D[1] + SERVING_OFFSET]
    assert i1["popularity"].tolist() == [0.0, 1.0, 2.0]
    assert i1["attributes"].iloc[0] == [1, 2] and (i1["n_attributes"] == 2).all()
    # items 4 and 5 occur only in valid/test: popularity stays 0, and they never show in a user feature
    assert itf[itf["item_id"].isin([4, 5])]["popularity"].eq(0).all()
    assert not t.user_features["recent_items"].map(lambda r: bool({4, 5} & set(r))).any()
    assert not t.user_features["top_attributes"].map(lambda r: bool({4, 5} & set(r))).any()
    # serving row of u2 ignores its valid (d3) and test (d4) events
    u2 = t.user_features[t.user_features["user_id"] == 2].iloc[-1]
    assert u2["event_timestamp"] == D[1] + SERVING_OFFSET and u2["n_interactions"] == 2


def test_negatives(tiny):
    ti = build_tables(tiny, neg_per_pos=2, seed=7).train_interactions
    pos, neg = ti[ti["label"] == 1], ti[ti["label"] == 0]
    assert len(pos) == 5 and len(neg) == 10
    train_items = tiny.train.groupby("user_id")["item_id"].agg(set)
    assert all(i not in train_items[u] for u, i in zip(neg["user_id"], neg["item_id"]))
    # each negative shares a positive's (user, timestamp)
    assert set(zip(neg["user_id"], neg["event_timestamp"])) <= set(zip(pos["user_id"], pos["event_timestamp"]))
    again = build_tables(tiny, neg_per_pos=2, seed=7).train_interactions
    pd.testing.assert_frame_equal(ti, again)


def _reference_user_row(events: pd.DataFrame, t: pd.Timestamp, attrs: dict, pop_before: pd.Series) -> dict:
    """Naive recomputation from the user's training events strictly before t."""
    prior = events[events["event_timestamp"] < t]
    c = Counter(a for i in prior["item_id"] for a in attrs[i])
    n_attr = sum(c.values())
    return {
        "n_interactions": len(prior),
        "recent_items": list(prior["item_id"][::-1][:RECENT_ITEMS]),
        "top_attributes": [a for a, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:5]],
        "attr_diversity": -sum(v / n_attr * math.log(v / n_attr) for v in c.values()) if n_attr else 0.0,
        "mean_item_popularity": float(pop_before.loc[prior.index].mean()) if len(prior) else 0.0,
    }


def test_matches_naive_reference_on_beauty(monkeypatch, tmp_path):
    monkeypatch.setenv("ECAUG_HOME", str(tmp_path))
    write_processed(subset_users(load_dataset("beauty"), 400))
    data = load_processed("beauty")
    summary = write_features(data)
    assert read_feature_meta()["rows"] == summary["rows"]
    uf = pd.read_parquet(summary["files"]["user_features"])
    train = data.train
    attrs = dict(zip(data.items["item_id"], data.items["attributes"]))
    pop_before = pd.Series(
        [int(((train["item_id"] == i) & (train["event_timestamp"] < t)).sum()) for i, t in zip(train["item_id"], train["event_timestamp"])],
        index=train.index,
    )
    rows = uf.sample(150, random_state=0)
    for _, r in rows.iterrows():
        ev = train[train["user_id"] == r["user_id"]]
        ref = _reference_user_row(ev, r["event_timestamp"], attrs, pop_before)
        assert r["n_interactions"] == ref["n_interactions"]
        assert list(r["recent_items"]) == ref["recent_items"]
        assert list(r["top_attributes"]) == ref["top_attributes"]
        assert r["attr_diversity"] == pytest.approx(ref["attr_diversity"], rel=1e-5, abs=1e-6)
        assert r["mean_item_popularity"] == pytest.approx(ref["mean_item_popularity"], rel=1e-5)
    # held-out items never appear in the same user's features (S3-Rec never repeats an item per user)
    held = pd.concat([data.valid, data.test]).groupby("user_id")["item_id"].agg(set)
    assert not any(set(rec) & held[u] for u, rec in zip(uf["user_id"], uf["recent_items"]))
    # final item popularity = training count (valid/test events never counted)
    itf = pd.read_parquet(summary["files"]["item_features"])
    final = itf.sort_values("event_timestamp").groupby("item_id")["popularity"].last()
    counts = train["item_id"].value_counts().reindex(final.index, fill_value=0)
    assert (final == counts).all()
