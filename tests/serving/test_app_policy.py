"""The answer policy of the API, on in-process components (the Redis/Feast path is in
test_serving_redis.py): fallbacks are flagged, bad input is 4xx, metrics parse, hot reload."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from recommender.serving.app import Services, create_app
from recommender.serving.components import (
    FeatureStoreUnavailable,
    ItemCatalog,
    Popularity,
    SeenItems,
    UserFeatures,
)
from recommender.serving.index import ItemIndex
from recommender.serving.metrics import ServingMetrics
from recommender.serving.model_bundle import ModelBundle, ModelHolder, files_fingerprint

N_ITEMS, DIM = 200, 8


class DictReader:
    """Feature rows from a dict; ``down`` simulates an unreachable store."""

    def __init__(self, rows: dict[int, dict]):
        self.rows = rows
        self.down = False
        self.calls = 0

    def read(self, user_ids):
        self.calls += 1
        if self.down:
            raise FeatureStoreUnavailable("connection refused")
        return [UserFeatures(u, u in self.rows, dict(self.rows.get(u, {}))) for u in user_ids]

    def ping(self) -> bool:
        return not self.down


def _write_model(d: Path, seed: int) -> None:
    """A 'checkpoint': user and item embedding tables; the seed changes the model."""
    rng = np.random.default_rng(seed)
    tmp = d.with_suffix(".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "items.npy", rng.normal(size=(N_ITEMS, DIM)).astype(np.float32))
    np.save(tmp / "users.npy", rng.normal(size=(50, DIM)).astype(np.float32))
    (tmp / "config.json").write_text(json.dumps({"version": f"seed{seed}"}))
    if d.exists():
        for f in d.iterdir():
            f.unlink()
        d.rmdir()
    tmp.rename(d)  # the same temp-dir-then-rename the trainer uses


def _loader(d: Path):
    def load() -> ModelBundle:
        cfg = json.loads((d / "config.json").read_text())
        items = np.load(d / "items.npy")
        users = np.load(d / "users.npy")
        idx = ItemIndex.build(items, np.arange(1, N_ITEMS + 1))
        return ModelBundle(cfg["version"], idx, lambda fs: users[[f.user_id for f in fs]], source=str(d))

    return load


METRICS_TOKEN = "scrape-" + "m" * 24
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}  # /metrics needs a token


@pytest.fixture()
def env(tmp_path):
    model_dir = tmp_path / "model"
    _write_model(model_dir, seed=1)
    inter = pd.DataFrame({"user_id": [1, 1, 1, 2, 3, 3], "item_id": [10, 11, 12, 10, 10, 13]})
    rows = {
        1: {"n_interactions": 3, "recent_items": [12, 11, 10, 40]},  # 40: only in the online row
        2: {"n_interactions": 1, "recent_items": [10]},
        5: {"n_interactions": 0, "recent_items": []},  # in the store, no history: cold
    }
    reader = DictReader(rows)
    metrics = ServingMetrics()
    holder = ModelHolder(
        _loader(model_dir),
        files_fingerprint(lambda: [model_dir / "config.json", model_dir / "items.npy"]),
        poll_s=0.05,
        on_reload=lambda result, b: metrics.reloads.labels(result).inc(),
    )
    items = pd.DataFrame({"item_id": np.arange(1, N_ITEMS + 1), "attributes": [[1, 2]] * N_ITEMS})
    services = Services(
        features=reader,
        models=holder,
        seen=SeenItems.from_interactions(inter),
        popularity=Popularity.from_interactions(inter, catalogue=items["item_id"]),
        catalog=ItemCatalog(items),
        metrics=metrics,
        max_k=100,
    )
    with TestClient(create_app(services, metrics_token=METRICS_TOKEN), headers=SCRAPER) as client:
        yield client, reader, model_dir, holder


def test_known_user_gets_model_ranking_without_seen_items(env):
    client, reader, model_dir, _ = env
    r = client.get("/recommend", params={"user_id": 1, "k": 20})
    assert r.status_code == 200
    body = r.json()
    assert body["fallback"] is None and body["degraded"] is False
    assert body["model_version"] == "seed1"
    ids = [it["item_id"] for it in body["items"]]
    assert len(ids) == 20 == len(set(ids))
    assert not {10, 11, 12, 40} & set(ids)  # history + online recent items removed
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)
    # the ranking is the user's inner product with the item table
    users, items = np.load(model_dir / "users.npy"), np.load(model_dir / "items.npy")
    s = items @ users[1]
    order = [i + 1 for i in np.argsort(-s) if i + 1 not in (10, 11, 12, 40)][:20]
    assert ids == order


def test_unknown_and_cold_users_get_flagged_popularity(env):
    client, *_ = env
    unknown = client.get("/recommend", params={"user_id": 999, "k": 3}).json()
    assert unknown["fallback"] == "unknown_user" and not unknown["degraded"]
    assert [it["item_id"] for it in unknown["items"]][0] == 10  # most bought
    cold = client.get("/recommend", params={"user_id": 5, "k": 3}).json()
    assert cold["fallback"] == "cold_user"
    # user 3 is in the training history but has no online row (not materialized)
    nofeat = client.get("/recommend", params={"user_id": 3, "k": 3}).json()
    assert nofeat["fallback"] == "no_online_features"
    assert not {10, 13} & {it["item_id"] for it in nofeat["items"]}


def test_store_down_degrades_then_recovers(env):
    client, reader, *_ = env
    reader.down = True
    r = client.get("/recommend", params={"user_id": 1, "k": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["degraded"] is True and body["fallback"] == "feature_store_unavailable"
    assert len(body["items"]) == 5 and not {10, 11, 12} & {it["item_id"] for it in body["items"]}
    h = client.get("/health")
    assert h.status_code == 200 and h.json()["feature_store"] == "down"
    reader.down = False
    body = client.get("/recommend", params={"user_id": 1, "k": 5}).json()
    assert body["fallback"] is None and not body["degraded"]
    assert client.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({"user_id": 0, "k": 5}, "greater than or equal to 1"),
        ({"user_id": -3}, "greater than or equal to 1"),
        ({"user_id": "abc"}, "valid integer"),
        ({"user_id": 1, "k": 0}, "greater than or equal to 1"),
        ({"user_id": 1, "k": 101}, "between 1 and 100"),
        ({"user_id": 1, "k": "ten"}, "valid integer"),
        ({"k": 5}, "Field required"),
        ({"user_id": str(1 << 64)}, "less than or equal"),
    ],
)
def test_bad_requests_are_422_with_reason(env, params, fragment):
    client, reader, *_ = env
    before = reader.calls
    r = client.get("/recommend", params=params)
    assert r.status_code == 422
    assert fragment in r.text
    assert reader.calls == before  # rejected before touching the store


def test_items_endpoint(env):
    client, *_ = env
    body = client.get("/items/10").json()
    assert body["item_id"] == 10 and body["attributes"] == [1, 2]
    assert body["train_interactions"] == 3 and body["in_index"] is True
    assert client.get("/items/5000").status_code == 404
    assert client.get("/items/0").status_code == 422


def test_metrics_are_prometheus_text(env):
    client, reader, *_ = env
    client.get("/recommend", params={"user_id": 1, "k": 5})
    client.get("/recommend", params={"user_id": 999, "k": 5})
    client.get("/recommend", params={"user_id": 1, "k": 0})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(r.text)}
    req = {(s.labels["route"], s.labels["status"]): s.value for s in fams["ecaug_http_requests"].samples
           if s.name.endswith("_total")}
    assert req[("/recommend", "200")] == 2 and req[("/recommend", "422")] == 1
    fb = {s.labels["reason"]: s.value for s in fams["ecaug_recommend_fallbacks"].samples if s.name.endswith("_total")}
    assert fb == {"unknown_user": 1.0}
    assert [s.value for s in fams["ecaug_index_items"].samples] == [N_ITEMS]
    reloads = {s.labels["result"]: s.value for s in fams["ecaug_model_reloads"].samples if s.name.endswith("_total")}
    assert reloads == {"ok": 1.0}


def test_new_checkpoint_is_picked_up_without_restart(env):
    client, _, model_dir, holder = env
    first = client.get("/recommend", params={"user_id": 2, "k": 10}).json()
    assert first["model_version"] == "seed1"
    _write_model(model_dir, seed=2)
    os.utime(model_dir / "config.json")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        body = client.get("/recommend", params={"user_id": 2, "k": 10}).json()
        if body["model_version"] == "seed2":
            break
        time.sleep(0.05)
    assert body["model_version"] == "seed2"
    assert [i["item_id"] for i in body["items"]] != [i["item_id"] for i in first["items"]]


def test_broken_checkpoint_keeps_old_model(env):
    client, _, model_dir, holder = env
    (model_dir / "items.npy").write_bytes(b"not a numpy file")
    assert holder.maybe_reload() is False
    assert holder.last_error is not None
    body = client.get("/recommend", params={"user_id": 2, "k": 5}).json()
    assert body["model_version"] == "seed1" and body["fallback"] is None
    assert client.get("/health").json()["last_reload_error"]
