"""The sequence model on real parts: histories from the Feast offline store are point in time,
Redis serves the same history, and ``ecaug train --model sequence`` -> ``/recommend`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def _as_list(x) -> list[int]:
    return [] if x is None or (isinstance(x, float) and np.isnan(x)) else [int(v) for v in x]


def test_history_feature_is_point_in_time(feast_env):
    """The Feast row of a training event at t holds exactly the user's earlier items, which is the
    prefix the causal model sees at that position of the one history it trains on."""
    from ecaug_feast import feast_io
    from ecaug_feast.jobs.train_data import load_real_from_feast
    from recommender.seq_train import histories_for, seq_config_for

    data = load_real_from_feast(feast_env.data.name, store=feast_env.store)
    cfg = seq_config_for(data)
    hist = histories_for(data, cfg)
    train = feast_env.data.train.sort_values(["user_id", "event_timestamp"], kind="stable")
    users = train.groupby("user_id").size()
    chosen = users[(users >= 4) & (users <= cfg.max_len)].index[:15].to_numpy()
    ent = train[train["user_id"].isin(chosen)][["user_id", "event_timestamp"]].reset_index(drop=True)
    got = feast_io.historical_features(ent, features=["user_features:recent_items"], store=feast_env.store)
    got = got.sort_values(["user_id", "event_timestamp"], kind="stable")
    pos = {int(u): i for i, u in enumerate(hist.user_ids)}
    checked = 0
    for u, g in got.groupby("user_id"):
        r = pos[int(u)]
        seq = hist.values[hist.offsets[r] : hist.offsets[r + 1]].tolist()
        items = train[train["user_id"] == u]["item_id"].tolist()
        assert seq == items  # the training history is the user's training events, in order
        for k, recent in enumerate(g["recent_items"]):
            # before event k: the k earlier items, most recent first (never event k itself or later)
            assert _as_list(recent)[::-1] == seq[:k]
            checked += 1
    assert checked >= 60


def test_online_history_and_user_vector_equal_offline(feast_env):
    from ecaug_feast import feast_io
    from ecaug_feast.jobs.train_data import load_real_from_feast
    from recommender.seq_model import SeqTwoTower, SeqUserEncoder
    from recommender.seq_train import catalog_of, histories_for, seq_config_for, user_vectors

    data = load_real_from_feast(feast_env.data.name, store=feast_env.store)
    users = data.user_serving["user_id"].to_numpy()[:50]
    online = feast_io.online_user_features(users, features=["user_features:recent_items"], store=feast_env.store)
    offline = data.user_serving.set_index("user_id").loc[users, "recent_items"]
    assert [_as_list(x) for x in online["recent_items"]] == [_as_list(x) for x in offline]
    cfg = seq_config_for(data, embedding_dim=16)
    model = SeqTwoTower(cfg, catalog=catalog_of(data)).eval()
    served = SeqUserEncoder(model)(list(online["recent_items"]))
    ref = user_vectors(model, model.item_matrix().detach(), histories_for(data, cfg), users).numpy()
    np.testing.assert_allclose(served, ref, atol=1e-5)


def test_train_sequence_cli_then_recommend(feast_env):
    """``ecaug train --model sequence --json`` from the offline store, then one /recommend that
    reads the history from Redis and returns the offline top 10 (seen items excluded)."""
    import torch
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from ecaug_feast import feast_io
    from ecaug_feast.cli.main import app
    from recommender.checkpoint import load_checkpoint
    from recommender.seq_model import SeqUserEncoder
    from recommender.serving.app import create_app
    from recommender.serving.wiring import build_services

    r = CliRunner().invoke(app, ["train", "--dataset", feast_env.data.name, "--name", "seq-cli", "--model", "sequence",
                                 "--epochs", "2", "--dim", "16", "--batch-size", "64", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["model"] == "sequence"
    t = out["test"]
    for k in ("recall@10", "ndcg@10", "recall@20", "ndcg@20"):
        assert 0.0 <= t[k] <= 1.0
    assert list(t["buckets"]) == ["1", "2-3", "4-7", "8+"]
    assert sum(b["users"] for b in t["buckets"].values()) == t["users"]
    model, meta = load_checkpoint("seq-cli")
    assert meta["model"]["kind"] == "sequence" and meta["data"]["source"] == "feast"

    data = feast_env.data
    user = int(data.train.groupby("user_id").size().idxmax())
    services = build_services("seq-cli", store=feast_io.get_store(feast_env.repo_dir))
    with TestClient(create_app(services)) as client:
        resp = client.get("/recommend", params={"user_id": user, "k": 10})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert not body.get("fallback") and not body.get("degraded")
    got = [it["item_id"] for it in body["items"]]
    online = feast_io.online_user_features([user], features=["user_features:recent_items"], store=feast_env.store)
    enc = SeqUserEncoder(model)
    u = torch.from_numpy(enc(list(online["recent_items"])))[0]
    scores = (enc.R[1:] @ u).numpy()
    seen = set(data.train.loc[data.train["user_id"] == user, "item_id"].tolist())
    ranked = [i + 1 for i in np.argsort(-scores, kind="stable") if i + 1 not in seen]
    assert got == ranked[:10]
