"""Fault suite: ingest publishes the Feast sources as one set (issue 12, item 4).

Before: ``write_features`` renamed the three parquet files one by one, then ``feature_meta.json``;
a kill -9 or full disk in between left new ``user_features`` beside old ``item_features`` (and
``ecaug materialize`` loaded the mix with exit 0), plus ``*.tmp-*`` debris. Now every file goes into
a new version folder and one ``current`` link is swapped; a failure leaves the previous set whole.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecaug_feast.datasets import Dataset
from ecaug_feast.datasets.store import load_processed, write_processed
from ecaug_feast.features import build
from ecaug_feast.features.build import CURRENT, PUBLISHED, read_feature_meta, write_features

D = [pd.Timestamp(f"2024-01-0{d}", tz="UTC") for d in range(1, 8)]


def _dataset(n_users: int, name: str = "tiny") -> Dataset:
    rows = [(u, (u + k) % 6 + 1, D[k]) for u in range(1, n_users + 1) for k in range(5)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "event_timestamp"]).assign(weight=1.0)
    inter["user_id"] = inter["user_id"].astype(np.int64)
    inter["item_id"] = inter["item_id"].astype(np.int64)
    items = pd.DataFrame({"item_id": np.arange(1, 7, dtype=np.int64), "attributes": [[1], [2], [3], [1, 2], [4], [5]]})
    return Dataset(name, inter, items)


def _ingest(n_users: int):
    """``ecaug ingest`` as a function: processed dataset + Feast sources; returns feature_meta."""
    from ecaug_feast.features.ingest import ingest_dataset

    return ingest_dataset(_dataset(n_users))["features"]


def _snapshot(feast: Path) -> dict[str, bytes]:
    return {n: (feast / n).read_bytes() for n in PUBLISHED}


def _debris(feast: Path) -> list[str]:
    return sorted(p.name for p in feast.iterdir() if ".tmp-" in p.name)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ECAUG_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_failure_between_files_keeps_the_previous_set(home, monkeypatch):
    first = _ingest(3)
    feast = home / "feast"
    before = _snapshot(feast)
    processed = {p.name: p.read_bytes() for p in (home / "datasets" / "tiny").iterdir()}
    real_write = build._write_parquet
    calls = []

    def failing(df, schema, path):  # the disk fills up after the first file
        calls.append(path.name)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        real_write(df, schema, path)

    monkeypatch.setattr(build, "_write_parquet", failing)
    with pytest.raises(OSError, match="No space left"):
        _ingest(5)
    assert len(calls) == 2
    assert _snapshot(feast) == before  # every file of the previous set, byte for byte
    assert read_feature_meta() == first
    uf = pd.read_parquet(feast / "user_features.parquet")
    itf = pd.read_parquet(feast / "item_features.parquet")
    ti = pd.read_parquet(feast / "train_interactions.parquet")
    assert uf["user_id"].nunique() == 3 and ti["user_id"].nunique() == 3 and len(itf) == first["rows"]["item_features"]
    assert _debris(feast) == []
    versions = [p.name for p in feast.iterdir() if p.name.startswith(build.VERSION_PREFIX)]
    assert versions == [os.readlink(feast / CURRENT)]  # the failed version folder is gone
    # the processed dataset is part of the same ingest: also the previous one, and no temp folders
    assert {p.name: p.read_bytes() for p in (home / "datasets" / "tiny").iterdir()} == processed
    assert [p.name for p in (home / "datasets").iterdir()] == ["tiny"]

    monkeypatch.setattr(build, "_write_parquet", real_write)
    second = _ingest(5)
    assert read_feature_meta() == second and pd.read_parquet(feast / "user_features.parquet")["user_id"].nunique() == 5


def test_versions_are_collected_keeping_the_previous(home):
    feast = home / "feast"
    seen = []
    for n in (2, 3, 4, 5):
        _ingest(n)
        seen.append(os.readlink(feast / CURRENT))
    versions = sorted(p.name for p in feast.iterdir() if p.is_dir() and p.name.startswith(build.VERSION_PREFIX))
    assert versions == sorted(seen[-2:])  # current + previous
    for n in PUBLISHED:
        assert (feast / n).is_symlink() and os.readlink(feast / n) == f"{CURRENT}/{n}"


def test_adopts_a_set_written_by_older_ecaug(home):
    """Plain files from older versions become the previous version, never a mixed set."""
    feast = home / "feast"
    feast.mkdir(parents=True)
    old = _dataset(2)
    write_processed(old)
    out = write_features(load_processed(old.name))
    plain = _snapshot(feast)
    for n in PUBLISHED:  # turn the layout back into the old one: plain files, no `current`
        (feast / n).unlink()
        (feast / n).write_bytes(plain[n])
    for p in list(feast.iterdir()):
        if p.name == CURRENT:
            p.unlink()
        elif p.name.startswith(build.VERSION_PREFIX):
            import shutil

            shutil.rmtree(p)
    (feast / ".user_features.parquet.tmp-999").write_bytes(b"debris of the old writer")
    new = _ingest(4)
    assert read_feature_meta() == new != out
    prev = [p for p in feast.iterdir() if p.name.startswith(f"{build.VERSION_PREFIX}legacy-")]
    assert len(prev) == 1 and {n: (prev[0] / n).read_bytes() for n in PUBLISHED} == plain
    assert _debris(feast) == []


KILLED = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, sys.argv[1])
    from test_ingest_atomic import _dataset
    from ecaug_feast.features import build
    real = build._write_parquet
    def slow(df, schema, path):
        real(df, schema, path)
        print("wrote", path.name, flush=True)
        time.sleep(60)
    build._write_parquet = slow
    from ecaug_feast.features.ingest import ingest_dataset
    ingest_dataset(_dataset(6))
""")


