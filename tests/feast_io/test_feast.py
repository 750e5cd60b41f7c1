"""Feast against real parts: registry, duckdb offline store, embedded Redis online store."""

from __future__ import annotations

import pandas as pd
import pytest

from ecaug_feast import feast_io
from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE
from ecaug_feast.features.build import RECENT_ITEMS

pytestmark = pytest.mark.slow


def test_registry(feast_env):
    s = feast_io.registry_summary(feast_env.store)
    assert s["entities"] == ["item", "user"]
    assert {"user_features", "item_features"} <= set(s["feature_views"])
    assert {"training", "serving"} <= set(s["feature_services"])
    mat = feast_env.materialize["views"]
    assert mat["user_features"]["entities_written"] == feast_env.data.train["user_id"].nunique() == 1500
    assert mat["item_features"]["entities_written"] == len(feast_env.data.items)


def test_online_matches_training_history(feast_env):
    train = feast_env.data.train
    uids = [1, 2, 777, 1500]
    online = feast_io.online_user_features(uids + [10**6, SYNTHETIC_USER_ID_BASE + 1], store=feast_env.store)
    assert online["user_id"].tolist()[:4] == uids
    for _, row in online.head(4).iterrows():
        ev = train[train["user_id"] == row["user_id"]]
        assert row["n_interactions"] == len(ev)
        assert list(row["recent_items"]) == ev["item_id"].tolist()[::-1][:RECENT_ITEMS]
    # unknown real id and a synthetic-space id: no values
    assert online.iloc[4:]["n_interactions"].isna().all()
    assert online.iloc[4:]["recent_items"].isna().all()


def test_historical_hand_checked(feast_env):
    data = feast_env.data
    train, valid = data.train, data.valid
    u1 = train[train["user_id"] == 1].reset_index(drop=True)  # Beauty user 1: items 1, 2, 3 in train
    assert u1["item_id"].tolist() == [1, 2, 3]
    t2 = u1.loc[1, "event_timestamp"]
    v1 = valid[valid["user_id"] == 1].iloc[0]
    pop_item2_before_t2 = int(((train["item_id"] == 2) & (train["event_timestamp"] < t2)).sum())
    pop_item4_before_v = int(((train["item_id"] == 4) & (train["event_timestamp"] < v1["event_timestamp"])).sum())
    entity_df = pd.DataFrame({
        "user_id": [1, 10**6, 1],
        "item_id": [2, 2, int(v1["item_id"])],
        "event_timestamp": [t2, t2, v1["event_timestamp"]],
    })
    out = feast_io.historical_features(entity_df, "training", store=feast_env.store)
    assert len(out) == 3 and out["user_id"].tolist() == [1, 10**6, 1]  # input order kept, unknown user kept
    r = out.iloc[0]
    assert r["n_interactions"] == 1 and list(r["recent_items"]) == [1]
    assert r["days_since_last"] == pytest.approx(1.0)
    assert r["popularity"] == pop_item2_before_t2
    assert pd.isna(out.iloc[1]["n_interactions"])  # duckdb keeps the row with nulls
    assert out.iloc[1]["popularity"] == pop_item2_before_t2  # item side still joined
    v = out.iloc[2]  # validation query sees the serving row: all 3 training events, never the valid one
    assert v["n_interactions"] == 3 and list(v["recent_items"]) == [3, 2, 1]
    assert v1["item_id"] == 4 and v["popularity"] == pop_item4_before_v


def test_render_repo(tmp_path, feast_env):
    repo = feast_io.render_repo(tmp_path / "r", state_dir=tmp_path / "state", redis_url="redis://:pw@10.0.0.5:6400/2")
    yml = (repo / "feature_store.yaml").read_text()
    assert f"path: {tmp_path / 'state' / 'feast' / 'registry.db'}" in yml
    # the password stays out of the file: Feast expands ${ECAUG_REDIS_PASSWORD} when it reads it
    assert '"10.0.0.5:6400,db=2,password=${ECAUG_REDIS_PASSWORD}"' in yml and "type: duckdb" in yml
    assert "pw@" not in yml and "password=pw" not in yml
    assert {"entities.py", "real_views.py", "services.py"} <= {p.name for p in repo.glob("*.py")}
    (repo / "gone.py").write_text("x = 1\n")
    feast_io.render_repo(repo, state_dir=tmp_path / "state", redis_url="redis://127.0.0.1:1/0")
    assert not (repo / "gone.py").exists()


def test_incremental_materialize(feast_env):
    """Incremental runs start where the previous one ended; nothing new in between -> 0 entities."""
    first = feast_io.materialize(feast_env.repo_dir, incremental=True)
    second = feast_io.materialize(feast_env.repo_dir, incremental=True)
    for view in ("user_features", "item_features"):
        assert pd.Timestamp(second["views"][view]["start"]) == pd.Timestamp(first["end"])
        assert second["views"][view]["entities_written"] == 0
    online = feast_io.online_user_features([1], store=feast_env.store)
    assert online.loc[0, "n_interactions"] == 3  # values untouched
