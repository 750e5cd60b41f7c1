"""``synthetic_twins`` and the placeholders: no file is written at import, the example repo's
placeholders match the run files ecaug writes, and a shop's stock ``feast materialize`` of every
view works once ``ecaug``'s apply wrote them (real Feast, real Redis; no GAN here)."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import pytest


def _parse(repo: Path):
    """Import a repo's definition files the way ``feast apply`` does (cwd = repo)."""
    from feast.repo_operations import parse_repo

    from ecaug_feast.feast_io import _repo_import_context

    with _repo_import_context(repo):
        return parse_repo(repo)


def test_example_repo_imports_without_writing(tmp_path, monkeypatch):
    """Importing feature_repo/*.py writes nothing; ensure_placeholders then writes the empty run
    with the schema of ecaug's own run files (synth_store), and points ``active`` at it."""
    import pyarrow.parquet as pq

    from ecaug_feast import item_runs, paths, plugin, synth_store

    state = tmp_path / "state"
    monkeypatch.setenv("ECAUG_HOME", str(state))
    repo = tmp_path / "repo"
    shutil.copytree(paths.feature_repo_dir(), repo, ignore=shutil.ignore_patterns("__pycache__", "profiles"))
    contents = _parse(repo)
    assert not state.exists()  # the old synthetic_views.py wrote runs/_empty and runs/active here
    views = {v.name: v for v in contents.feature_views}
    twin = views["user_features_synth"]
    assert twin.tags["twin_of"] == "user_features" and twin.tags["kind"] == "synthetic"
    assert [f.name for f in twin.features] == [f.name for f in views["user_features"].features] + ["is_synthetic", "run_id", "generator_version"]
    assert Path(twin.batch_source.path) == synth_store.active_source(synth_store.USER_FILE)

    written = plugin.ensure_placeholders(contents.feature_views, contents.entities, repo)
    runs = state / "runs"
    # the user and interaction twins' placeholders, and the item side's (issue 34) in its own folder
    assert sorted(p.name for p in written) == sorted([synth_store.USER_FILE, synth_store.INTER_FILE, item_runs.ITEM_FILE])
    assert synth_store.active_run() is None and (runs / "active" / synth_store.USER_FILE).exists()
    assert plugin.ensure_placeholders(contents.feature_views, contents.entities, repo) == []  # idempotent
    monkeypatch.setenv("ECAUG_HOME", str(tmp_path / "state2"))  # synth_store's own placeholders, to compare
    synth_store.ensure_sources()
    for fname in (synth_store.USER_FILE, synth_store.INTER_FILE):
        ours = pq.read_schema(runs / "_empty" / fname)
        theirs = pq.read_schema(tmp_path / "state2" / "runs" / "_empty" / fname)
        assert {f.name: f.type for f in ours} == {f.name: f.type for f in theirs}, fname
    item_runs.ensure_sources()  # the item runs' own placeholder has the schema the repo's placeholder has
    ours = pq.read_schema(next(p for p in written if p.name == item_runs.ITEM_FILE))
    theirs = pq.read_schema(item_runs.root() / "_empty" / item_runs.ITEM_FILE)
    assert {f.name: f.type for f in ours} == {f.name: f.type for f in theirs}


def test_twin_without_key_type_is_refused():
    from feast import Entity, FeatureView, Field, FileSource
    from feast.types import Float32

    from ecaug_feast.errors import EcaugError
    from ecaug_feast.plugin import synthetic_twins

    rider = Entity(name="rider", join_keys=["rider_id"])
    view = FeatureView(name="rider_stats", entities=[rider], ttl=timedelta(days=1),
                       schema=[Field(name="score", dtype=Float32)],
                       source=FileSource(path="data/r.parquet", timestamp_field="ts"))
    with pytest.raises(EcaugError, match=r"entities=\[rider\]"):
        synthetic_twins([view])
    twin, = synthetic_twins([view], entities=[rider], runs_dir="data/runs")
    assert twin.name == "rider_stats_synth" and twin.entities == ["rider"]
    assert [c.name for c in twin.entity_columns] == ["rider_id"] and "rider_id" not in [f.name for f in twin.features]
    assert twin.batch_source.path == "data/runs/active/rider_stats_synth.parquet"

    clash = FeatureView(name="bad", entities=[rider], ttl=timedelta(days=1),
                        schema=[Field(name="run_id", dtype=Float32)], source=FileSource(path="x.parquet", timestamp_field="ts"))
    with pytest.raises(EcaugError, match="lineage"):
        synthetic_twins([clash], entities=[rider])


@pytest.mark.slow
def test_stock_materialize_of_every_view_after_ecaug_apply(tmp_path, redis_url, monkeypatch):
    """The shop's stock `feast materialize` (every view, twins included) fails on a missing twin
    source; ecaug's apply writes the empty placeholder, and then it succeeds, writing real keys only."""
    import redis
    from feast import FeatureStore
    from _shop import feast_cli, write_shop_repo

    from ecaug_feast import feast_io

    repo = write_shop_repo(tmp_path / "repo", redis_url, db=4, couriers=3, days=1, project="courier_shop2")
    u = urlparse(redis_url)
    client = redis.Redis(host=u.hostname, port=u.port, db=4)
    client.flushdb()
    feast_cli(repo, ["apply"], monkeypatch)  # stock apply: validates with no run (Feast warns), writes nothing
    assert not (repo / "data" / "ecaug_runs").exists()
    with pytest.raises(FileNotFoundError):  # but Feast cannot read the twin's missing source
        feast_cli(repo, ["materialize", "2025-01-01T00:00:00", "2025-04-01T00:00:00"], monkeypatch)

    feast_io.apply(repo)
    assert (repo / "data" / "ecaug_runs" / "_empty" / "courier_hourly_synth.parquet").exists()
    feast_cli(repo, ["materialize", "2025-01-01T00:00:00", "2025-04-01T00:00:00"], monkeypatch)
    store = FeatureStore(repo_path=str(repo))
    assert {v.name for v in store.list_feature_views()} == {"courier_hourly", "courier_hourly_synth"}
    assert len(list(client.scan_iter())) == 3  # the three real couriers; the empty twin wrote nothing


def test_run_file_with_nanosecond_times(tmp_path):
    """A shop's timestamps may carry nanoseconds; run files hold Feast's microseconds (floored)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ecaug_feast.plugin import write_table

    schema = pa.schema([pa.field("k", pa.int64()), pa.field("ts", pa.timestamp("us", tz="UTC"))])
    df = pd.DataFrame({"k": [1], "ts": pd.to_datetime([1_700_000_000_123_456_789], utc=True)})
    write_table(df, schema, tmp_path / "x.parquet")
    got = pq.read_table(tmp_path / "x.parquet").to_pandas()["ts"].iloc[0]
    assert got == pd.Timestamp(1_700_000_000_123_456_000, tz="UTC")
