"""Serving's training history and item catalogue come from Feast, not from the processed dataset: the popularity
fallback (and the item tower's popularity input) is the latest ``item_features`` row of each item in
the offline store, the seen items are the positive rows of the ``train_interactions`` source.
Real parts: the session's Feast repo (duckdb offline store) from ``feast_env``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecaug_feast import schema as S

pytestmark = pytest.mark.slow


def _offline_truth(store) -> tuple[pd.Series, dict[int, set[int]]]:
    """What the Feast sources hold, read with pandas from the paths the registry gives."""
    itf = pd.read_parquet(store.get_feature_view("item_features").batch_source.path)
    pop = itf.sort_values([S.ITEM_ID, S.EVENT_TIMESTAMP], kind="stable").groupby(S.ITEM_ID)[S.POPULARITY].last()
    ti = pd.read_parquet(store.get_data_source("train_interactions").path)
    pos = ti[ti[S.LABEL] == 1]
    seen = {int(u): set(g[S.ITEM_ID].astype(int)) for u, g in pos.groupby(S.USER_ID)}
    return pop.astype(np.float64), seen


def test_popularity_and_seen_items_equal_the_feast_offline_store(feast_env):
    from recommender.serving.loader import feast_item_popularity, feast_seen_items

    store = feast_env.store
    want_pop, want_seen = _offline_truth(store)
    ids = feast_env.data.items[S.ITEM_ID].to_numpy()
    got = feast_item_popularity(store, ids)
    assert list(got.index) == list(ids)
    pd.testing.assert_series_equal(got.reindex(want_pop.index), want_pop, check_names=False)
    assert (got.drop(want_pop.index, errors="ignore") == 0).all()  # items without a row
    assert got.sum() > 0
    seen = feast_seen_items(store)
    assert seen.n_users == len(want_seen)
    for u, items in want_seen.items():
        assert set(seen.get(u).tolist()) == items


def test_build_services_reads_history_from_feast_not_the_processed_split(feast_env, monkeypatch):
    import torch

    from ecaug_feast import feast_io
    from ecaug_feast.datasets.store import ProcessedDataset
    from recommender.batching import ItemCatalog
    from recommender.checkpoint import save_checkpoint
    from recommender.model import ModelConfig, TwoTower
    from recommender.serving.wiring import build_services

    cat = ItemCatalog.from_frame(feast_env.data.items)
    cfg = ModelConfig(num_items=cat.num_items, num_attributes=cat.num_attributes, user_buckets=64,
                      embedding_dim=8, hidden_dim=16, out_dim=8)
    torch.manual_seed(0)
    save_checkpoint(feast_env.state_dir / "models" / "history-test", TwoTower(cfg).state_dict(), cfg, cat,
                    data={"dataset": feast_env.data.name})

    def no_train(self):
        raise AssertionError("serving read the processed dataset's training split")

    def no_processed(*_a, **_k):
        raise AssertionError("serving read the processed dataset (the catalogue comes from item_features)")

    monkeypatch.setattr(ProcessedDataset, "train", property(no_train))
    monkeypatch.setattr("ecaug_feast.datasets.store.load_processed", no_processed)
    store = feast_io.get_store(feast_env.repo_dir)  # own store: the reader retunes its Redis client
    services = build_services("history-test", store=store)
    want_pop, want_seen = _offline_truth(store)
    for item, count in want_pop.items():
        assert services.popularity.count(item) == count
    assert services.seen.n_users == len(want_seen)
    u = next(iter(want_seen))
    assert set(services.seen.get(u).tolist()) == want_seen[u]
    # the catalogue (/items) is the item_features view's latest row of each item
    itf = pd.read_parquet(store.get_feature_view("item_features").batch_source.path)
    assert len(services.catalog) == itf[S.ITEM_ID].nunique() == cat.num_items
    item = int(itf[S.ITEM_ID].iloc[-1])
    want_attrs = itf[itf[S.ITEM_ID] == item].sort_values(S.EVENT_TIMESTAMP)[S.ATTRIBUTES].iloc[-1]
    assert services.catalog.get(item) == {"item_id": item, "attributes": [int(a) for a in want_attrs]}
    # the model's item tower got the same popularity (the bundle loads from it)
    assert len(services.models.load().index) == cat.num_items
