"""A study cell's private workspace: a processed dataset and its Feast repo, written as ingest does.

Each study cell (``ecaug_feast.study.cell``) runs the product's jobs (``train``, ``augment``,
``finetune``) against a state dir of its own, so the study measures what ships. This job writes
that state: ``<state>/datasets/<name>/`` (the cell's truncated training split, the validation
half that early-stops as ``valid``, the half that chooses as ``test``) and the Feast sources of
its training events with ingest's writer (``features.build.write_features``), then renders
ecaug's repo for the state dir and applies it to a registry of its own. Offline store only: the
yaml names a Redis URL that is never contacted (nothing is materialized or read online).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from ecaug_feast import feast_io
from ecaug_feast.datasets.store import ProcessedDataset
from ecaug_feast.features.build import write_features
from ecaug_feast.synth_store import ensure_sources

# Rendered into the private repo's feature_store.yaml because Feast needs an online store entry;
# nothing in a study cell materializes or reads online, so this address is never contacted.
OFFLINE_ONLY_REDIS_URL = "redis://127.0.0.1:9"
REPO_DIR = "feature_repo"


@contextlib.contextmanager
def state_home(state: Path) -> Iterator[None]:
    """``ECAUG_HOME`` = ``state`` while the jobs run (they, and Feast's repo definitions, take
    their paths from it); restored afterwards."""
    old = os.environ.get("ECAUG_HOME")
    os.environ["ECAUG_HOME"] = str(state)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ECAUG_HOME", None)
        else:
            os.environ["ECAUG_HOME"] = old


def write_private_state(state: str | Path, name: str, train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame,
                        items: pd.DataFrame, meta: dict[str, Any] | None = None) -> Path:
    """Write dataset ``name`` (the three splits) and its Feast repo into ``state``; returns the repo.
    Call inside :func:`state_home` of the same ``state``. No negatives: the examples are positives."""
    state = Path(state).resolve()
    d = state / "datasets" / name
    d.mkdir(parents=True, exist_ok=True)
    inter = pd.concat([df.assign(split=s) for df, s in ((train, "train"), (valid, "valid"), (test, "test"))],
                      ignore_index=True)
    inter.to_parquet(d / "interactions.parquet", index=False)
    it = items[["item_id", "attributes"]].copy()
    it["attributes"] = it["attributes"].map(lambda a: np.asarray(a, dtype=np.int64))
    it.to_parquet(d / "items.parquet", index=False)
    split = {s: int((inter["split"] == s).sum()) for s in ("train", "valid", "test")}
    (d / "meta.json").write_text(json.dumps({**(meta or {}), "name": name, "split": {**(meta or {}).get("split", {}), **split}},
                                            default=str))
    data = ProcessedDataset(name=name, interactions=train.assign(split="train"), items=items, users=None, meta={}, path=d)
    write_features(data, neg_per_pos=0, out_dir=state / "feast")
    ensure_sources()  # the synthetic views' (empty) sources, so `feast apply` validates them
    repo = feast_io.render_repo(state / REPO_DIR, state_dir=state, redis_url=OFFLINE_ONLY_REDIS_URL)
    feast_io.apply(repo)
    return repo
