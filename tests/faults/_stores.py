"""Helpers of the fault tests that need a store of their own: a private state dir with a slice of
Beauty ingested (and, on request, its own embedded Redis, applied and materialized), gate-passing
fake runs, and Redis hashes read field by field."""

from __future__ import annotations

import contextlib
import os
from types import SimpleNamespace
from typing import Iterator

import numpy as np
import pandas as pd
from redis_hashes import hashes  # noqa: F401  (re-exported: the fault tests import it from here)


@contextlib.contextmanager
def private_store(home, users: int, online: bool = True) -> Iterator[SimpleNamespace]:
    """``ECAUG_HOME=home`` with ``users`` Beauty users ingested; ``online``: its own Redis, the
    Feast repo applied and materialized. The environment is restored afterwards."""
    from ecaug_feast import feast_io
    from ecaug_feast.datasets import load_dataset, subset_users
    from ecaug_feast.datasets.store import load_processed
    from ecaug_feast.features.ingest import ingest_dataset
    from ecaug_feast.redis_server import EmbeddedRedis, free_port

    old = {k: os.environ.get(k) for k in ("ECAUG_HOME", "ECAUG_REDIS_URL")}
    server = EmbeddedRedis.for_state(home, port=free_port()) if online else None
    url = server.start() if server else None
    os.environ["ECAUG_HOME"] = str(home)
    if url:
        os.environ["ECAUG_REDIS_URL"] = url
    try:
        ds = subset_users(load_dataset("beauty"), users)
        ingest_dataset(ds)
        repo = None
        if url:
            repo = feast_io.render_repo(home / "feature_repo", state_dir=home, redis_url=url)
            feast_io.apply(repo)
            feast_io.materialize(repo)
        yield SimpleNamespace(home=home, url=url, repo=repo, data=load_processed(ds.name))
    finally:
        if server:
            server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def fake_run(n: int = 30, base: pd.DataFrame | None = None, activate: bool = False, gate: str = "pass",
             reserved: tuple[str, int] | None = None) -> str:
    """A run of ``n`` synthetic users whose gate says ``gate`` (``base``: feature rows to copy,
    else rows shaped like real ones; ``reserved``: a ``(run_id, seq)`` from ``new_run_id``, else
    a new one); the GAN is not what these tests are about."""
    from ecaug_feast import synth_store

    rid, seq = reserved or synth_store.new_run_id()
    if base is None:
        base = pd.DataFrame({
            "event_timestamp": pd.date_range("2014-01-01", periods=n, freq="h", tz="UTC"),
            "n_interactions": np.arange(n) % 7, "days_since_last": np.full(n, 1.5, "float32"),
            "recent_items": [[1, 2]] * n, "top_attributes": [[3]] * n,
            "attr_diversity": np.full(n, 0.5, "float32"), "mean_item_popularity": np.full(n, 2.0, "float32"),
            "item_id": np.arange(n) % 5 + 1})
    acc = base.head(n).reset_index(drop=True).copy()
    acc["user_id"] = synth_store.user_id_start(seq) + np.arange(len(acc), dtype=np.int64)
    acc["label"], acc["confidence"] = 1, np.float32(0.9)
    acc["is_synthetic"], acc["run_id"], acc["generator_version"] = True, rid, "test/1"
    synth_store.write_run(rid, seq, acc, {"gate": gate, "gate_reasons": [] if gate == "pass" else ["test"]})
    if activate:
        synth_store.activate(rid)
    return rid
