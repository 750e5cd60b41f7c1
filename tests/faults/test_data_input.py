"""Fault suite, data input (issue 32 items 1, 3, 4).

Before: a refresh event dated 2099 was appended with exit 0 and hid every later event (each later
refresh appended 0 with exit 0); an event of an unknown user was appended silently; CSV ids
``007``, ``7`` and ``0007`` ingested as one user; millisecond epochs read with
``timestamp_unit: ns`` landed within seconds of 1970 with exit 0; an unknown ``timestamp_unit``
was ignored and ``--map`` could not set the unit.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from _ecaug_cli import run_inprocess
from _stores import fake_run, private_store

DEAD_REDIS = "redis://127.0.0.1:1/0"  # a refused refresh must not need Redis


# ------------------------------------------------------------------------------------ refresh input
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A 60-user Beauty store with a (fake, gate-passing) active run; no Redis."""
    with private_store(tmp_path_factory.mktemp("input_home"), 60, online=False) as st:
        fake_run(20, activate=True)
        yield st


@pytest.fixture()
def in_store(store, monkeypatch):
    monkeypatch.setenv("ECAUG_HOME", str(store.home))
    monkeypatch.setenv("ECAUG_REDIS_URL", DEAD_REDIS)
    return store


def _train_events(store) -> pd.DataFrame:
    from ecaug_feast.features.append import store_events

    return store_events(store.home / "feast")


def _later(store, n: int = 5) -> pd.DataFrame:
    """Events of known users after the store's last event (the validation events)."""
    return store.data.valid[["user_id", "item_id", "event_timestamp"]].head(n).reset_index(drop=True)


def _refused(res, *words: str) -> str:
    assert res.clean_error, (res.code, res.err[-2000:])
    line = next(ln for ln in res.err.splitlines() if ln.startswith("error:"))
    for w in words:
        assert w in line, line
    return line


def _refresh(path: Path, capsys, monkeypatch, *extra: str):
    return run_inprocess(["refresh", "--events", str(path), *extra], capsys, monkeypatch)


def test_future_event_is_refused_and_hides_nothing(in_store, tmp_path, capsys, monkeypatch):
    before = _train_events(in_store)
    ev = _later(in_store, 3)
    ev.loc[1, "event_timestamp"] = pd.Timestamp("2099-01-01", tz="UTC")
    p = tmp_path / "future.csv"
    ev.to_csv(p, index=False)
    _refused(_refresh(p, capsys, monkeypatch), "future.csv", "'event_timestamp'", "in the future")
    from ecaug_feast import intents

    assert intents.pending(in_store.home) == []  # refused input leaves nothing to repair
    after = _train_events(in_store)
    assert len(after) == len(before) and after["event_timestamp"].max() == before["event_timestamp"].max()


def test_late_event_is_refused_unless_skip_late(in_store, tmp_path, capsys, monkeypatch):
    from ecaug_feast.features.append import append_events, read_events

    ti = _train_events(in_store)
    late = pd.DataFrame({"user_id": [int(ti["user_id"].iloc[0])], "item_id": [int(ti["item_id"].iloc[0])],
                         "event_timestamp": [ti["event_timestamp"].min() + pd.Timedelta(seconds=1)]})
    p = tmp_path / "late.csv"
    late.to_csv(p, index=False)
    _refused(_refresh(p, capsys, monkeypatch), "late.csv", "'event_timestamp'", "before the store's last event", "--skip-late")
    out = append_events(read_events(p), feast_dir=in_store.home / "feast", source=str(p), skip_late=True)
    assert out["events"] == 0 and out["skipped_late"] == 1
    assert len(_train_events(in_store)) == len(ti)


