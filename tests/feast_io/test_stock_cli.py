"""The stock ``feast`` CLI on ecaug's repo: apply + materialize + materialize-incremental, run
with the repo as working directory exactly like ``cd feature_repo && feast ...``."""

from __future__ import annotations

import sys

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


def test_stock_feast_cli(feast_env, monkeypatch, capsys):
    """`feast apply`, `feast materialize`, `feast materialize-incremental` through Feast's own click
    CLI, in-process (a subprocess would pay ~15 s to import Feast again) with the repo as cwd."""
    from feast import FeatureStore
    from feast.cli.cli import cli

    monkeypatch.chdir(feast_env.repo_dir)
    monkeypatch.syspath_prepend(str(feast_env.repo_dir))
    for name in [p.stem for p in feast_env.repo_dir.glob("*.py")]:  # import the definitions afresh
        monkeypatch.delitem(sys.modules, name, raising=False)
    for args in (["apply"], ["materialize", "1970-01-01T00:00:00", "2030-01-01T00:00:00"],
                 ["materialize-incremental", "2030-01-02T00:00:00"]):
        rc = cli(args, standalone_mode=False)
        assert not rc, (args, rc)
    out = capsys.readouterr().out
    assert "user_features" in out and "item_features" in out  # both views materialized
    store = FeatureStore(".")
    d = store.get_online_features(features=store.get_feature_service("serving"), entity_rows=[{"user_id": 1}]).to_dict()
    assert d["n_interactions"] == [3] and d["recent_items"] == [[3, 2, 1]]
