"""The ``ecaug`` data commands as a user runs them (subprocesses, real files, real Redis)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "datasets"))
from test_generic import make_shop  # noqa: E402  (the generated shop with other column names)


def ecaug(args, home, extra_env=None, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "ECAUG_REDIS_URL"}
    env["ECAUG_HOME"] = str(home)
    env["COLUMNS"] = "60"  # narrow on purpose: the error must stay on one line anyway
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", *args], capture_output=True, text=True, env=env, timeout=timeout)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_ingest_own_data_with_map(tmp_path):
    inter, _, _ = make_shop(tmp_path)
    home = tmp_path / "home"
    r = ecaug(["ingest", "--interactions", str(tmp_path / "orders.csv"), "--items", str(tmp_path / "products.parquet"),
               "--users", str(tmp_path / "customers.csv"), "--map", "user=customer,item=sku,timestamp=ordered_at,weight=qty",
               "--name", "shop", "--negatives", "2", "--json"], home)
    assert r.returncode == 0, r.stderr
    out = last_json(r.stdout)
    assert out["ok"] and out["dataset"]["interactions"] == len(inter)
    sp = out["split"]
    assert sp["kind"] == "temporal" and sp["train"] + sp["valid"] + sp["test"] == len(inter)
    ti = pd.read_parquet(home / "feast" / "train_interactions.parquet")
    assert (ti["label"] == 0).sum() == 2 * (ti["label"] == 1).sum() == 2 * sp["train"]
    assert (home / "datasets" / "shop" / "users.parquet").exists()
    assert "processed dataset ->" in r.stderr  # the log says where files went


def test_ingest_with_mapping_file(tmp_path):
    make_shop(tmp_path)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"name": "m", "interactions": "orders.csv", "items": "products.parquet",
                                                   "columns": {"user": "customer", "item": "sku", "timestamp": "ordered_at"}}))
    r = ecaug(["ingest", "--mapping", str(tmp_path / "m.yaml")], tmp_path / "home")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ingested m:")


@pytest.mark.parametrize(
    "csv, flags, needle",
    [
        ("u,i,t\n1,2,2024-01-01\n1,3,not-a-date\n", "user=u,item=i,timestamp=t", "column 't': 1 unparseable timestamps"),
        ("u,i,t\n1,2,2024-01-01\n", "user=u,item=item,timestamp=t", "column 'item': missing column"),
        ("u,i,t\n", "user=u,item=i,timestamp=t", "no rows (empty data)"),
        ("u,i,t\n1,2,2024-01-01\n1,2,2024-01-01\n", "user=u,item=i,timestamp=t", "duplicate keys"),
    ],
)
def test_bad_input_one_line_nothing_written(tmp_path, csv, flags, needle):
    p = tmp_path / "events.csv"
    p.write_text(csv)
    home = tmp_path / "home"
    r = ecaug(["ingest", "--interactions", str(p), "--map", flags], home)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert str(p) in lines[0] and needle in lines[0]
    assert not (home / "datasets").exists() and not (home / "feast").exists()


def test_usage_errors(tmp_path):
    r = ecaug(["ingest"], tmp_path)
    assert r.returncode == 2 and "nothing to ingest" in r.stderr
    r = ecaug(["ingest", "--dataset", "nope"], tmp_path)
    assert r.returncode == 2 and "unknown dataset 'nope'" in r.stderr
    r = ecaug(["ingest", "--interactions", str(tmp_path / "missing.csv"), "--map", "user=a,item=b,timestamp=c"], tmp_path)
    assert r.returncode == 2 and "missing.csv: file not found" in r.stderr
    r = ecaug(["redis", "status"], tmp_path)
    assert r.returncode == 1 and "not running" in r.stdout
    r = ecaug(["materialize", "--start", "yesterday"], tmp_path)
    assert r.returncode == 2 and "--start: not an ISO-8601 time" in r.stderr


@pytest.mark.slow
def test_demo_json_end_to_end(tmp_path, monkeypatch):
    """ingest -> apply -> materialize -> online read (``--until online_read``; the later steps are
    tests/cli/test_demo.py) on 100 Beauty users with the demo's own
    embedded Redis (not the session one: same Feast project, other values). In-process through
    the real Typer app, so Feast is imported once per test session."""
    from typer.testing import CliRunner

    from ecaug_feast.cli.main import app
    from ecaug_feast.redis_server import EmbeddedRedis

    home = tmp_path / "home"
    monkeypatch.setenv("ECAUG_HOME", str(home))
    monkeypatch.delenv("ECAUG_REDIS_URL", raising=False)
    try:
        r = CliRunner().invoke(app, ["demo", "--max-users", "100", "--until", "online_read", "--json"])
        assert r.exit_code == 0, (r.output[-2000:], r.exception)
        out = last_json(r.stdout)
        assert out["ok"] and out["redis"]["mode"] == "embedded"
        assert out["redis"]["url"] != os.environ.get("ECAUG_REDIS_URL")
        assert out["ingest"]["dataset"]["users"] == 100
        assert {"item_features", "user_features"} <= set(out["apply"]["feature_views"])
        assert out["materialize"]["views"]["user_features"]["entities_written"] == 100
        assert out["online_read"]["matches_offline"] is True
        assert out["summary"]["state_dir"] == str(home.resolve())
    finally:
        EmbeddedRedis.for_state(home).stop()