@pytest.mark.slow
def test_kill_9_mid_ingest_keeps_the_previous_set(home):
    feast = home / "feast"
    first = _ingest(3)
    before = _snapshot(feast)
    processed = (home / "datasets" / "tiny" / "meta.json").read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(Path(__file__).parent)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "ECAUG_HOME": str(home)})
    line = proc.stdout.readline()
    assert line.startswith("wrote user_features"), line
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert _snapshot(feast) == before and read_feature_meta() == first
    assert (home / "datasets" / "tiny" / "meta.json").read_bytes() == processed
    # the next ingest is not blocked (the kernel dropped the dead writer's lock) and clears its folder
    t0 = time.monotonic()
    _ingest(4)
    assert time.monotonic() - t0 < 60
    versions = [p.name for p in feast.iterdir() if p.name.startswith(build.VERSION_PREFIX)]
    assert len(versions) == 2 and _debris(feast) == []
    assert [p.name for p in (home / "datasets").iterdir()] == ["tiny"]  # the killed writer's folder too


@pytest.mark.slow
def test_materialize_after_a_failed_ingest_serves_the_previous_set(feast_env, monkeypatch):
    """Through real Feast: the offline store and Redis still see one consistent (old) set."""
    from ecaug_feast import feast_io
    from ecaug_feast.datasets import load_dataset, subset_users
    from ecaug_feast.features.ingest import ingest_dataset

    feast = feast_env.state_dir / "feast"
    before = _snapshot(feast)
    uid = int(feast_env.data.train["user_id"].iloc[0])
    online_before = feast_io.online_user_features([uid], features=["user_features:n_interactions",
                                                                   "user_features:recent_items"],
                                                  store=feast_env.store).to_dict("list")
    real_write = build._write_parquet
    n = []

    def failing(df, schema, path):
        n.append(path.name)
        if len(n) == 2:
            raise OSError(28, "No space left on device")
        real_write(df, schema, path)

    monkeypatch.setattr(build, "_write_parquet", failing)
    with pytest.raises(OSError):
        ingest_dataset(subset_users(load_dataset("beauty"), 300))
    monkeypatch.setattr(build, "_write_parquet", real_write)
    assert _snapshot(feast) == before
    assert load_processed("beauty").meta == feast_env.data.meta  # the processed dataset too
    mat = feast_io.materialize(feast_env.repo_dir, views=["user_features", "item_features"])
    assert mat["views"]["user_features"]["entities_written"] == feast_env.materialize["views"]["user_features"]["entities_written"]
    online_after = feast_io.online_user_features([uid], features=["user_features:n_interactions",
                                                                  "user_features:recent_items"],
                                                 store=feast_env.store).to_dict("list")
    assert online_after == online_before
    assert _debris(feast) == []
