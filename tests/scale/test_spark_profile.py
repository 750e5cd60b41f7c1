"""The example Spark profile (feature_repo/profiles/spark/feature_store.yaml).

pyspark is not installed here (pyspark 4.3 is a ~460 MB download, see docs/guide/cluster.md):
the shape check runs always; the RepoConfig check runs only where pyspark is
installed (marker ``spark``)."""

from __future__ import annotations

import os

import pytest
import yaml

from ecaug_feast import paths

PROFILE = paths.feature_repo_dir() / "profiles" / "spark" / "feature_store.yaml"


def _profile() -> dict:
    return yaml.safe_load(PROFILE.read_text(encoding="utf-8"))


def test_profile_names_engines_this_feast_ships():
    from feast.repo_config import BATCH_ENGINE_CLASS_FOR_TYPE, OFFLINE_STORE_CLASS_FOR_TYPE

    d = _profile()
    assert d["offline_store"]["type"] == "spark" and "spark" in OFFLINE_STORE_CLASS_FOR_TYPE
    assert d["batch_engine"]["type"] == "spark.engine" and "spark.engine" in BATCH_ENGINE_CLASS_FOR_TYPE
    assert d["offline_store"]["spark_conf"]["spark.master"] == "local[2]"
    assert d["online_store"]["redis_type"] == "redis_cluster"
    assert "${ECAUG_REDIS_PASSWORD}" in d["online_store"]["connection_string"]  # no secret in the file


@pytest.mark.spark
def test_profile_is_a_valid_feast_config(tmp_path, monkeypatch):
    pytest.importorskip("pyspark", reason="pyspark not installed")
    from feast.repo_config import RepoConfig

    monkeypatch.setenv("ECAUG_REDIS_PASSWORD", "unused-here")
    cfg = RepoConfig(repo_path=tmp_path, **_profile())
    assert type(cfg.offline_store).__name__ == "SparkOfflineStoreConfig"
    assert cfg.online_store.redis_type == "redis_cluster"
