"""End to end on real parts: Beauty subset in Feast + embedded Redis (``feast_env``), a TorchRec
two-tower trained for one epoch, the API under uvicorn on loopback. Redis is stopped mid-run and
restarted; a bounded load run must finish without a single error."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from ecaug_feast.redis_server import EmbeddedRedis, free_port

pytestmark = pytest.mark.slow
MODEL = "serving-test"


def _train_checkpoint(feast_env, name: str, seed: int) -> Path:
    """One epoch of the real trainer on the Feast data, saved as the trainer saves it."""
    from recommender.checkpoint import save_checkpoint
    from ecaug_feast.jobs.train_data import load_real_from_feast
    from recommender.train import TrainConfig, catalog_for, model_config_for, train

    data = load_real_from_feast(feast_env.data.name, store=feast_env.store)
    cfg = model_config_for(data, embedding_dim=16, hidden_dim=32, out_dim=16)
    res = train(data, None, cfg, TrainConfig(epochs=1, batch_size=256, seed=seed))
    state = res.state if res.state is not None else res.model.state_dict()
    return save_checkpoint(
        feast_env.state_dir / "models" / name, state, res.cfg, catalog_for(data),
        data={"dataset": feast_env.data.name}, train={"seed": seed},
    )


class _Server:
    """uvicorn in a thread on a free loopback port."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


METRICS_TOKEN = "scrape-" + "m" * 24
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}  # /metrics needs a token


@pytest.fixture(scope="module")
def served(feast_env):
    import faiss
    import torch

    from ecaug_feast import feast_io
    from recommender.serving.app import create_app
    from recommender.serving.wiring import build_services, configure_threads

    ckpt = _train_checkpoint(feast_env, MODEL, seed=0)
    threads = (torch.get_num_threads(), faiss.omp_get_max_threads())  # restored for later tests
    configure_threads(1)
    # a store of our own: the reader retunes its Redis client (no retries, short timeouts),
    # which must not leak into the session-wide feast_env.store other tests use
    store = feast_io.get_store(feast_env.repo_dir)
    services = build_services(MODEL, store=store, poll_s=0.2, retry_s=0.3)
    try:
        with _Server(create_app(services, metrics_token=METRICS_TOKEN)) as base, \
                httpx.Client(base_url=base, timeout=10, headers=SCRAPER) as client:
            yield client, services, feast_env, ckpt
    finally:
        torch.set_num_threads(threads[0])
        faiss.omp_set_num_threads(threads[1])


def _known_users(feast_env, n: int) -> list[int]:
    return sorted(feast_env.data.train["user_id"].unique().tolist())[:n]


