"""The study's training data for one history fraction: through a private Feast repo, or in memory.

The study rebuilds features from each fraction's truncated histories, so it cannot read the Feast
sources ``ecaug ingest`` wrote (they hold the full training split). With ``source="feast"``
(the one example path) each fraction gets its own Feast state dir:

1. the feature tables are written by ingest's writer (``ecaug_feast.features.build.write_features``)
   into ``<state>/feast/``;
2. ecaug's Feast repo is rendered for that state dir (``feast_io.render_repo``) and applied to a
   registry of its own (``feast_io.apply``). Offline store only: the yaml names a Redis URL that is
   never contacted (nothing is materialized, nothing read online);
3. the cells read their examples with ``get_historical_features``
   (``recommender.data.train_data_from_store``, as ``ecaug train --source feast`` does).

``source="memory"`` builds the same tables in pandas (``recommender.data.build_in_memory``); a
parity test holds the two equal row for row.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import pandas as pd

from recommender.data import TrainData

# Rendered into the private repo's feature_store.yaml because Feast needs an online store entry;
# nothing in the study materializes or reads online, so this address is never contacted.
OFFLINE_ONLY_REDIS_URL = "redis://127.0.0.1:9"
REPO_DIR = "feature_repo"


@contextlib.contextmanager
def _state_home(state: Path) -> Iterator[None]:
    """``ECAUG_HOME`` = ``state`` while Feast imports the repo definitions (their parquet paths and
    the synthetic placeholder run are taken from it); restored afterwards."""
    old = os.environ.get("ECAUG_HOME")
    os.environ["ECAUG_HOME"] = str(state)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ECAUG_HOME", None)
        else:
            os.environ["ECAUG_HOME"] = old


def write_feast_repo(state: str | Path, train: pd.DataFrame, items: pd.DataFrame, name: str) -> Path:
    """Write the feature tables of ``train`` (training events only) with ingest's writer into
    ``<state>/feast/``, render ecaug's Feast repo for ``state`` and apply it to its own registry.
    Returns the repo folder. No negatives are sampled: the study's examples are the positives."""
    from ecaug_feast import feast_io
    from ecaug_feast.datasets.store import ProcessedDataset
    from ecaug_feast.features.build import write_features
    from ecaug_feast.synth_store import ensure_sources

    state = Path(state).resolve()
    state.mkdir(parents=True, exist_ok=True)
    with _state_home(state):
        data = ProcessedDataset(name=name, interactions=train.assign(split="train"), items=items, users=None, meta={}, path=state)
        write_features(data, neg_per_pos=0, out_dir=state / "feast")
        ensure_sources()  # the synthetic views' (empty) sources, so `feast apply` validates them
        repo = feast_io.render_repo(state / REPO_DIR, state_dir=state, redis_url=OFFLINE_ONLY_REDIS_URL)
        feast_io.apply(repo)
    return repo


def read_feast_data(state: str | Path, train: pd.DataFrame, items: pd.DataFrame, valid: pd.DataFrame | None) -> TrainData:
    """TrainData of the repo :func:`write_feast_repo` made in ``state`` for the same ``train``:
    examples and serving rows through ``get_historical_features`` on its offline store."""
    from ecaug_feast import feast_io
    from recommender.data import train_data_from_store

    state = Path(state)
    repo = state / REPO_DIR
    store = feast_io.get_store(repo)
    ti = pd.read_parquet(state / "feast" / "train_interactions.parquet")
    item_rows = pd.read_parquet(state / "feast" / "item_features.parquet")
    return train_data_from_store(store, ti[ti["label"] == 1], train, valid, items, item_rows,
                                 {"source": "feast", "feast_repo": str(repo)})


def train_data(source: str, train: pd.DataFrame, items: pd.DataFrame, valid: pd.DataFrame | None,
               feast_state: str | Path | None = None) -> TrainData:
    """The study's TrainData for one truncated training frame: ``feast`` reads the repo written
    by :func:`write_feast_repo` into ``feast_state``; ``memory`` builds the same in pandas."""
    from ecaug_feast.errors import EcaugError
    from recommender.data import build_in_memory

    if source == "memory":
        return build_in_memory(train, items, valid)
    if source == "feast":
        if feast_state is None:
            raise EcaugError("the feast source needs the private Feast repo (write_feast_repo) first")
        return read_feast_data(feast_state, train, items, valid)
    raise EcaugError(f"--source must be feast or memory, got {source!r}")
