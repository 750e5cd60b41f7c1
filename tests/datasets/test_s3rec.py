"""S3-Rec adapter: bundled Beauty, deterministic timestamps, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ecaug_feast import paths
from ecaug_feast.datasets import load_dataset
from ecaug_feast.datasets.s3rec import BUNDLED_DIR, S3REC_END, load_s3rec
from ecaug_feast.errors import DataValidationError, EcaugError


def test_bundled_beauty_used_without_shared(monkeypatch, tmp_path):
    monkeypatch.setenv("ECAUG_SHARED_DATA", str(tmp_path / "nowhere"))
    ds = load_dataset("beauty")
    assert ds.meta["source"] == str(BUNDLED_DIR)
    s = ds.summary()
    assert (s["users"], s["items"], s["interactions"]) == (22363, 12101, 198502)
    inter = ds.interactions
    assert inter["user_id"].dtype == "int64" and inter["item_id"].dtype == "int64"
    assert str(inter["event_timestamp"].dt.tz) == "UTC"
    assert (inter["weight"] == 1.0).all()
    # every item has >= 1 attribute id >= 1
    assert ds.items["attributes"].map(lambda a: len(a) >= 1 and min(a) >= 1).all()
    with pytest.raises(EcaugError, match="only Beauty is bundled"):
        load_dataset("sports")


def test_timestamps_follow_sequence_order():
    ds = load_dataset("beauty")
    first_line = (BUNDLED_DIR / "Beauty.txt").read_text().splitlines()[0].split()
    u1 = ds.interactions[ds.interactions["user_id"] == int(first_line[0])]
    assert u1["item_id"].tolist() == [int(x) for x in first_line[1:]]
    n = len(u1)
    expected = [S3REC_END - pd.Timedelta(days=n - 1 - k) for k in range(n)]
    assert u1["event_timestamp"].tolist() == expected
    # deterministic: a second load is identical
    pd.testing.assert_frame_equal(load_dataset("beauty").interactions, ds.interactions)
    # every user ends on the same day, consecutive events are one day apart
    last = ds.interactions.groupby("user_id")["event_timestamp"].max()
    assert (last == S3REC_END).all()
    assert (ds.interactions.groupby("user_id")["event_timestamp"].diff().dropna() == pd.Timedelta(days=1)).all()


@pytest.mark.skipif(not (paths.shared_data_dir() / "amazon_s3rec" / "Toys_and_Games.txt").exists(), reason="../shared absent")
def test_toys_from_shared():
    s = load_dataset("toys").summary()
    assert (s["users"], s["items"], s["interactions"]) == (19412, 11924, 167597)


def _write(dirp: Path, seq: str, attrs: dict | str) -> Path:
    dirp.mkdir(parents=True, exist_ok=True)
    (dirp / "Beauty.txt").write_text(seq)
    (dirp / "Beauty_item2attributes.json").write_text(attrs if isinstance(attrs, str) else json.dumps(attrs))
    return dirp


@pytest.mark.parametrize(
    "seq, attrs, column, reason",
    [
        ("", {"1": [1]}, None, "empty"),
        ("1 1 2\n2 x 1\n", {"1": [1], "2": [2]}, "item_id", "not an integer"),
        ("1 1 2\n", {"1": [1]}, "attributes", "no attributes"),
        ("1 1 2\n", {"1": [1], "2": []}, "attributes", "no attributes"),
        ("1 1 2\n1 2 1\n", {"1": [1], "2": [2]}, "user_id", "duplicate key"),
        ("1 1 2\n", "{not json", None, "not valid JSON"),
    ],
)
def test_bad_s3rec_files(tmp_path, seq, attrs, column, reason):
    d = _write(tmp_path / "data", seq, attrs)
    with pytest.raises(DataValidationError, match=reason) as ei:
        load_s3rec("beauty", d)
    assert ei.value.column == column
    assert "Beauty" in ei.value.file


def test_missing_s3rec_file(tmp_path):
    with pytest.raises(DataValidationError, match="file not found"):
        load_s3rec("beauty", tmp_path)
