"""The cold-item split (issue 34, GAR's setup): no cold item in training or in the features built
from it, users grouped by whether their target is cold, the same split for the same seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecaug_feast.datasets import load_dataset, subset_users
from ecaug_feast.datasets.split import cold_item_split, split_interactions
from ecaug_feast.errors import EcaugError


@pytest.fixture(scope="module")
def beauty():
    ds = subset_users(load_dataset("beauty"), 600)
    return ds, split_interactions(ds)


def test_no_cold_item_in_training_or_features(beauty):
    from ecaug_feast.features.build import build_item_features, build_user_features, item_attributes

    ds, sp = beauty
    cs = cold_item_split(sp, ds.items, 0.2, seed=3)
    n = ds.items["item_id"].nunique()
    assert len(cs.cold_items) == round(0.2 * n) and len(np.intersect1d(cs.cold_items, cs.warm_items)) == 0
    assert len(cs.cold_items) + len(cs.warm_items) == n
    assert not cs.is_cold(cs.train["item_id"].to_numpy()).any()
    # only cold rows left training: the warm ones are all still there
    assert len(cs.train) == int((~cs.is_cold(sp.train["item_id"].to_numpy())).sum()) and cs.info["train_removed"] > 0
    # the features see no cold interaction: no recent/history list holds one, no popularity counts one
    uf = build_user_features(cs.train, item_attributes(ds.items))
    seen = np.concatenate([np.asarray(x, np.int64) for x in uf["recent_items"] if x is not None and len(x)])
    assert len(seen) and not cs.is_cold(seen).any()
    itf = build_item_features(cs.train, ds.items, cs.train["event_timestamp"].min() - pd.Timedelta(days=1))
    last = itf.sort_values("event_timestamp").groupby("item_id").tail(1).set_index("item_id")
    cold_rows = last.loc[last.index.isin(cs.cold_items)]
    assert len(cold_rows) and (cold_rows["popularity"] == 0).all()
    # the test-time history drops a cold validation event too
    assert not cs.is_cold(cs.history_valid["item_id"].to_numpy()).any()


def test_cold_target_users_are_grouped_right(beauty):
    ds, sp = beauty
    cs = cold_item_split(sp, ds.items, 0.2, seed=3)
    # validation and test keep every row, in the leave-last-out order
    assert cs.test.equals(sp.test) and cs.valid.equals(sp.valid)
    assert np.array_equal(cs.test_cold, np.isin(sp.test["item_id"], cs.cold_items))
    assert np.array_equal(cs.valid_cold, np.isin(sp.valid["item_id"], cs.cold_items))
    assert 0 < cs.test_cold.sum() < len(cs.test) and cs.info["test_cold"] == int(cs.test_cold.sum())
    # a user's last item is its test target, whether cold or warm
    last = ds.interactions.groupby("user_id").tail(1).set_index("user_id")["item_id"]
    t = cs.test.set_index("user_id")["item_id"]
    assert t.equals(last.loc[t.index])

    from recommender.evaluate import make_eval_set, target_is_cold

    es = make_eval_set(cs.test, [cs.train, cs.valid])
    grp = target_is_cold(es, cs.cold_items)
    expect = cs.test.assign(c=cs.test_cold).groupby("user_id")["c"].any().reindex(es.users).to_numpy()
    assert np.array_equal(grp, expect)


def test_deterministic_by_seed_and_order_free(beauty):
    ds, sp = beauty
    a = cold_item_split(sp, ds.items, 0.2, seed=7)
    b = cold_item_split(sp, ds.items.sample(frac=1.0, random_state=1), 0.2, seed=7)
    c = cold_item_split(sp, ds.items, 0.2, seed=8)
    assert np.array_equal(a.cold_items, b.cold_items) and a.train.equals(b.train)
    assert not np.array_equal(a.cold_items, c.cold_items)
    with pytest.raises(EcaugError, match="cold_frac must lie in"):
        cold_item_split(sp, ds.items, 1.0)
