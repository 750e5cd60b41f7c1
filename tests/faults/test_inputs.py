"""Fault suite, bad input (issue 12 items 6 and 7): data that used to ingest silently wrong, or
crash with a traceback, now stops with one line naming file, column and reason (exit 2), and
nothing is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _ecaug_cli import run_inprocess

MAP = "user=u,item=i,timestamp=t"


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private state dir: a case that wrongly succeeds must not touch the session's data."""
    h = tmp_path / "home"
    monkeypatch.setenv("ECAUG_HOME", str(h))
    return h


def _ingest(path: Path, capsys, monkeypatch, *extra: str, map_: str = MAP):
    return run_inprocess(["ingest", "--interactions", str(path), "--map", map_, "--name", "shop", *extra], capsys, monkeypatch)


def _csv(tmp_path: Path, times: list[str]) -> Path:
    n = len(times)
    df = pd.DataFrame({"u": [1 + k % 3 for k in range(n)], "i": [10 + k % 5 for k in range(n)], "t": times})
    p = tmp_path / "events.csv"
    df.to_csv(p, index=False)
    return p


def _assert_refused(res, *words: str, home: Path | None = None) -> None:
    assert res.clean_error, (res.code, res.err)
    line = next(ln for ln in res.err.splitlines() if ln.startswith("error:"))
    for w in words:
        assert w in line, line
    if home is not None:  # nothing published for a refused dataset
        assert not (home / "datasets" / "shop").exists()
        assert not (home / "feast" / "user_features.parquet").exists()


def test_mixed_iso_and_day_first_timestamps_are_refused(tmp_path, home, capsys, monkeypatch):
    # old code: read "03/04/2024" month-first (March 4) beside ISO rows, exit 0
    times = ["2024-01-05", "2024-01-06", "2024-02-01", "13/04/2024", "03/04/2024", "2024-05-01"]
    res = _ingest(_csv(tmp_path, times), capsys, monkeypatch)
    _assert_refused(res, "events.csv", "'t'", "mixed timestamp formats", home=home)


def test_ambiguous_day_month_order_is_refused(tmp_path, home, capsys, monkeypatch):
    times = ["01/02/2024", "03/04/2024", "05/06/2024", "07/08/2024"]
    res = _ingest(_csv(tmp_path, times), capsys, monkeypatch)
    _assert_refused(res, "events.csv", "'t'", "ambiguous dates", home=home)


def test_day_first_dates_are_read_day_first(tmp_path):
    from ecaug_feast.datasets import load_generic

    times = ["13/01/2024", "02/03/2024", "05/06/2024", "25/12/2024"]
    ds = load_generic(_csv(tmp_path, times), {"user": "u", "item": "i", "timestamp": "t"})
    got = sorted(ds.interactions["event_timestamp"].dt.strftime("%Y-%m-%d"))
    assert got == ["2024-01-13", "2024-03-02", "2024-06-05", "2024-12-25"]


@pytest.mark.parametrize("times, reason", [
    (["1960-01-01", "1961-02-03", "1962-03-04"], "before 1970"),
    (["2100-01-01", "2100-02-03", "2100-03-04"], "in the future"),
])
def test_data_outside_the_servable_time_range_is_refused(tmp_path, home, capsys, monkeypatch, times, reason):
    # old code: ingested with exit 0, then `materialize` wrote 0 entities with exit 0
    res = _ingest(_csv(tmp_path, times), capsys, monkeypatch)
    _assert_refused(res, "events.csv", "'t'", reason, home=home)


def test_millisecond_epochs_read_as_seconds_are_refused(tmp_path, home, capsys, monkeypatch):
    ms = [1_700_000_000_000 + k * 86_400_000 for k in range(6)]
    p = tmp_path / "events.csv"
    pd.DataFrame({"u": [1, 1, 2, 2, 3, 3], "i": [1, 2, 3, 1, 2, 3], "t": ms}).to_csv(p, index=False)
    res = _ingest(p, capsys, monkeypatch)
    assert res.clean_error and "'t'" in res.err, res.err


def test_parquet_item_column_holding_lists_is_refused(tmp_path, home, capsys, monkeypatch):
    # old code: every list became the same text, all items collapsed into one, exit 0
    p = tmp_path / "events.parquet"
    pd.DataFrame({
        "u": [1, 1, 2, 2, 3, 3],
        "i": [np.array([1, 2]), np.array([3]), np.array([1, 2]), np.array([4]), np.array([5]), np.array([3])],
        "t": pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC"),
    }).to_parquet(p)
    res = _ingest(p, capsys, monkeypatch)
    _assert_refused(res, "events.parquet", "'i'", "ids must be scalars", home=home)


def test_duplicate_map_key_is_refused(tmp_path, home, capsys, monkeypatch):
    # old code: `user=u,user=i` silently kept the last one
    res = _ingest(_csv(tmp_path, ["2024-01-01"] * 3), capsys, monkeypatch, map_="user=u,user=i,item=i,timestamp=t")
    _assert_refused(res, "--map", "'user' given twice", home=home)


def test_categorical_user_id_in_parquet_loads(tmp_path, home, capsys, monkeypatch):
    # old code: TypeError traceback in generic._key (np.issubdtype on a CategoricalDtype)
    p = tmp_path / "events.parquet"
    users = pd.Categorical(["a", "a", "b", "b", "c", "c", "a", "b"])
    pd.DataFrame({"u": users, "i": [1, 2, 1, 3, 2, 3, 3, 2],
                  "t": pd.date_range("2024-01-01", periods=8, freq="D", tz="UTC")}).to_parquet(p)
    from ecaug_feast.datasets import load_generic

    ds = load_generic(p, {"user": "u", "item": "i", "timestamp": "t"})
    assert ds.interactions["user_id"].nunique() == 3
    assert sorted(ds.user_map["raw_user_id"]) == ["a", "b", "c"]


def test_boolean_ids_are_refused_in_one_line(tmp_path, home, capsys, monkeypatch):
    p = tmp_path / "events.parquet"
    pd.DataFrame({"u": [True, False, True], "i": [1, 2, 3],
                  "t": pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC")}).to_parquet(p)
    res = _ingest(p, capsys, monkeypatch)
    _assert_refused(res, "events.parquet", "'u'", "ids must be integers or strings", home=home)
