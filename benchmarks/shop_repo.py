"""A shop's own Feast repo of about 15k users, end to end: expand, train, serve, and the lift.

    nice -n 5 .venv/bin/python benchmarks/shop_repo.py [--users 15000] [--seed 0] \
        [--out docs/results/shop-repo-2026-12-05] [--json]

Issue 31's benchmark. Needs ``../shared/data/amazon_s3rec/Beauty.txt``: its first ``--users``
users become a shop the code has never seen: shoppers keyed by UUID strings, products by
``sku-<n>`` strings, one purchase a day per history step, a file offline store, an embedded
Redis online. The repo file declares the event log ``purchases`` with its twin and the twin of
``shopper_activity`` (``recent_items: Array(String)``, the history serving reads).

Every step runs the shipped commands as a user would (stock ``feast``, ``ecaug ... --repo``), each
timed: ``feast apply``, ``feast materialize``, ``ecaug train --repo`` (real-only),
``ecaug augment --repo --events`` (the product's sequence path, gated), ``ecaug finetune --repo``
(pre-train on the mix, fine-tune on real), then ``ecaug serve --repo`` answering ``--requests``
``/recommend`` calls with shop keys (latency percentiles). The lift is the fine-tuned model's test
NDCG@10 against real-only's on the repo's own held-out last events (leave-last-out, full
ranking), one seed: the full study with intervals is issue 30's. With ``--epochs`` the real-only
model trains far less than the fine-tuned one, so a compute-matched real-only control
(``--control-epochs``, default 4 x ``--epochs``) is trained too and the lift is also given against it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from urllib.parse import urlparse
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BEAUTY = Path(os.environ.get("ECAUG_SHARED_DATA", ROOT.parent / "shared" / "data")) / "amazon_s3rec" / "Beauty.txt"

REPO_FILE = '''\
"""A shop's repo file (written by benchmarks/shop_repo.py; the code has never seen it)."""
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Int64, String

from ecaug_feast.plugin import synthetic_events, synthetic_twins

shopper = Entity(name="shopper", join_keys=["shopper_ref"], value_type=ValueType.STRING)
shopper_activity = FeatureView(
    name="shopper_activity", entities=[shopper], ttl=timedelta(days=3650), online=True,
    schema=[Field(name="shopper_ref", dtype=String), Field(name="n_purchases", dtype=Int64),
            Field(name="recent_items", dtype=Array(String))],
    source=FileSource(name="activity_source", path="data/activity.parquet", timestamp_field="seen_at"),
)
purchases = FileSource(name="purchases", path="data/purchases.parquet", timestamp_field="bought_at")
purchases_synth = synthetic_events(purchases, user_key="shopper_ref", item_key="sku", user_type=String,
                                   runs_dir="data/ecaug_runs")
shopper_activity_synth, = synthetic_twins(
    [shopper_activity], entities=[shopper], runs_dir="data/ecaug_runs",
    features={"shopper_activity": {"n_purchases": "count", "recent_items": "recent_items:50"}})
