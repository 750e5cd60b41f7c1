"""Split rules: leave-last-out per user, temporal cut."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecaug_feast.datasets import Dataset, load_dataset, subset_users
from ecaug_feast.datasets.split import split_interactions


def test_leave_last_out_on_beauty():
    ds = subset_users(load_dataset("beauty"), 300)
    sp = split_interactions(ds)
    last = ds.interactions.groupby("user_id").tail(1).set_index("user_id")["item_id"]
    second = ds.interactions.groupby("user_id").nth(-2).set_index("user_id")["item_id"]
    assert sp.test.set_index("user_id")["item_id"].equals(last)
    assert sp.valid.set_index("user_id")["item_id"].equals(second)
    # every train event is earlier than the user's valid event, valid earlier than test
    tv = sp.valid.set_index("user_id")["event_timestamp"]
    assert (sp.train.groupby("user_id")["event_timestamp"].max() < tv.loc[sp.train["user_id"].unique()]).all()
    assert (tv < sp.test.set_index("user_id")["event_timestamp"]).all()


def test_short_users_and_temporal():
    t = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"] * 5, utc=True)
    inter = pd.DataFrame({"user_id": np.repeat(np.arange(1, 6), 4).astype(np.int64), "item_id": np.arange(1, 21, dtype=np.int64),
                          "event_timestamp": t, "weight": 1.0})
    items = pd.DataFrame({"item_id": np.arange(1, 21, dtype=np.int64), "attributes": [[1]] * 20})
    one = inter[inter["user_id"] == 1].head(1)
    two = inter[inter["user_id"] == 2].head(2)
    sp = split_interactions(Dataset("x", pd.concat([one, two]).reset_index(drop=True), items))
    assert len(sp.train) == 2 and len(sp.test) == 1 and len(sp.valid) == 0
    sp = split_interactions(Dataset("x", inter, items, split_kind="temporal"), valid_frac=0.25, test_frac=0.25)
    assert sp.train["event_timestamp"].max() < sp.valid["event_timestamp"].min()
    assert sp.valid["event_timestamp"].max() < sp.test["event_timestamp"].min()
    assert sp.info["kind"] == "temporal" and len(sp.train) > 0
