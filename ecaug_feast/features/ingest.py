"""``ecaug ingest`` as a function: validate -> split -> processed store -> Feast parquet sources."""

from __future__ import annotations

import shutil
import time
from typing import Any, Callable

from ecaug_feast.datasets.base import Dataset
from ecaug_feast.datasets.store import commit_processed, dataset_dir, load_processed, stage_processed
from ecaug_feast.features.build import write_features


def ingest_dataset(
    ds: Dataset,
    neg_per_pos: int = 1,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write ``ds`` to ``<state>/datasets/<name>/`` and its features to ``<state>/feast/``.

    Nothing is written for a dataset that failed validation (adapters raise before this point).
    All or nothing: the processed dataset and the Feast feature set are both prepared in hidden
    folders, then swapped in one after the other (two renames), so a failure or kill before that
    leaves the previous dataset and features intact. Returns a summary for logs and ``--json``.
    """
    t0 = time.perf_counter()
    staged = stage_processed(ds)
    try:
        data = load_processed(ds.name, path=staged)
        t1 = time.perf_counter()
        # the processed dataset is swapped in just before the feature set: a failure anywhere
        # before leaves both the previous dataset and the previous Feast sources as they were
        feats = write_features(data, neg_per_pos=neg_per_pos, seed=seed, progress=progress,
                               before_switch=lambda: commit_processed(staged, ds.name))
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)
    out_dir = dataset_dir(ds.name)
    t2 = time.perf_counter()
    return {
        "dataset": ds.summary(),
        "split": data.meta["split"],
        "processed_dir": str(out_dir),
        "features": feats,
        "seconds": {"split_and_store": round(t1 - t0, 3), "features": round(t2 - t1, 3)},
    }
