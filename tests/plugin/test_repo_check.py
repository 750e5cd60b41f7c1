"""Issue 31 item 6: a ``--repo`` command's wrong names, wrong key type, missing source or
unsupported (Map) feature are refused before any fitting, from the repo's file registry, without
importing Feast: one line, exit 2, no run folder, nothing fitted. (The time is measured in the
report, not asserted here.) A stale registry (a repo file newer than it) is left to the full check.

The refusals run ``ecaug`` in a subprocess, as a user does: ``import feast`` must not have happened
when the check answers, and ``sys.modules`` is clean for the real import afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from _grocer import write_grocer_repo
from _shop import feast_cli

pytestmark = pytest.mark.slow

MAP_VIEW = '''
from datetime import timedelta

from feast import FeatureView, Field, FileSource
from feast.types import Map, String

from grocer_repo import shopper

shopper_prefs = FeatureView(
    name="shopper_prefs", entities=[shopper], ttl=timedelta(days=90), online=True,
    schema=[Field(name="shopper_ref", dtype=String), Field(name="prefs", dtype=Map)],
    source=FileSource(name="prefs_source", path="data/prefs.parquet", timestamp_field="seen_at"),
)
'''


def _ecaug(args: list[str], home: Path) -> tuple[int, str]:
    env = {**os.environ, "ECAUG_HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    p = subprocess.run([sys.executable, "-c", "from ecaug_feast.cli.main import main; main()", *args],
                       capture_output=True, text=True, env=env, timeout=300)
    return p.returncode, p.stderr


@pytest.fixture()
def applied(tmp_path: Path, redis_url: str, monkeypatch) -> Path:
    repo = write_grocer_repo(tmp_path / "grocer", redis_url, 11, shoppers=40, products=10, project="grocer_check")
    (repo / "prefs_repo.py").write_text(MAP_VIEW)
    feast_cli(repo, ["apply"], monkeypatch)
    return repo


def test_refusals_come_from_the_registry_before_any_fitting(applied: Path, tmp_path: Path):
    repo, home = applied, tmp_path / "home"
    runs = repo / "data" / "ecaug_runs"
    listing = lambda: sorted(p.name for p in runs.iterdir()) if runs.exists() else []  # noqa: E731
    before = listing()
    aug = ["augment", "--repo", str(repo)]
    cases = [
        ([*aug, "--events", "nope"], "--events nope: no such data source"),
        ([*aug, "--events", "purchases", "--view", "nope"], "--view nope: no such feature view"),
        ([*aug, "--events", "purchases", "--view", "shopper_prefs"], "field 'prefs': type MAP is not supported"),
        ([*aug, "--events", "purchases", "--view", "product_stats"], "--view product_stats: keyed by 'product_no' (Int32)"),
        ([*aug, "--entity", "shopper", "--view", "shopper_prefs"], "field 'prefs': type MAP is not supported"),
        ([*aug, "--entity", "basket", "--view", "basket_totals"], "join key 'basket_ref': the shop's key is String but the twin declares Int64"),
        ([*aug, "--entity", "shopper", "--view", "shopper_behaviour", "--service", "nope"], "--service nope: no such feature service"),
        (["drift", "--repo", str(repo), "--events", "nope"], "--events nope: no such data source"),
        (["refresh", "--repo", str(repo), "--events", "nope"], "--events nope: no such data source"),
        (["train", "--repo", str(repo), "--events", "nope"], "--events nope: no such data source"),
        (["train", "--repo", str(repo), "--events", "purchases", "--history", "shopper_behaviour:basket_value"],
         "--history shopper_behaviour:basket_value: 'basket_value' is Float32; the item keys ('sku') need Array(String)"),
        (["train", "--repo", str(repo), "--events", "purchases", "--history", "product_stats:aisle"],
         "view 'product_stats' is keyed by ['product_no'], the events' users by 'shopper_ref'"),
        (["finetune", "--repo", str(repo), "--events", "nope"], "--events nope: no such data source"),
    ]
    for args, want in cases:
        code, err = _ecaug(args, home)
        lines = [x for x in err.strip().splitlines() if x.strip()]
        assert code == 2 and len(lines) == 1 and want in lines[0] and "Traceback" not in err, (args, err)
        assert "fitting" not in err.lower() and "epoch" not in err
    # a wrong key type in the data (strings where the twin declares them): found in the file's footer
    purchases = repo / "data" / "purchases.parquet"
    real = pd.read_parquet(purchases)
    real.assign(shopper_ref=range(len(real))).to_parquet(purchases)
    code, err = _ecaug([*aug, "--events", "purchases"], home)
    assert code == 2 and "column 'shopper_ref': keys of type int64 but the twin declares String keys" in err, err
    purchases.unlink()  # a missing source
    code, err = _ecaug([*aug, "--events", "purchases"], home)
    assert code == 2 and f"--events purchases: its source {purchases} does not exist" in err, err
    assert listing() == before  # no run reserved, none written
    assert not (home / "repos").exists()


def test_the_check_imports_no_feast_and_leaves_sys_modules_clean(applied: Path):
    code = f"""
import sys, time
t = time.perf_counter()
from ecaug_feast.errors import EcaugError
from ecaug_feast.repo_check import check_repo
try:
    check_repo({str(applied)!r}, events="nope")
except EcaugError as exc:
    print("refused:", exc)
assert not any(m == "feast" or m.startswith("feast.") for m in sys.modules), sorted(m for m in sys.modules if "feast" in m)
assert check_repo({str(applied)!r}, events="purchases") is True
import feast
from feast import FeatureStore
from feast.protos.feast.core.Registry_pb2 import Registry
assert FeatureStore(repo_path={str(applied)!r}).get_data_source("purchases").name == "purchases"
print("ok")
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert p.returncode == 0 and "refused: --events nope: no such data source" in p.stdout and "ok" in p.stdout, p.stderr[-3000:]


def test_a_stale_or_missing_registry_is_left_to_the_full_check(applied: Path):
    from ecaug_feast.repo_check import check_repo

    assert check_repo(applied, events="purchases") is True
    later = time.time() + 5
    os.utime(applied / "grocer_repo.py", (later, later))  # edited since the last `feast apply`
    assert check_repo(applied, events="nope") is False  # not refused here: `feast apply` comes first
    (applied / "data" / "registry.db").unlink()
    assert check_repo(applied, events="nope") is False
