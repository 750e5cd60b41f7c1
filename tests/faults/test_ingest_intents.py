"""A fresh ``ecaug ingest`` replaces the real sources: an interrupted refresh or materialize of the
old ones is dropped, not redone by the next command (a redone refresh would append its old events
file onto the freshly ingested store). Other intents (a synthetic run's publish) stay."""

from __future__ import annotations

import pandas as pd

from ecaug_feast import intents


def test_ingest_drops_the_replaced_sources_intents(tmp_path, monkeypatch, caplog):
    from ecaug_feast.datasets import load_dataset, subset_users
    from ecaug_feast.jobs.ingest import ingest
    from ecaug_feast.jobs.workspace import Workspace

    home = tmp_path / "home"
    monkeypatch.setenv("ECAUG_HOME", str(home))
    old = tmp_path / "old_events.csv"
    pd.DataFrame({"user_id": [1], "item_id": [1], "timestamp": [1]}).to_csv(old, index=False)
    intents.record(home, "refresh", events=str(old), seed=0, first="2014-01-01T00:00:00+00:00")
    intents.record(home, "materialize", start=None, end=None, views=None, incremental=False)
    intents.record(home, "publish", run_id="r1")
    ws = Workspace.from_env()
    assert ws.state_dir == home
    with caplog.at_level("WARNING"):
        out = ingest(ws, subset_users(load_dataset("beauty"), 20))
    assert sorted(out["dropped_intents"]) == ["materialize", "refresh"]
    assert "dropped the interrupted" in caplog.text
    assert [r["step"] for r in intents.pending(home)] == ["publish"]
