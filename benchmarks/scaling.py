"""How cost grows with data: each pipeline stage at 1x, 4x (and optionally 16x) the Beauty volume.

    .venv/bin/python benchmarks/scaling.py --json                 # 1x and 4x
    .venv/bin/python benchmarks/scaling.py --scales 1 4 16 --json

Scaled data (documented method): ``k`` copies of Beauty. Copy ``r`` gets fresh user ids
(``u + r*U``) and its own block of the item catalogue (``i + r*I``, item rows duplicated with the
same attributes and the same event times), so every user keeps the exact shape of the sequence
it was copied from, users and items grow k-fold, and the interaction density per user and per
item stays Beauty's. (Shared attribute vocabulary: attributes do not grow.)

Stages, each in its own subprocess (so peak RSS belongs to one stage; ``--stage`` runs one):
``ingest`` (split + feature tables + parquet, :func:`ecaug_feast.features.ingest.ingest_dataset`),
``materialize`` (Feast apply + materialize into an embedded Redis), ``train_epoch`` (one epoch of
the sequence model, :func:`recommender.seq_train.train_seq`, 1 thread, no validation),
``index`` (checkpoint load + FAISS item index, ``load_bundle``), ``recommend`` (services + app
built, then ``/recommend`` through FastAPI's TestClient: median of 20 calls).

For each stage: seconds, peak RSS (``ru_maxrss`` of the stage's process), the RSS after the
imports (so the stage's own share is visible) and the 1-minute load average at the stage's start
and end (the machine may be shared: a figure taken under load is slower than the code). Growth exponent: the log-log slope of seconds
(and of peak RSS above the import baseline) against the number of users, fitted over the scales
run; projection to 10M and 100M users is ``value * (target_users / users)**slope`` from the
largest scale. The first stage whose projected memory passes ``--machine-gb`` or whose time
passes ``--hours`` hours breaks one machine; the table names the engine that takes it over.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("ingest", "materialize", "train_epoch", "index", "recommend")
TAKEOVER = {
    "ingest": "Spark offline store (offline_store: type: spark) for the feature tables",
    "materialize": "Feast spark.engine batch materialization into Redis Cluster",
    "train_epoch": "TorchRec DMP under torchrun on GPUs (nccl), sharded tables",
    "index": "FAISS IVF/HNSW (or IVF-PQ) index, built offline, sharded",
    "recommend": "more serving replicas; Redis Cluster online store",
}
TARGETS = (10_000_000, 100_000_000)
MODEL = "scaling"


def _rss_mb() -> float:
    """Current RSS of this process (MB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _name(k: float) -> str:
    return "beauty_x" + f"{k:g}".replace(".", "p")


def scaled_beauty(k: float):
    """``k`` copies of Beauty with fresh user ids and remapped item ids (see the module doc);
    ``k`` < 1: the first ``k`` share of the users (and the items they touched)."""
    import pandas as pd

    from ecaug_feast.datasets import load_dataset, subset_users
    from ecaug_feast.datasets.base import Dataset

    ds = load_dataset("beauty")
    if k < 1:
        sub = subset_users(ds, int(ds.interactions["user_id"].max() * k))
        return Dataset(name=_name(k), interactions=sub.interactions, items=sub.items, meta=sub.meta)
    k = int(k)
    n_u, n_i = int(ds.interactions["user_id"].max()), int(ds.items["item_id"].max())
    inter = pd.concat([ds.interactions.assign(user_id=ds.interactions["user_id"] + r * n_u,
                                              item_id=ds.interactions["item_id"] + r * n_i) for r in range(k)],
                      ignore_index=True)
    items = pd.concat([ds.items.assign(item_id=ds.items["item_id"] + r * n_i) for r in range(k)], ignore_index=True)
    return Dataset(name=_name(k), interactions=inter, items=items, meta={**ds.meta, "scaled_copies": k})


def _redis(home: Path) -> tuple[object, str]:
    from ecaug_feast.redis_server import EmbeddedRedis, free_port

    server = EmbeddedRedis.for_state(home, port=free_port())
    return server, server.start()


def run_stage(stage: str, k: float, home: Path) -> dict:
    """Run one stage for scale ``k`` in this process; returns its figures."""
    os.environ["ECAUG_HOME"] = str(home)
    import torch

    torch.set_num_threads(1)
    from ecaug_feast import feast_io
    from ecaug_feast.datasets.store import load_processed

    name = _name(k)
    extra: dict = {}
    if stage == "ingest":
        ds = scaled_beauty(k)
        extra = {"users": int(ds.interactions["user_id"].nunique()), "items": len(ds.items), "interactions": len(ds.interactions)}
        from ecaug_feast.features.ingest import ingest_dataset

        base = _rss_mb()
        t = time.perf_counter()
        ingest_dataset(ds)
    elif stage == "materialize":
        server, url = _redis(home)
        try:
            repo = feast_io.render_repo(home / "feature_repo", state_dir=home, redis_url=url)
            feast_io.apply(repo)
            base = _rss_mb()
            t = time.perf_counter()
            mat = feast_io.materialize(repo)
            seconds = time.perf_counter() - t
            extra = {"users_written": mat["views"]["user_features"]["entities_written"]}
        finally:
            server.stop()  # SHUTDOWN SAVE: the recommend stage reloads the rows
        return _figures(seconds, base, extra)
    elif stage == "train_epoch":
        from recommender.checkpoint import save_checkpoint
        from recommender.data import build_in_memory
        from recommender.seq_train import SeqTrainConfig, catalog_of, config_dict, seq_config_for, train_seq

        data = load_processed(name)
        td = build_in_memory(data.train, data.items)
        cfg = seq_config_for(td, embedding_dim=32)
        base = _rss_mb()
        t = time.perf_counter()
        res = train_seq(td, None, cfg, SeqTrainConfig(epochs=1, threads=1, seed=0))
        seconds = time.perf_counter() - t
        state = res.state if res.state is not None else res.model.state_dict()
        save_checkpoint(home / "models" / MODEL, state, cfg, catalog_of(td), train=config_dict(SeqTrainConfig(epochs=1)),
                        data={"dataset": name})
        return _figures(seconds, base, {"examples_per_s": round(res.examples_per_s)})
    elif stage == "index":
        from recommender.serving.loader import load_bundle

        data = load_processed(name)
        pop = data.train["item_id"].value_counts()
        base = _rss_mb()
        t = time.perf_counter()
        bundle = load_bundle(home / "models" / MODEL, pop)
        extra = {"indexed_items": len(bundle.index)}
    elif stage == "recommend":
        from fastapi.testclient import TestClient

        from recommender.serving.app import create_app
        from recommender.serving.wiring import build_services, configure_threads

        server, url = _redis(home)
        try:
            configure_threads(1)
            repo = feast_io.render_repo(home / "feature_repo", state_dir=home, redis_url=url)
            base = _rss_mb()
            t0 = time.perf_counter()
            services = build_services(MODEL, store=feast_io.get_store(repo), poll_s=3600)
            uids = load_processed(name).train["user_id"].drop_duplicates().sample(20, random_state=0).tolist()
            with TestClient(create_app(services)) as client:
                startup = time.perf_counter() - t0
                lat = []
                for u in uids:
                    t = time.perf_counter()
                    r = client.get("/recommend", params={"user_id": int(u), "k": 10})
                    lat.append(time.perf_counter() - t)
                    assert r.status_code == 200 and not r.json()["degraded"], r.text
        finally:
            server.stop()
        lat.sort()
        return _figures(lat[len(lat) // 2], base, {"startup_s": round(startup, 2)})
    else:
        raise SystemExit(f"unknown stage {stage!r} (one of {', '.join(STAGES)})")
    return _figures(time.perf_counter() - t, base, extra)


def _figures(seconds: float, base_mb: float, extra: dict) -> dict:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": round(seconds, 4), "peak_rss_mb": round(peak, 1), "base_rss_mb": round(base_mb, 1), **extra}


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(y) on log(x) (None with fewer than two usable points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else None


def _solve(n0: float, ratio: float, exponent: float) -> float | None:
    """Users at which ``value * (n / n0) ** exponent`` reaches ``ratio`` times today's value;
    None when that lies beyond any float (a near-flat stage)."""
    try:
        return n0 * ratio ** (1 / exponent)
    except OverflowError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", type=float, nargs="+", default=[1, 4], help="multiples of Beauty (< 1: a share of its users)")
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--stage-timeout", type=float, default=600, help="seconds one stage may take")
    ap.add_argument("--machine-gb", type=float, default=128, help="memory of the one machine (projection)")
    ap.add_argument("--hours", type=float, default=24, help="wall time one stage may take on it (projection)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--previous", help="an earlier --json output: its scales join the fit (run scales one at a time)")
    ap.add_argument("--stage", help=argparse.SUPPRESS)  # internal: run one stage here
    ap.add_argument("--home", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.stage:
        print(json.dumps(run_stage(a.stage, a.scales[0], Path(a.home))))
        return 0

    results: dict[float, dict] = {}
    known_users: dict[float, int] = {}
    if a.previous:
        for key, rec in json.loads(Path(a.previous).read_text())["scales"].items():
            rec = dict(rec)
            known_users[float(key)] = rec.pop("users", None)
            results[float(key)] = {st: v for st, v in rec.items() if "seconds" in v}
    for k in a.scales:
        results[k] = {}
        with tempfile.TemporaryDirectory(prefix=f"ecaug-scaling-{_name(k)}-") as home:
            for stage in a.stages:
                cmd = [sys.executable, __file__, "--stage", stage, "--scales", f"{k:g}", "--home", home]
                load0 = os.getloadavg()[0]  # shared machine: each figure carries the load it ran under
                try:
                    p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.stage_timeout)
                except subprocess.TimeoutExpired:
                    results[k][stage] = {"error": f"over {a.stage_timeout:.0f}s"}
                    print(f"x{k} {stage}: over {a.stage_timeout:.0f}s", file=sys.stderr)
                    break  # later stages need this one's output
                if p.returncode != 0:
                    results[k][stage] = {"error": (p.stderr.strip().splitlines() or ["?"])[-1][:300]}
                    print(f"x{k} {stage}: failed: {results[k][stage]['error']}", file=sys.stderr)
                    break
                results[k][stage] = json.loads(p.stdout.strip().splitlines()[-1])
                results[k][stage]["loadavg_1m"] = [round(load0, 2), round(os.getloadavg()[0], 2)]  # start, end
                print(f"x{k} {stage}: {results[k][stage]}", file=sys.stderr)
    a.scales = sorted(set(a.scales) | set(results))
    users = {k: results[k].get("ingest", {}).get("users") or known_users.get(k) for k in a.scales}
    table = []
    for stage in a.stages:
        ks = [k for k in a.scales if "seconds" in results[k].get(stage, {}) and users[k]]
        xs = [float(users[k]) for k in ks]
        t_slope = slope(xs, [results[k][stage]["seconds"] for k in ks])
        m_slope = slope(xs, [results[k][stage]["peak_rss_mb"] - results[k][stage]["base_rss_mb"] for k in ks])
        row = {"stage": stage, "time_exponent": None if t_slope is None else round(t_slope, 2),
               "memory_exponent": None if m_slope is None else round(m_slope, 2)}
        if ks:
            top = results[ks[-1]][stage]
            for n in TARGETS:
                f = n / xs[-1]
                row[f"seconds_at_{n}"] = round(top["seconds"] * f ** t_slope) if t_slope is not None else None
                own = max(top["peak_rss_mb"] - top["base_rss_mb"], 1.0)
                row[f"gb_at_{n}"] = round((top["base_rss_mb"] + own * f ** m_slope) / 1024, 1) if m_slope is not None else None
        table.append(row)
    breaks = None  # the stage that passes a limit at the fewest users (solving the fitted power law)
    for row in table:
        ks = [k for k in a.scales if "seconds" in results[k].get(row["stage"], {}) and users[k]]
        if not ks:
            continue
        top, n0 = results[ks[-1]][row["stage"]], float(users[ks[-1]])
        own = max(top["peak_rss_mb"] - top["base_rss_mb"], 1.0)
        limits = []
        # a near-flat stage (exponent ~0) never reaches a limit: its power overflows, so it is skipped
        if row["time_exponent"] and row["time_exponent"] > 0:
            limits.append((_solve(n0, a.hours * 3600 / top["seconds"], row["time_exponent"]), f"time > {a.hours:g} h"))
        if row["memory_exponent"] and row["memory_exponent"] > 0:
            room = a.machine_gb * 1024 - top["base_rss_mb"]
            limits.append((_solve(n0, room / own, row["memory_exponent"]), f"memory > {a.machine_gb:g} GB"))
        for n, why in limits:
            if n is None:
                continue
            if breaks is None or n < breaks["users"]:
                breaks = {"users": int(n), "stage": row["stage"], "why": why, "engine": TAKEOVER[row["stage"]]}
    out = {"scales": {f"{k:g}": {"users": users[k], **results[k]} for k in a.scales}, "growth": table,
           "first_to_break": breaks, "machine_gb": a.machine_gb, "hours": a.hours,
           "method": "k copies of Beauty: fresh user ids, remapped item ids (own catalogue block per copy)"}
    if a.json:
        print(json.dumps(out))  # one line: the last stdout line is the JSON object
    else:
        for row in table:
            print(row)
        print("first to break:", breaks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
