"""``ecaug ingest`` as a function: validate -> split -> processed store -> Feast parquet sources."""

from __future__ import annotations

import time
from typing import Any, Callable

from ecaug_feast.datasets.base import Dataset
from ecaug_feast.datasets.store import load_processed, write_processed
from ecaug_feast.features.build import write_features


def ingest_dataset(
    ds: Dataset,
    neg_per_pos: int = 1,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write ``ds`` to ``<state>/datasets/<name>/`` and its features to ``<state>/feast/``.

    Nothing is written for a dataset that failed validation (adapters raise before this point),
    and each file appears atomically. Returns a summary for logs and ``--json``.
    """
    t0 = time.perf_counter()
    out_dir = write_processed(ds)
    data = load_processed(ds.name)
    t1 = time.perf_counter()
    feats = write_features(data, neg_per_pos=neg_per_pos, seed=seed, progress=progress)
    t2 = time.perf_counter()
    return {
        "dataset": ds.summary(),
        "split": data.meta["split"],
        "processed_dir": str(out_dir),
        "features": feats,
        "seconds": {"split_and_store": round(t1 - t0, 3), "features": round(t2 - t1, 3)},
    }