def test_unknown_user_is_refused_unless_allowed(in_store, tmp_path, capsys, monkeypatch):
    from ecaug_feast.features.append import append_events, read_events

    ev = _later(in_store, 2)
    stranger = int(_train_events(in_store)["user_id"].max()) + 1000
    ev.loc[1, "user_id"] = stranger
    p = tmp_path / "stranger.csv"
    ev.to_csv(p, index=False)
    _refused(_refresh(p, capsys, monkeypatch), "stranger.csv", "'user_id'", "not in the store", "--allow-new-users")
    assert stranger not in set(_train_events(in_store)["user_id"])
    out = append_events(read_events(p), feast_dir=in_store.home / "feast", source=str(p), allow_new_users=True)
    assert out["events"] == 2 and out["new_users"] == 1
    assert stranger in set(_train_events(in_store)["user_id"])

    # the same file again: nothing appended twice, nothing refused (a rerun after a crash converges)
    again = append_events(read_events(p), feast_dir=in_store.home / "feast", source=str(p))
    assert again["events"] == 0 and again["already_appended"] == 2 and again["first_already_appended"]


# ------------------------------------------------------------------------------------ ingest: ids, units
@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("ECAUG_HOME", str(h))
    return h


def test_string_ids_stay_strings(tmp_path, home, capsys, monkeypatch):
    p = tmp_path / "shop.csv"
    p.write_text("u,i,t\n" + "".join(f"{u},{i},2024-01-0{d}\n" for d, (u, i) in enumerate(
        [("007", "A1"), ("7", "A2"), ("0007", "A1"), ("007", "A2"), ("7", "A1"), ("0007", "A2"), ("07", "A1")], start=1)))
    res = run_inprocess(["ingest", "--interactions", str(p), "--map", "user=u,item=i,timestamp=t", "--name", "shop"],
                        capsys, monkeypatch)
    assert res.code == 0, res.err
    umap = pd.read_parquet(home / "datasets" / "shop" / "user_map.parquet")
    assert sorted(umap["raw_user_id"]) == ["0007", "007", "07", "7"]
    assert umap["user_id"].nunique() == 4


def _ms_csv(tmp_path: Path) -> Path:
    p = tmp_path / "ms.csv"
    ms = [1_700_000_000_000 + k * 86_400_000 for k in range(6)]
    pd.DataFrame({"u": [1, 1, 2, 2, 3, 3], "i": [1, 2, 3, 1, 2, 3], "t": ms}).to_csv(p, index=False)
    return p


def test_ms_epochs_read_as_ns_are_refused_naming_the_unit(tmp_path, home, capsys, monkeypatch):
    p = _ms_csv(tmp_path)
    mapping = tmp_path / "map.yaml"
    mapping.write_text(f"interactions: {p}\ncolumns: {{user: u, item: i, timestamp: t}}\ntimestamp_unit: ns\n")
    res = run_inprocess(["ingest", "--mapping", str(mapping), "--name", "shop"], capsys, monkeypatch)
    _refused(res, "ms.csv", "'t'", "1990", "'ns'", "timestamp_unit 'ms'")
    assert not (home / "datasets" / "shop").exists()


def test_map_sets_the_unit(tmp_path, home, capsys, monkeypatch):
    res = run_inprocess(["ingest", "--interactions", str(_ms_csv(tmp_path)), "--map",
                         "user=u,item=i,timestamp=t,timestamp_unit=ms", "--name", "shop"], capsys, monkeypatch)
    assert res.code == 0, res.err
    inter = pd.read_parquet(home / "datasets" / "shop" / "interactions.parquet")
    assert pd.to_datetime(inter["event_timestamp"], utc=True).min() == pd.Timestamp("2023-11-14 22:13:20", tz="UTC")


@pytest.mark.parametrize("where", ["--map", "mapping"])
def test_unknown_unit_is_refused(tmp_path, home, capsys, monkeypatch, where):
    p = tmp_path / "events.csv"
    p.write_text("u,i,t\n1,1,2024-01-01\n1,2,2024-01-02\n2,1,2024-01-03\n")
    if where == "--map":
        args = ["--interactions", str(p), "--map", "user=u,item=i,timestamp=t,timestamp_unit=sec"]
    else:
        m = tmp_path / "map.yaml"
        m.write_text(f"interactions: {p}\ncolumns: {{user: u, item: i, timestamp: t}}\ntimestamp_unit: sec\n")
        args = ["--mapping", str(m)]
    res = run_inprocess(["ingest", *args, "--name", "shop"], capsys, monkeypatch)
    _refused(res, "'timestamp_unit'", "unknown unit 'sec'")