'''


def write_repo(repo: Path, users: int, redis: str, seed: int) -> dict[str, Any]:
    """The shop: Beauty's first ``users`` histories under UUID / ``sku-`` keys, dated a day apart."""
    rng = np.random.default_rng(seed)
    (repo / "data").mkdir(parents=True)
    end = datetime(2026, 6, 1, tzinfo=timezone.utc)
    rows, acts = [], []
    for line in BEAUTY.read_text().splitlines()[:users]:
        uid, *items = line.split()
        ref = str(uuid.uuid5(uuid.NAMESPACE_URL, f"shopper/{uid}"))
        start = end - timedelta(days=len(items) + int(rng.integers(0, 300)))
        at = [start + timedelta(days=k, minutes=int(rng.integers(0, 600))) for k in range(len(items))]
        rows += [{"shopper_ref": ref, "sku": f"sku-{i}", "bought_at": t} for i, t in zip(items, at)]
        # the online history: everything but the held-out last purchase (serving's view of a user)
        acts.append({"shopper_ref": ref, "seen_at": at[-2], "n_purchases": len(items) - 1,
                     "recent_items": [f"sku-{i}" for i in items[:-1]][::-1][:50]})
    events = pd.DataFrame(rows)
    events.to_parquet(repo / "data" / "purchases.parquet")
    pd.DataFrame(acts).to_parquet(repo / "data" / "activity.parquet")
    u = urlparse(redis)
    host, port = u.hostname, u.port
    (repo / "feature_store.yaml").write_text(
        "project: shop_bench\nregistry: data/registry.db\nprovider: local\n"
        "offline_store:\n  type: file\n"
        f"online_store:\n  type: redis\n  connection_string: \"{host}:{port},db=0\"\n"
        "entity_key_serialization_version: 3\n")
    (repo / "shop_repo.py").write_text(REPO_FILE)
    return {"users": int(events["shopper_ref"].nunique()), "items": int(events["sku"].nunique()),
            "events": len(events), "keys": acts[0]["shopper_ref"]}


def run(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[float, dict[str, Any]]:
    """Run one command; (wall seconds, the JSON object on its last stdout line, if any)."""
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n{p.stdout}{p.stderr}\n[rc={p.returncode} {wall:.1f}s]\n")
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd[:3])} failed (rc {p.returncode}); see {log}")
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    return wall, (json.loads(lines[-1]) if lines else {})


def ndcg(out: dict[str, Any]) -> float:
    """Test NDCG@10 from a train/finetune summary."""
    m = out.get("test") or out.get("metrics", {}).get("test") or {}
    return float(m.get("ndcg@10", m.get("NDCG@10", float("nan"))))


def serve_latency(repo: Path, env: dict[str, str], users: list[str], log: Path, port: int = 8765) -> dict[str, Any]:
    """Start ``ecaug serve --repo``, time ``/recommend`` for ``users``, stop it."""
    srv = subprocess.Popen([str(BIN / "ecaug"), "serve", "--repo", str(repo), "--port", str(port), "--workers", "1"],
                           cwd=repo, env=env, stdout=log.open("a"), stderr=subprocess.STDOUT)
    t0 = time.perf_counter()
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                break
            except OSError:
                if srv.poll() is not None or time.perf_counter() - t0 > 300:
                    raise SystemExit(f"ecaug serve --repo did not start; see {log}")
                time.sleep(0.5)
        start_s = time.perf_counter() - t0
        lat, answered, first = [], 0, None
        for u in users:
            t = time.perf_counter()
            body = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/recommend?user_id={u}&k=10", timeout=10).read())
            lat.append((time.perf_counter() - t) * 1000)
            items = body.get("items") or body.get("recommendations") or []
            answered += bool(items)
            first = first or items[:3]
        q = np.percentile(lat, [50, 99])
        return {"start_s": round(start_s, 1), "requests": len(users), "answered": answered, "p50_ms": round(float(q[0]), 2),
                "p99_ms": round(float(q[1]), 2), "example": first}
    finally:
        srv.terminate()
        srv.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=15000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs of train --repo and of each finetune stage (default: the product's, early-stopped)")
    ap.add_argument("--control-epochs", type=int, default=None,
                    help="epochs of the compute-matched real-only control (default 4 x --epochs: the fine-tune's "
                         "pre-training on real + 3x synthetic plus its fine-tuning); 0 = none")
    ap.add_argument("--out", type=Path, default=None, help="write shop_repo.json + shop_repo.md there")
    ap.add_argument("--keep", action="store_true", help="keep the temporary repo and state")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not BEAUTY.exists():
        raise SystemExit(f"{BEAUTY}: missing (needs ../shared/data)")
    from ecaug_feast.redis_server import EmbeddedRedis

    work = Path(tempfile.mkdtemp(prefix="ecaug-shop-bench-"))
    state, repo, log = work / "state", work / "repo", work / "commands.log"
    env = {**os.environ, "ECAUG_HOME": str(state), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    os.environ["ECAUG_HOME"] = str(state)
    redis = EmbeddedRedis.for_state(state)
    url = redis.start()
    try:
        shop = write_repo(repo, a.users, url, a.seed)
        ecaug, feast = str(BIN / "ecaug"), str(BIN / "feast")
        steps: dict[str, float] = {}
        steps["feast_apply"], _ = run([feast, "apply"], repo, env, log)
        steps["feast_materialize"], _ = run([feast, "materialize", "-v", "shopper_activity", "2000-01-01T00:00:00", "2026-06-02T00:00:00"], repo, env, log)
        common = ["--repo", str(repo), "--events", "purchases", "--seed", str(a.seed), "--json"]
        budget = ["--epochs", str(a.epochs)] if a.epochs else []
        partial = (a.out / "partial.json") if a.out else None
        if partial:
            a.out.mkdir(parents=True, exist_ok=True)

        def step(name: str, cmd: list[str]) -> dict[str, Any]:
            steps[name], res = run(cmd, repo, env, log)
            if partial:  # what ran so far, should the rest not finish
                partial.write_text(json.dumps({"shop": shop, "seconds": steps, name: res}, default=str))
            return res

        real = step("train_real", [ecaug, "train", *common, *budget, "--history", "shopper_activity:recent_items"])
        aug = step("augment", [ecaug, "augment", *common, "--view", "shopper_activity"])
        fine = step("finetune", [ecaug, "finetune", *common, *budget])
        # the control: real-only with about the fine-tune's compute, so extra epochs are not
        # credited to the synthetic histories
        ctrl_epochs = a.control_epochs if a.control_epochs is not None else (4 * a.epochs if a.epochs else 0)
        ctrl = (step("train_real_matched", [ecaug, "train", *common, "--epochs", str(ctrl_epochs), "--name", "real_matched"])
                if ctrl_epochs else {})
        refs = pd.read_parquet(repo / "data" / "activity.parquet")["shopper_ref"].sample(a.requests, random_state=a.seed).tolist()
        serving = serve_latency(repo, env, refs, log)
        base, tuned, matched = ndcg(real), ndcg(fine), (ndcg(ctrl) if ctrl else None)
        out = {"shop": shop, "seconds": {k: round(v, 1) for k, v in steps.items()}, "serving": serving,
               "augment": {k: aug.get(k) for k in ("run_id", "gate", "histories_accepted", "events_written", "real_events", "train_events", "c2st_auc_sequences", "exact_copy_share", "fit_seconds", "teacher") if k in aug},
               "ndcg@10": {"real_only": base, "finetuned": tuned, "real_only_matched": matched},
               "lift": (tuned / base - 1) if base else None,
               "lift_vs_matched": (tuned / matched - 1) if matched else None, "control_epochs": ctrl_epochs,
               "command": " ".join(["python", "benchmarks/shop_repo.py", *sys.argv[1:]])}
    finally:
        redis.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "shop_repo.json").write_text(json.dumps(out, indent=2, default=str))
        (a.out / "partial.json").unlink(missing_ok=True)
    print(json.dumps(out, default=str) if a.json else json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
