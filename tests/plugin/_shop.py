"""A shop's Feast repo that ecaug's code has never seen, built like ``feast init`` builds its
example (Feast's own ``create_driver_hourly_stats_df``, an entity without a value type, a
``FileSource`` with a created-timestamp column, the file offline store), with other names:
entity ``courier`` / ``courier_id``, view ``courier_hourly`` (``on_time_rate``, ``accept_rate``,
``trips_per_day``, a string ``vehicle``), service ``courier_model_v1``; the repo file declares the
synthetic twin with the one ``synthetic_twins`` call."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

REPO_FILE = '''\
"""A shop's own repo file (never seen by ecaug's code)."""
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Float32, Int64, String

from ecaug_feast.plugin import synthetic_twins

courier = Entity(name="courier", join_keys=["courier_id"])  # no value_type, as `feast init` writes it

courier_stats_source = FileSource(
    name="courier_hourly_source",
    path="data/courier_stats.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

courier_hourly = FeatureView(
    name="courier_hourly",
    entities=[courier],
    ttl=timedelta(days=30),
    schema=[
        Field(name="on_time_rate", dtype=Float32),
        Field(name="accept_rate", dtype=Float32),
        Field(name="trips_per_day", dtype=Int64),
        Field(name="vehicle", dtype=String),
    ],
    online=True,
    source=courier_stats_source,
    tags={"team": "courier_ops"},
)

courier_model_v1 = FeatureService(name="courier_model_v1", features=[courier_hourly])

# the one call: the synthetic twin of courier_hourly, kept by `feast apply` like any declared view
courier_hourly_synth, = synthetic_twins([courier_hourly], entities=[courier], runs_dir="data/ecaug_runs")
'''


def write_shop_repo(repo: Path, redis_url: str, db: int, couriers: int = 40, days: int = 8,
                    project: str = "courier_shop") -> Path:
    """Write the repo (yaml with the Redis at ``redis_url``, db ``db``), its data and repo file."""
    from feast.driver_test_data import create_driver_hourly_stats_df

    (repo / "data").mkdir(parents=True)
    end = datetime(2025, 3, 1, tzinfo=timezone.utc)
    df = create_driver_hourly_stats_df(list(range(1001, 1001 + couriers)), end - timedelta(days=days), end)
    df = df.rename(columns={"driver_id": "courier_id", "conv_rate": "on_time_rate", "acc_rate": "accept_rate",
                            "avg_daily_trips": "trips_per_day"})
    rng = np.random.default_rng(0)
    df["vehicle"] = rng.choice(["bike", "car", "scooter"], len(df), p=[0.5, 0.3, 0.2])
    df = df[["courier_id", "event_timestamp", "created", "on_time_rate", "accept_rate", "trips_per_day", "vehicle"]]
    df.to_parquet(repo / "data" / "courier_stats.parquet")
    write_store_yaml(repo, redis_url, db, project)
    (repo / "courier_repo.py").write_text(REPO_FILE)
    return repo


def write_store_yaml(repo: Path, redis_url: str, db: int, project: str, offline: str = "file") -> None:
    """The repo's ``feature_store.yaml``: the ``offline`` store (file, duckdb), the Redis at
    ``redis_url`` (db ``db``)."""
    u = urlparse(redis_url)
    (repo / "feature_store.yaml").write_text(
        f"project: {project}\nregistry: data/registry.db\nprovider: local\n"
        f"offline_store:\n  type: {offline}\n"
        f"online_store:\n  type: redis\n  connection_string: \"{u.hostname}:{u.port},db={db}\"\n"
        "entity_key_serialization_version: 3\n")


def feast_cli(repo: Path, args: list[str], monkeypatch) -> None:
    """The stock ``feast`` CLI, in-process, with the repo as cwd (as ``cd repo && feast ...``)."""
    from feast.cli.cli import cli

    with monkeypatch.context() as m:
        m.chdir(repo)
        m.syspath_prepend(str(repo))
        for name in [p.stem for p in repo.glob("*.py")]:
            m.delitem(sys.modules, name, raising=False)
        rc = cli(args, standalone_mode=False)
    assert not rc, (args, rc)


def ecaug_cli(args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    """``ecaug ARGS`` through the console script's ``main()``, in-process: (exit code, stdout, stderr)."""
    from ecaug_feast.cli import main as cli

    monkeypatch.setattr(sys, "argv", ["ecaug", *args])
    capsys.readouterr()
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def dump_keys(client) -> dict[bytes, bytes]:
    """Every key of a Redis db, byte for byte (``DUMP``)."""
    return {k: client.dump(k) for k in client.scan_iter(count=1000)}