def test_recommend_real_user_matches_offline_ranking(served):
    from recommender.checkpoint import load_checkpoint
    from recommender.inference import item_embeddings, user_embeddings

    client, services, env, ckpt = served
    uid = _known_users(env, 1)[0]
    r = client.get("/recommend", params={"user_id": uid, "k": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fallback"] is None and body["degraded"] is False
    assert body["model_version"].startswith(MODEL + "@")
    assert body["feature_timestamp"] is not None
    ids = [it["item_id"] for it in body["items"]]
    assert len(ids) == 10 == len(set(ids))
    history = set(env.data.train.loc[env.data.train["user_id"] == uid, "item_id"])
    assert not history & set(ids)
    assert all(i in services.catalog for i in ids)

    # the same ranking computed offline with the reference (pandas) encoder on the online row
    model, _ = load_checkpoint(ckpt)
    row = env.store.get_online_features(
        features=[f"user_features:{c}" for c in ("n_interactions", "days_since_last", "recent_items",
                                                 "top_attributes", "attr_diversity", "mean_item_popularity")],
        entity_rows=[{"user_id": uid}],
    ).to_df()
    u = user_embeddings(model, row)
    train = env.data.train
    pop = train["item_id"].value_counts()
    all_ids = np.arange(1, model.catalog.num_items + 1)
    v, vid = item_embeddings(model, pd.DataFrame({"item_id": all_ids, "popularity": pop.reindex(all_ids, fill_value=0).to_numpy(np.float32)}))
    s = v @ u[0]
    seen = history | set(row["recent_items"][0] or [])
    expect = [int(i) for i in vid[np.argsort(-s, kind="stable")] if int(i) not in seen][:10]
    assert ids == expect
    expect_scores = [float(s[np.where(vid == i)[0][0]]) for i in expect]
    np.testing.assert_allclose([it["score"] for it in body["items"]], expect_scores, atol=1e-4)


def test_unknown_user_falls_back_to_popularity(served):
    client, services, env, _ = served
    body = client.get("/recommend", params={"user_id": 10**9, "k": 5}).json()
    assert body["fallback"] == "unknown_user"
    top = env.data.train["item_id"].value_counts()
    assert body["items"][0]["item_id"] == int(top.index[0])


@pytest.mark.parametrize(
    "path, code",
    [("/recommend?user_id=0", 422), ("/recommend?user_id=x", 422), ("/recommend?user_id=1&k=-1", 422),
     ("/recommend?user_id=1&k=1001", 422), ("/recommend", 422), ("/items/0", 422), ("/items/99999999", 404)],
)
def test_bad_requests(served, path, code):
    client, *_ = served
    r = client.get(path)
    assert r.status_code == code and "detail" in r.json()


def test_items_and_health_and_metrics(served):
    client, services, env, _ = served
    item = int(env.data.train["item_id"].iloc[0])
    body = client.get(f"/items/{item}").json()
    assert body["item_id"] == item and isinstance(body["attributes"], list) and body["in_index"]
    h = client.get("/health")
    assert h.status_code == 200 and h.json()["status"] == "ok" and h.json()["feature_store"] == "up"
    assert "ecaug_http_requests_total" in client.get("/metrics").text


def test_redis_stopped_mid_run_degrades_then_recovers(served):
    client, services, env, _ = served
    users = _known_users(env, 20)
    server = EmbeddedRedis.for_state(env.state_dir)
    assert server.status()["running"]
    port = server.status()["port"]
    assert client.get("/recommend", params={"user_id": users[0]}).json()["fallback"] is None
    server.stop()
    try:
        t0 = time.perf_counter()
        answers = [client.get("/recommend", params={"user_id": u, "k": 5}) for u in users]
        elapsed = time.perf_counter() - t0
        assert all(a.status_code == 200 for a in answers)
        bodies = [a.json() for a in answers]
        assert all(b["degraded"] and b["fallback"] == "feature_store_unavailable" for b in bodies)
        assert all(len(b["items"]) == 5 for b in bodies)
        for u, b in zip(users, bodies):  # seen items still removed: history is held locally
            hist = set(env.data.train.loc[env.data.train["user_id"] == u, "item_id"])
            assert not hist & {it["item_id"] for it in b["items"]}
        assert elapsed < 5.0, f"degraded answers took {elapsed:.2f}s for {len(users)} requests"
        h = client.get("/health")
        assert h.status_code == 200 and h.json()["feature_store"] == "down"
    finally:
        EmbeddedRedis(data_dir=server.data_dir, port=port).start()  # same port, same dump.rdb
    deadline = time.monotonic() + 10
    body = {}
    while time.monotonic() < deadline:
        body = client.get("/recommend", params={"user_id": users[0]}).json()
        if body["fallback"] is None:
            break
        time.sleep(0.1)
    assert body["fallback"] is None and not body["degraded"], body
    assert client.get("/health").json()["feature_store"] == "up"
    fams = client.get("/metrics").text
    assert 'ecaug_recommend_fallbacks_total{reason="feature_store_unavailable"}' in fams


def test_bounded_load_run_has_no_errors(served):
    client, services, env, _ = served
    users = _known_users(env, 400)
    n_req, n_clients = 2000, 8
    base = str(client.base_url)

    def worker(w: int) -> list[tuple[int, str | None]]:
        out = []
        with httpx.Client(base_url=base, timeout=10) as c:
            for i in range(w, n_req, n_clients):
                try:
                    r = c.get("/recommend", params={"user_id": users[i % len(users)], "k": 10})
                    ok = r.status_code == 200 and len(r.json()["items"]) == 10
                    out.append((r.status_code, None if ok else r.text[:200]))
                except httpx.HTTPError as exc:
                    out.append((0, repr(exc)))
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(n_clients) as pool:
        results = [x for chunk in pool.map(worker, range(n_clients)) for x in chunk]
    dt = time.perf_counter() - t0
    errors = [r for r in results if r[1] is not None]
    assert len(results) == n_req
    assert not errors, errors[:3]
    print(f"\nload: {n_req} requests, {n_clients} clients, {dt:.1f}s, {n_req / dt:.0f} req/s, 0 errors")


def test_new_checkpoint_is_served_without_restart(served):
    client, services, env, _ = served
    uid = _known_users(env, 1)[0]
    before = client.get("/recommend", params={"user_id": uid}).json()
    _train_checkpoint(env, MODEL, seed=1)  # renamed into place over the served one
    deadline = time.monotonic() + 20
    after = before
    while time.monotonic() < deadline:
        after = client.get("/recommend", params={"user_id": uid}).json()
        if after["model_version"] != before["model_version"]:
            break
        time.sleep(0.1)
    assert after["model_version"] != before["model_version"]
    assert after["model_version"].startswith(MODEL + "@") and after["fallback"] is None
    cfg = json.loads((env.state_dir / "models" / MODEL / "config.json").read_text())
    assert cfg["train"]["seed"] == 1
