"""Training examples: held-out rows never leak in; in-memory features equal Feast's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecaug_feast.jobs.train_data import build_in_memory

from recommender.data import examples_from_feast, mix_examples, truncate_history


def _flat(series) -> set[int]:
    return {int(x) for lst in series for x in (lst if lst is not None else [])}


def test_planted_heldout_interactions_never_reach_training(beauty_small):
    ds, sp = beauty_small
    n = int(ds.items["item_id"].max())
    test_item, valid_item = n + 1, n + 2
    items = pd.concat([ds.items, pd.DataFrame({"item_id": [test_item, valid_item], "attributes": [[1], [2]]})], ignore_index=True)
    test = sp.test.copy()
    valid = sp.valid.copy()
    test.loc[test.index[:5], "item_id"] = test_item  # five users' test targets are the planted item
    valid.loc[valid.index[:5], "item_id"] = valid_item
    for frac in (1.0, 0.25):
        td = build_in_memory(truncate_history(sp.train, frac), items, valid)
        ex = td.examples
        assert test_item not in set(ex["item_id"]) and valid_item not in set(ex["item_id"])
        assert test_item not in _flat(ex["recent_items"]) and valid_item not in _flat(ex["recent_items"])
        assert test_item not in _flat(td.user_serving["recent_items"])
        assert valid_item not in _flat(td.user_serving["recent_items"])
        pop = td.item_serving.set_index("item_id")["popularity"]
        assert pop[test_item] == 0 and pop[valid_item] == 0
        # test-time features may see the validation event (input only), never the test event
        assert valid_item in _flat(td.user_test["recent_items"])
        assert test_item not in _flat(td.user_test["recent_items"])


def test_truncate_keeps_most_recent_share(beauty_small):
    _, sp = beauty_small
    tr = truncate_history(sp.train, 0.25)
    n_full = sp.train.groupby("user_id").size()
    n_kept = tr.groupby("user_id").size().reindex(n_full.index)
    assert (n_kept == np.maximum(1, np.ceil(0.25 * n_full - 1e-9))).all()
    last_full = sp.train.groupby("user_id")["event_timestamp"].max()
    assert (tr.groupby("user_id")["event_timestamp"].max() == last_full).all()


def test_mix_ratio(small_data):
    syn = small_data.examples.iloc[:50].assign(is_synthetic=True)
    m = mix_examples(small_data.examples, syn, 0.5, seed=0)
    assert int(m["is_synthetic"].sum()) == min(50, round(0.5 * len(small_data.examples)))  # pool used whole, never duplicated
    assert not m[m["is_synthetic"]].duplicated(subset=["user_id", "item_id", "event_timestamp"]).any()
    assert mix_examples(small_data.examples, syn, 0.0, seed=0) is small_data.examples


@pytest.mark.slow
def test_feast_examples_equal_in_memory(feast_env):
    """The experiment's in-memory features are exactly what get_historical_features returns."""
    import pyarrow.parquet as pq

    from ecaug_feast import paths

    ti = pq.read_table(paths.feast_data_dir() / "train_interactions.parquet").to_pandas()
    pos = ti[ti["label"] == 1].iloc[::7].reset_index(drop=True)  # a sample keeps the join quick
    got = examples_from_feast(pos, store=feast_env.store)
    data = feast_env.data
    mem = build_in_memory(data.train, data.items).examples
    key = ["user_id", "item_id", "event_timestamp"]
    mem = pos[key].merge(mem, on=key, how="left")
    assert len(got) == len(pos)
    for c in ["n_interactions", "popularity", "n_attributes"]:
        assert np.array_equal(got[c].to_numpy(np.float64), mem[c].to_numpy(np.float64)), c
    for c in ["days_since_last", "attr_diversity", "mean_item_popularity"]:
        assert np.allclose(got[c].to_numpy(np.float64), mem[c].to_numpy(np.float64), atol=1e-4), c
    for c in ["recent_items", "top_attributes", "attributes"]:
        assert [list(map(int, x)) for x in got[c]] == [list(map(int, x)) for x in mem[c]], c
