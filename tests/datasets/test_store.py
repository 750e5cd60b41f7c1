"""Processed store: round trip, atomic replace, nothing left behind on failure."""

from __future__ import annotations

import pandas as pd
import pytest

from ecaug_feast import paths
from ecaug_feast.datasets import Dataset, load_dataset, subset_users
from ecaug_feast.datasets.store import list_processed, load_processed, write_processed
from ecaug_feast.errors import EcaugError


def test_round_trip(monkeypatch, tmp_path):
    monkeypatch.setenv("ECAUG_HOME", str(tmp_path))
    ds = subset_users(load_dataset("beauty"), 200)
    out = write_processed(ds)
    assert out == paths.datasets_dir() / "beauty"
    back = load_processed("beauty")
    assert len(back.train) + len(back.valid) + len(back.test) == len(ds.interactions)
    assert len(back.valid) == len(back.test) == 200  # every user has >= 5 events
    assert back.meta["split"]["kind"] == "leave_last_out"
    assert back.items["attributes"].iloc[0] == list(ds.items["attributes"].iloc[0])
    pd.testing.assert_series_equal(
        back.interactions["event_timestamp"], ds.interactions["event_timestamp"], check_names=False
    )
    assert list_processed() == ["beauty"]
    assert back.user_map is None  # S3-Rec ids are kept as they are
    assert not [p for p in paths.datasets_dir().iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_failed_write_keeps_previous_copy(monkeypatch, tmp_path):
    monkeypatch.setenv("ECAUG_HOME", str(tmp_path))
    ds = subset_users(load_dataset("beauty"), 50)
    write_processed(ds)
    before = (paths.datasets_dir() / "beauty" / "meta.json").read_text()
    broken = Dataset(ds.name, ds.interactions, ds.items.assign(attributes=object()), None, ds.split_kind, ds.meta)
    with pytest.raises(Exception):
        write_processed(broken)
    assert (paths.datasets_dir() / "beauty" / "meta.json").read_text() == before
    assert not [p for p in paths.datasets_dir().iterdir() if p.name.startswith(".")]


def test_load_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("ECAUG_HOME", str(tmp_path))
    with pytest.raises(EcaugError, match="ecaug ingest --dataset nope"):
        load_processed("nope")
