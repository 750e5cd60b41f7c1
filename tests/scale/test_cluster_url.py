"""Cluster URLs: parsing, Feast's connection string, the rendered yaml keeps no password."""

from __future__ import annotations

import pytest

from ecaug_feast import feast_io
from ecaug_feast.errors import EcaugError
from ecaug_feast.redact import redact
from ecaug_feast.redis_cluster import cluster_url, feast_cluster_string, is_cluster_url

SECRET = "s3cret-cluster-pw"


def test_cluster_url_to_feast_string():
    url = f"redis-cluster://:{SECRET}@10.0.0.1:7000,10.0.0.2:7001"
    assert is_cluster_url(url) and not is_cluster_url("redis://127.0.0.1:6379/0")
    assert feast_cluster_string(url) == f"10.0.0.1:7000,10.0.0.2:7001,password={SECRET}"
    assert feast_cluster_string("rediss-cluster://h:1") == "h:1,ssl=true"
    assert cluster_url([("h", 1), ("g", 2)]) == "redis-cluster://h:1,g:2"
    assert SECRET not in redact(url) and SECRET not in redact(feast_cluster_string(url))
    for bad in ("redis-cluster://", "redis-cluster://host", "redis-cluster://h:p"):
        with pytest.raises(EcaugError):
            feast_cluster_string(bad)


def test_render_repo_cluster_yaml_has_no_secret(tmp_path, monkeypatch):
    monkeypatch.setenv(feast_io.REDIS_PASSWORD_ENV, "placeholder")  # restored after the test
    url = f"redis-cluster://:{SECRET}@127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002"
    repo = feast_io.render_repo(tmp_path / "repo", state_dir=tmp_path, redis_url=url)
    text = (repo / "feature_store.yaml").read_text()
    assert "  redis_type: redis_cluster\n" in text
    assert 'connection_string: "127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002,password=${ECAUG_REDIS_PASSWORD}"' in text
    assert SECRET not in text
    # the single-node path renders no redis_type line (unchanged)
    single = feast_io.render_repo(tmp_path / "repo1", state_dir=tmp_path, redis_url="redis://127.0.0.1:6399/0")
    assert "redis_type" not in (single / "feature_store.yaml").read_text()
