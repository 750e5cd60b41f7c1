"""The stock ``feast`` CLI on ecaug's repo: apply + materialize + materialize-incremental, run
with the repo as working directory exactly like ``cd feature_repo && feast ...``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from ecaug_feast import feast_io, paths

pytestmark = pytest.mark.slow


def test_checked_in_yaml_targets_default_state():
    from feast.repo_config import load_repo_config

    repo = paths.feature_repo_dir()
    cfg = load_repo_config(repo, repo / "feature_store.yaml")
    assert cfg.project == feast_io.PROJECT
    raw = yaml.safe_load((repo / "feature_store.yaml").read_text())
    assert (repo / raw["registry"]["path"]).resolve() == (paths.REPO_ROOT / ".ecaug" / "feast" / "registry.db").resolve()
    assert raw["offline_store"]["type"] == "duckdb"
    assert raw["online_store"]["connection_string"] == "127.0.0.1:6390"


def test_stock_feast_cli(feast_env):
    # One interpreter, three stock CLI invocations (importing Feast costs ~15 s per process here).
    script = textwrap.dedent(
        """
        import sys
        from feast.cli.cli import cli
        for args in (["apply"], ["materialize", "1970-01-01T00:00:00", "2030-01-01T00:00:00"],
                     ["materialize-incremental", "2030-01-02T00:00:00"]):
            rc = cli(args, standalone_mode=False)
            assert not rc, (args, rc)
        from feast import FeatureStore
        s = FeatureStore(".")
        d = s.get_online_features(features=s.get_feature_service("serving"), entity_rows=[{"user_id": 1}]).to_dict()
        print("N", d["n_interactions"][0], "R", d["recent_items"][0])
        """
    )
    env = {**os.environ, "ECAUG_HOME": str(feast_env.state_dir)}
    r = subprocess.run([sys.executable, "-c", script], cwd=feast_env.repo_dir, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "N 3 R [3, 2, 1]" in r.stdout
    assert "user_features" in r.stdout  # materialize reported the view
