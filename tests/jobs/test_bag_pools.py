"""``jobs.bag_pools.bag_pool``: a generator's refusal is an empty pool with its reason; a bug raises."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from ecaug_feast.errors import EcaugError
from ecaug_feast.jobs import bag_pools


def _data():
    return SimpleNamespace(examples=pd.DataFrame({"user_id": [1, 2], "item_id": [3, 4]}))


def test_a_refusal_is_an_empty_pool_with_its_reason(monkeypatch):
    def refuse(data, size, seed, gan):
        raise EcaugError("SMOTE needs at least 2 rows")

    monkeypatch.setitem(bag_pools.BAG_POOLS, "smote", refuse)
    pool, info = bag_pools.bag_pool("smote", _data(), 10, 0)
    assert len(pool) == 0 and info["rows"] == 0 and info["refused"] == "SMOTE needs at least 2 rows"


def test_a_bug_in_a_pool_raises_instead_of_reading_as_no_lift(monkeypatch):
    def bug(data, size, seed, gan):
        raise KeyError("label")

    monkeypatch.setitem(bag_pools.BAG_POOLS, "smote", bug)
    with pytest.raises(KeyError):
        bag_pools.bag_pool("smote", _data(), 10, 0)
