"""Checkpoint -> served bundle: the fast user encoder equals the reference encoder on awkward
rows, the index holds every catalogue item in the model's similarity, versions follow weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recommender.batching import ItemCatalog
from recommender.checkpoint import CheckpointError, save_checkpoint
from recommender.inference import item_embeddings, user_embeddings
from recommender.model import ModelConfig, TwoTower
from recommender.serving.components import UserFeatures
from recommender.serving.loader import load_bundle, user_rows
from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE

N_ITEMS = 300


def _save(path, seed: int, dropout: float = 0.3):
    rng = np.random.default_rng(0)
    items = pd.DataFrame({"item_id": np.arange(1, N_ITEMS + 1),
                          "attributes": [list(rng.integers(1, 40, rng.integers(0, 4))) for _ in range(N_ITEMS)]})
    cat = ItemCatalog.from_frame(items)
    cfg = ModelConfig(num_items=cat.num_items, num_attributes=cat.num_attributes, user_buckets=64,
                      embedding_dim=8, hidden_dim=16, out_dim=8, dropout=dropout,
                      user_dense_mean=[1.0, 0.5, 1.0, 2.0], user_dense_std=[0.5, 0.2, 0.7, 1.0])
    torch.manual_seed(seed)
    return save_checkpoint(path, TwoTower(cfg).state_dict(), cfg, cat, data={"dataset": "t"})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("m") / "tiny", seed=0)


ROWS = [
    UserFeatures(5, True, {"n_interactions": 3, "days_since_last": 1.5, "recent_items": [3, 2, 1],
                           "top_attributes": [4, 5], "attr_diversity": 0.7, "mean_item_popularity": 12.0}),
    # more than 20 recent items (truncated to the 20 most recent), missing numbers
    UserFeatures(7, True, {"n_interactions": None, "days_since_last": None, "recent_items": list(range(1, 35)),
                           "top_attributes": [], "attr_diversity": float("nan"), "mean_item_popularity": None}),
    # unknown item/attribute ids map to the unknown row; synthetic ids share bucket 0
    UserFeatures(SYNTHETIC_USER_ID_BASE + 3, True, {"n_interactions": 0, "days_since_last": 0.0,
                 "recent_items": [N_ITEMS + 50, 7], "top_attributes": [999], "attr_diversity": 0.0,
                 "mean_item_popularity": 0.0}),
    UserFeatures(9, True, {"n_interactions": 1, "days_since_last": 2.0, "recent_items": None,
                           "top_attributes": None, "attr_diversity": 0.1, "mean_item_popularity": 1.0}),
]


def test_fast_encoder_equals_reference(ckpt):
    b = load_bundle(ckpt)
    fast = b.encode_users(ROWS)
    ref = user_embeddings(b.encode_users.model, user_rows(ROWS))
    assert fast.shape == (len(ROWS), 8) and fast.dtype == np.float32
    np.testing.assert_allclose(fast, ref, atol=1e-6)
    # one row at a time (the request path) gives the same vectors as the batch
    np.testing.assert_allclose(np.vstack([b.encode_users([r]) for r in ROWS]), fast, atol=1e-6)
    # eval mode: dropout off, so repeated calls agree
    np.testing.assert_array_equal(b.encode_users(ROWS), fast)


def test_index_holds_catalogue_in_training_similarity(ckpt):
    pop = pd.Series([5.0, 1.0], index=[1, 2])
    b = load_bundle(ckpt, pop)
    assert len(b.index) == N_ITEMS and b.index.metric == "cosine"
    model = b.encode_users.model
    ids = np.arange(1, N_ITEMS + 1)
    v, vid = item_embeddings(model, pd.DataFrame({"item_id": ids, "popularity": pop.reindex(ids, fill_value=0).to_numpy()}))
    u = b.encode_users(ROWS[:1])
    res = b.index.search(u, 10)
    expect = vid[np.argsort(-(v @ u[0]), kind="stable")[:10]]
    np.testing.assert_array_equal(res.item_ids[0], expect)
    np.testing.assert_allclose(res.scores[0], np.sort(v @ u[0])[::-1][:10], atol=1e-5)


def test_version_follows_weights(tmp_path):
    a = load_bundle(_save(tmp_path / "m", seed=0)).version
    assert a == load_bundle(tmp_path / "m").version and a.startswith("m@")
    b = load_bundle(_save(tmp_path / "m", seed=1)).version
    assert a != b


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    d = _save(tmp_path / "bad", seed=0)
    (d / "model.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="model.pt"):
        load_bundle(d)


def test_fast_encoder_is_used_and_checked(ckpt, monkeypatch):
    from recommender.serving import loader

    b = load_bundle(ckpt)
    assert b.info["encoder"] == "direct"  # else every request pays a slower path
    # a fast path that drifted from the reference is detected at load and not used
    real_direct = loader.DirectUserEncoder._tower
    monkeypatch.setattr(loader.DirectUserEncoder, "_tower", lambda self, *a: real_direct(self, *a) + 1e-3)
    assert load_bundle(ckpt).info["encoder"] == "fast"
    real_call = loader.FastUserEncoder.__call__
    monkeypatch.setattr(loader.FastUserEncoder, "__call__", lambda self, f: real_call(self, f) + 1e-3)
    b2 = load_bundle(ckpt)
    assert b2.info["encoder"] == "reference"
    np.testing.assert_allclose(b2.encode_users(ROWS), user_embeddings(b2.encode_users.model, user_rows(ROWS)), atol=1e-6)


def test_loader_uses_only_public_names_of_the_model_modules():
    """Serving reads the model's public encoding: no ``module._name`` / ``model._name`` reach
    into :mod:`recommender.batching`, :mod:`recommender.model` or :mod:`recommender.seq_model`."""
    import ast
    from pathlib import Path

    from recommender.serving import loader

    tree = ast.parse(Path(loader.__file__).read_text())
    private = sorted(
        f"line {n.lineno}: {ast.unparse(n)}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
        and not (isinstance(n.value, ast.Name) and n.value.id in ("self", "cls"))
    )
    assert not private, private
