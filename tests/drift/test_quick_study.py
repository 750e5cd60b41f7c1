"""The refresh's quick study on its own: a run it cannot compare never passes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ecaug_feast.jobs.refresh import SCALARS, quick_study


@dataclass
class _Run:
    """The two frames the quick study reads of a run (a real run folder is tested in
    test_refresh.py; here only the comparison rule is under test)."""

    run_id: str
    inter: pd.DataFrame
    users: pd.DataFrame

    def interactions(self) -> pd.DataFrame:
        return self.inter

    def user_features(self) -> pd.DataFrame:
        return self.users


def _examples(n: int, seed: int, uid0: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    users = pd.DataFrame({"user_id": np.arange(uid0, uid0 + n), **{c: rng.gamma(2.0, 1.0, n) for c in SCALARS}})
    label = (users[SCALARS[0]] + rng.normal(0, 0.5, n) > 2.0).astype(int)
    inter = pd.DataFrame({"user_id": users["user_id"], "item_id": rng.integers(1, 50, n), "label": label})
    return inter, users


def _run(n: int, seed: int, name: str) -> _Run:
    inter, users = _examples(n, seed, uid0=10_000 * seed)
    return _Run(name, inter, users)


def _recent() -> pd.DataFrame:
    inter, users = _examples(400, 99)
    return inter.merge(users, on="user_id")


def test_a_comparable_new_run_passes():
    """The same rows as the active run: equal figures, so it passes."""
    res = quick_study(_run(300, 2, "new"), _run(300, 2, "old"), _recent(), _recent())
    assert res["passed"], res["reasons"]


def test_a_near_empty_new_run_fails_even_though_its_figures_are_missing():
    """18 rows: no TSTR figure (NaN) and a meaningless C2ST; it used to pass because a NaN
    compared as 'not worse'."""
    res = quick_study(_run(18, 1, "new"), _run(300, 2, "old"), _recent(), _recent())
    assert res["new"]["tstr_auc"] != res["new"]["tstr_auc"]  # NaN
    assert not res["passed"]
    assert any("18 examples" in r for r in res["reasons"])
