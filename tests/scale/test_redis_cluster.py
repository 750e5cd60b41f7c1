"""Feast's online store on a local 3-node Redis Cluster (real redis-server nodes in cluster mode):
apply + materialize, online rows equal the offline ones, the serving app answers; then one node
is lost: what serving does, and a re-materialize onto a healthy cluster restores everything.

Runs in its own ``ECAUG_HOME`` (the session's embedded Redis is not used)."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pandas as pd
import pytest

from ecaug_feast.redis_cluster import LocalRedisCluster, cluster_client

pytestmark = pytest.mark.slow
N_USERS = 600
MODEL = "cluster-test"
LOST = 1  # index of the node the test stops


def _user_key(uid: int) -> bytes:
    """Feast's Redis key of a user's row (the key whose hash slot picks the node)."""
    from feast.infra.online_stores.helpers import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from ecaug_feast.feast_io import PROJECT

    return _redis_key(PROJECT, EntityKey(join_keys=["user_id"], entity_values=[Value(int64_val=int(uid))]), 3)


def _latest_offline() -> pd.DataFrame:
    """The newest ``user_features`` row per user in the offline parquet (what materialize loads)."""
    from ecaug_feast.paths import feast_data_dir

    df = pd.read_parquet(feast_data_dir() / "user_features.parquet")
    return df.sort_values("event_timestamp").groupby("user_id").tail(1).set_index("user_id").sort_index()


def _assert_online_equals_offline(store, user_ids: list[int]) -> None:
    from ecaug_feast import feast_io

    online = feast_io.online_user_features(user_ids, features=["user_features:n_interactions", "user_features:recent_items"],
                                           store=store).set_index("user_id")
    off = _latest_offline().loc[user_ids]
    assert online["n_interactions"].tolist() == off["n_interactions"].tolist()
    assert [list(v) for v in online["recent_items"]] == [list(v) for v in off["recent_items"]]


@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory):
    from ecaug_feast import feast_io
    from ecaug_feast.datasets import load_dataset, subset_users
    from ecaug_feast.datasets.store import load_processed
    from ecaug_feast.features.ingest import ingest_dataset

    home = tmp_path_factory.mktemp("cluster_home")
    old_home = os.environ.get("ECAUG_HOME")
    os.environ["ECAUG_HOME"] = str(home)
    cluster = LocalRedisCluster(home / "cluster", n=3)
    try:
        url = cluster.start()
        ds = subset_users(load_dataset("beauty"), N_USERS)
        ingest_dataset(ds)
        repo = feast_io.render_repo(home / "feature_repo", state_dir=home, redis_url=url)
        feast_io.apply(repo)
        mat = feast_io.materialize(repo)
        yield SimpleNamespace(home=home, cluster=cluster, url=url, repo=repo, store=feast_io.get_store(repo),
                              data=load_processed(ds.name), materialize=mat, state_dir=home)
    finally:
        cluster.stop()
        if old_home is None:
            os.environ.pop("ECAUG_HOME", None)
        else:
            os.environ["ECAUG_HOME"] = old_home


def test_rendered_yaml_and_keys_spread_over_every_node(cluster_env):
    from redis.cluster import RedisCluster

    text = (cluster_env.repo / "feature_store.yaml").read_text()
    assert "redis_type: redis_cluster" in text
    nodes = ",".join(f"127.0.0.1:{p}" for p in cluster_env.cluster.ports)
    assert f'connection_string: "{nodes}"' in text
    client = cluster_env.store._get_provider().online_store._get_client(cluster_env.store.config.online_store)
    assert isinstance(client, RedisCluster)
    users = sorted(cluster_env.data.train["user_id"].unique().tolist())
    assert cluster_env.materialize["views"]["user_features"]["entities_written"] == len(users) == N_USERS
    # every node holds a share of the users (a third each, give or take)
    sizes = [cluster_env.cluster._client(i).dbsize() for i in range(3)]
    assert all(s > 0.2 * sum(sizes) for s in sizes), sizes
    owners = [cluster_env.cluster.node_of(_user_key(u)) for u in users]
    assert {o: owners.count(o) for o in range(3)}.keys() == {0, 1, 2}
    cc = cluster_client(cluster_env.url)
    assert all(cc.exists(_user_key(u)) for u in users[:50])  # the key helper names Feast's real keys


def test_online_reads_equal_offline_rows(cluster_env):
    users = sorted(cluster_env.data.train["user_id"].unique().tolist())
    _assert_online_equals_offline(cluster_env.store, users)


def test_serving_reader_builds_on_a_cluster_store(cluster_env):
    """The reader tunes every node's pool of a RedisCluster client (it used to read
    ``client.connection_pool``, which a cluster client lacks: AttributeError)."""
    from ecaug_feast import feast_io
    from recommender.serving.feast_reader import FeastFeatureReader

    reader = FeastFeatureReader(feast_io.get_store(cluster_env.repo))
    client = reader._redis_client(reader.store)
    assert hasattr(client, "nodes_manager")  # Feast built a cluster client
    assert client.nodes_manager.connection_kwargs["socket_timeout"] is not None


def _train_checkpoint(env) -> None:
    from recommender.checkpoint import save_checkpoint
    from ecaug_feast.jobs.train_data import load_real_from_feast
    from recommender.train import TrainConfig, catalog_for, model_config_for, train

    data = load_real_from_feast(env.data.name, store=env.store)
    cfg = model_config_for(data, embedding_dim=16, hidden_dim=32, out_dim=16)
    res = train(data, None, cfg, TrainConfig(epochs=1, batch_size=256, seed=0))
    state = res.state if res.state is not None else res.model.state_dict()
    save_checkpoint(env.state_dir / "models" / MODEL, state, res.cfg, catalog_for(data),
                    data={"dataset": env.data.name}, train={"seed": 0})


def test_serving_then_node_loss_then_rematerialize(cluster_env):
    import torch
    from fastapi.testclient import TestClient

    from ecaug_feast import feast_io
    from recommender.serving.app import create_app
    from recommender.serving.wiring import build_services

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    _train_checkpoint(cluster_env)
    retry_s = 1.5
    services = build_services(MODEL, store=feast_io.get_store(cluster_env.repo), poll_s=60, retry_s=retry_s)
    users = sorted(cluster_env.data.train["user_id"].unique().tolist())
    owner = {u: cluster_env.cluster.node_of(_user_key(u)) for u in users}
    lost_users = [u for u in users if owner[u] == LOST][:5]
    kept_users = [u for u in users if owner[u] != LOST][:5]

    def rec(client, uid):
        r = client.get("/recommend", params={"user_id": uid, "k": 10})
        assert r.status_code == 200, r.text
        return r.json()

    try:
        with TestClient(create_app(services)) as client:
            for u in lost_users[:2] + kept_users[:2]:  # healthy cluster: personal answers for everyone
                body = rec(client, u)
                assert body["degraded"] is False and body["fallback"] is None and len(body["items"]) == 10

            cluster_env.cluster.stop_node(LOST)
            cluster_env.cluster.wait_until_noticed(LOST)
            time.sleep(retry_s)

            # a user whose key lived on the lost node: a flagged popularity answer, never an error
            body = rec(client, lost_users[0])
            assert body["degraded"] is True and body["fallback"] is not None and len(body["items"]) == 10
            # that failure opened the reader's breaker: for retry_s every user is answered degraded
            assert rec(client, kept_users[0])["degraded"] is True
            # after the breaker's window, users on the surviving nodes are served normally again
            time.sleep(retry_s + 0.1)
            for u in kept_users:
                body = rec(client, u)
                assert body["degraded"] is False and body["fallback"] is None, (u, body)
            time.sleep(retry_s + 0.1)
            assert rec(client, lost_users[1])["degraded"] is True
    finally:
        torch.set_num_threads(threads)

    # Nothing is lost for real users: the offline store still holds every row. A healthy cluster
    # (here: a fresh one) gets them all back from a plain re-materialize.
    fresh = LocalRedisCluster(cluster_env.home / "cluster2", n=3)
    try:
        url2 = fresh.start()
        repo2 = feast_io.render_repo(cluster_env.home / "feature_repo2", state_dir=cluster_env.home, redis_url=url2)
        mat = feast_io.materialize(repo2)
        assert mat["views"]["user_features"]["entities_written"] == len(users)
        store2 = feast_io.get_store(repo2)
        _assert_online_equals_offline(store2, users)
        services2 = build_services(MODEL, store=store2, poll_s=60, retry_s=retry_s)
        with TestClient(create_app(services2)) as client:
            for u in lost_users + kept_users[:2]:
                body = rec(client, u)
                assert body["degraded"] is False and body["fallback"] is None, (u, body)
    finally:
        fresh.stop()
