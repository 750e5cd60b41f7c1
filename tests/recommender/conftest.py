"""Small, real inputs for the recommender tests: a slice of the bundled Beauty data."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _quiet_torchrec():
    for name in ("torchrec", "root", "fbgemm_gpu"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


@pytest.fixture(scope="session")
def beauty_small():
    """(dataset, split) for 400 Beauty users, ids as in the file."""
    from ecaug_feast.datasets import load_dataset
    from ecaug_feast.datasets.split import split_interactions

    ds = load_dataset("beauty")
    sp = split_interactions(ds)
    keep = np.arange(1, 401)
    for name in ("train", "valid", "test"):
        df = getattr(sp, name)
        setattr(sp, name, df[df["user_id"].isin(keep)].reset_index(drop=True))
    return ds, sp


@pytest.fixture(scope="session")
def small_data(beauty_small):
    from ecaug_feast.jobs.train_data import build_in_memory

    ds, sp = beauty_small
    return build_in_memory(sp.train, ds.items, sp.valid)


@pytest.fixture(scope="session")
def tiny_model() -> dict:
    """ModelConfig overrides small enough for 2 shared cores."""
    return dict(embedding_dim=8, hidden_dim=16, out_dim=8, user_buckets=512, temperature=0.1)
