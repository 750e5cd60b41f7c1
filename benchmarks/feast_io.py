"""Benchmark the Feast data path on Amazon Beauty: ingest, apply, materialize, online reads.

    .venv/bin/python benchmarks/feast_io.py [--users N] [--reads 500] [--json]

Runs in a fresh temp ``ECAUG_HOME`` with its own embedded Redis (or ``$ECAUG_REDIS_URL``), so it
never touches your state. Reports materialize throughput (entities written per second per view), the
offline point-in-time join of every training row through the ``training`` service, and ``get_online_features`` latency for the ``serving`` service (user_features, 6 features incl.
two int64 lists) with 1 and 100 entities per call: p50/p99 over ``--reads`` calls after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def pct(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1000.0
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3), "mean_ms": round(float(a.mean()), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=None, help="Only user ids <= N (default: all 22,363).")
    ap.add_argument("--reads", type=int, default=500, help="Online calls per batch size.")
    ap.add_argument("--json", action="store_true", help="Print one JSON object as the last stdout line.")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="ecaug-bench-"))
    os.environ["ECAUG_HOME"] = str(home)

    from ecaug_feast import feast_io
    from ecaug_feast.datasets import load_dataset, subset_users
    from ecaug_feast.features.ingest import ingest_dataset
    from ecaug_feast.redis_server import EmbeddedRedis, external_url, free_port

    server = None
    url = external_url()
    if not url:
        server = EmbeddedRedis.for_state(home, port=free_port())
        url = server.start()
    res: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}, "redis": url}
    try:
        t0 = time.perf_counter()
        ds = load_dataset("beauty")
        if args.users:
            ds = subset_users(ds, args.users)
        ing = ingest_dataset(ds)
        res["ingest"] = {"seconds": round(time.perf_counter() - t0, 2), "rows": ing["features"]["rows"], "interactions": len(ds.interactions)}

        repo = feast_io.render_repo(home / "feature_repo", state_dir=home, redis_url=url)
        t0 = time.perf_counter()
        import feast  # noqa: F401  (timed on its own: importing Feast dominates a cold `apply`)

        res["import_feast_seconds"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        feast_io.apply(repo)
        res["apply_seconds"] = round(time.perf_counter() - t0, 2)
        mat = feast_io.materialize(repo)
        res["materialize"] = {
            v: {"entities": d["entities_written"], "source_rows": d["source_rows_in_window"], "seconds": d["seconds"],
                "entities_per_s": d["entities_per_s"], "source_rows_per_s": round(d["source_rows_in_window"] / d["seconds"], 1)}
            for v, d in mat["views"].items()
        }

        store = feast_io.get_store(repo)
        # offline: the recommender's training read (point-in-time join of every training row)
        import pandas as pd

        ent = pd.read_parquet(home / "feast" / "train_interactions.parquet")
        t0 = time.perf_counter()
        hist = feast_io.historical_features(ent, "training", store=store)
        dt = time.perf_counter() - t0
        res["historical_training"] = {"rows": len(hist), "seconds": round(dt, 2), "rows_per_s": round(len(hist) / dt, 1)}

        service = store.get_feature_service("serving")
        users = ds.interactions["user_id"].unique()
        rng = np.random.default_rng(0)
        for n in (1, 100):
            rows_list = [[{"user_id": int(u)} for u in rng.choice(users, size=n, replace=False)] for _ in range(args.reads + 20)]
            times = []
            for i, rows in enumerate(rows_list):
                t = time.perf_counter()
                out = store.get_online_features(features=service, entity_rows=rows).to_dict()
                dt = time.perf_counter() - t
                if i >= 20:  # warm-up
                    times.append(dt)
                assert len(out["user_id"]) == n and None not in out["n_interactions"]
            res[f"online_{n}"] = {"calls": len(times), **pct(times)}
    finally:
        if server is not None:
            server.stop()

    if args.json:
        print(json.dumps(res, separators=(",", ":")))
    else:
        print(f"ingest: {res['ingest']['seconds']} s for {res['ingest']['interactions']} interactions -> {res['ingest']['rows']}")
        print(f"apply: {res['apply_seconds']} s")
        for v, d in res["materialize"].items():
            print(f"materialize {v}: {d['entities']} entities ({d['source_rows']} source rows) in {d['seconds']} s = {d['entities_per_s']} entities/s")
        h = res["historical_training"]
        print(f"get_historical_features training: {h['rows']} rows in {h['seconds']} s = {h['rows_per_s']} rows/s")
        for n in (1, 100):
            d = res[f"online_{n}"]
            print(f"get_online_features serving x{n}: p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms ({d['calls']} calls)")


if __name__ == "__main__":
    main()
