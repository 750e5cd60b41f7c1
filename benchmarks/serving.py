"""Serving benchmark: /recommend latency and throughput next to the bare Feast online read, and
the FAISS IVF scale check on 1M synthetic item embeddings.

    python benchmarks/serving.py [--json] [--state DIR] [--requests 2000] [--seconds 10]
                                 [--clients 1,4,16] [--load wrk|threads] [--workers N]
                                 [--ivf-items 1000000] [--skip-ivf]

Part 1 (API). State: ``--state DIR`` (e.g. the demo's ``.ecaug``) if it holds the processed
Beauty data and a checkpoint; otherwise a fresh temp state is built: full Beauty ingested, Feast
applied and materialized into an embedded Redis, and one checkpoint per architecture (``--models
sequence,bag``; untrained weights: same shapes, same compute per request). One ``ecaug serve``
per model runs as its own process on a loopback port; clients are threads of this process with
keep-alive connections.
- floor: ``store.get_online_features`` for one user, in process, for the same users
- ``/recommend`` single client, per model, interleaved request by request with the floor:
  p50/p99 client-side and server-side (``took_ms``)
- N concurrent connections for a bounded time, from ``wrk`` (Debian's ``wrk``: ``apt-get install
  -y wrk``; ``make bench`` installs it), each request a different sampled user: requests/s,
  p50/p99, errors, and the server's CPU per request (user + system time of the ``ecaug serve``
  process and its workers, from ``/proc``, over the run). Printed: the N-core limit, N cores ÷
  the CPU per request at 1 connection, and the 16-connection throughput as a % of it. wrk runs
  on the same cores as the server, so the % is a floor. (``--load threads``: the older
  in-process thread clients, with the bare online read under the same N threads.)
- the server runs ``ecaug serve``'s default workers (one per core) unless ``--workers`` is given

Part 2 (scale). 1M synthetic item embeddings (64-d, cosine) from three distributions (2000
well-separated clusters, overlapping clusters, isotropic Gaussian = no structure, IVF's worst
case), exact ``IndexFlatIP`` ground truth vs ``IndexIVFFlat`` (inner product): recall@100 and
single-query latency per ``nprobe``.

Runs nice'd on a shared 2-core machine: figures are for that machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ecaug_feast.schema import USER_FEATURE_COLUMNS, refs  # noqa: E402 - after the sys.path line

USER_REFS = refs("user_features", USER_FEATURE_COLUMNS)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(xs: list[float] | np.ndarray) -> dict[str, float]:
    a = np.asarray(xs, dtype=np.float64) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3), "n": int(len(a))}


# --------------------------------------------------------------------------------------- state
def prepare_state(state: Path | None, kinds: list[str] | None = None) -> tuple[Path, list[str], bool]:
    """Returns (state dir, checkpoint specs, trained?)."""
    if state is not None:
        os.environ["ECAUG_HOME"] = str(state.resolve())
        models = state / "models"
        ckpts = [p for p in models.iterdir() if (p / "config.json").exists() and not p.name.startswith(".")] if models.exists() else []
        if (state / "datasets" / "beauty" / "meta.json").exists() and ckpts:
            log(f"using state {state} (checkpoints: {', '.join(sorted(p.name for p in ckpts))})")
            return state, ["latest"], True
        log(f"{state}: no processed beauty + checkpoint there; building a temp state instead")
    home = Path(tempfile.mkdtemp(prefix="ecaug-bench-serving-"))
    os.environ["ECAUG_HOME"] = str(home)
    from ecaug_feast import feast_io
    from ecaug_feast.datasets import load_dataset
    from ecaug_feast.datasets.store import load_processed
    from ecaug_feast.features.ingest import ingest_dataset
    from ecaug_feast.redis_server import EmbeddedRedis, free_port

    url = EmbeddedRedis.for_state(home, port=free_port()).start()
    os.environ["ECAUG_REDIS_URL"] = url
    t = time.perf_counter()
    ingest_dataset(load_dataset("beauty"))
    repo = feast_io.render_repo(redis_url=url)
    feast_io.apply(repo)
    feast_io.materialize(repo)
    log(f"temp state {home}: Beauty ingested, applied, materialized in {time.perf_counter() - t:.0f}s")

    import torch

    from recommender.batching import ItemCatalog
    from recommender.checkpoint import save_checkpoint
    from recommender.model import ModelConfig, TwoTower

    from recommender.seq_model import SeqConfig, SeqTwoTower

    data = load_processed("beauty")
    cat = ItemCatalog.from_frame(data.items)
    specs = []
    for kind in kinds or ["sequence", "bag"]:
        torch.manual_seed(0)
        if kind == "sequence":
            cfg, model = SeqConfig(num_items=cat.num_items, num_attributes=cat.num_attributes), None
            model = SeqTwoTower(cfg, catalog=cat)
        else:
            cfg = ModelConfig(num_items=cat.num_items, num_attributes=cat.num_attributes)
            model = TwoTower(cfg)
        save_checkpoint(home / "models" / f"bench-{kind}", model.state_dict(), cfg, cat,
                        data={"dataset": "beauty"}, train={"note": "untrained: latency benchmark only"})
        specs.append(f"bench-{kind}")
    return home, specs, False


def cleanup_temp_state(state: Path) -> None:
    """Stop the embedded Redis of a temp state and delete it (never a user's --state)."""
    import shutil

    from ecaug_feast.redis_server import EmbeddedRedis

    EmbeddedRedis.for_state(state).stop()
    shutil.rmtree(state, ignore_errors=True)


def proc_cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pids(pid: int) -> list[int]:
    """``pid`` and every process below it (``ecaug serve``'s workers; Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of ``pid`` and of each of its descendants (those alive now)."""
    out = {}
    for p in server_pids(pid):
        try:
            out[p] = proc_cpu_seconds(p)
        except OSError:  # exited between the listing and the read
            pass
    return out


def tree_cpu_seconds(pid: int) -> float:
    return sum(tree_cpu(pid).values())


# Each request a different sampled user; the summary as one JSON line (wrk's Lua ``done`` hook).
WRK_LUA = """
local users = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/recommend?k=10&user_id=" .. users[(i %% #users) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d, "p50_us": %%d, "p99_us": %%d, "mean_us": %%.1f}\\n', summary.requests,
    summary.duration, e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50),
    latency:percentile(99), latency.mean))
end
"""


def run_wrk(base: str, users: list[int], connections: int, seconds: float, server_pid: int) -> dict:
    """``wrk`` with ``connections`` keep-alive connections for ``seconds`` against ``/recommend``."""
    import shutil

    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk (or run with --load threads)")
    script = Path(tempfile.mkdtemp(prefix="ecaug-wrk-")) / "recommend.lua"
    script.write_text(WRK_LUA % ",".join(str(u) for u in users), encoding="utf-8")
    cpu0 = tree_cpu(server_pid)
    cmd = ["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{seconds:g}s", "--timeout", "10s",
           "-s", str(script), base]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    used = {p: c - cpu0.get(p, 0.0) for p, c in tree_cpu(server_pid).items()}
    cpu = sum(used.values())
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if p.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed (exit {p.returncode}): {(p.stderr or p.stdout)[-500:]}")
    r = json.loads(line[len("WRKJSON "):])
    n, secs = r["requests"], r["duration_us"] / 1e6
    return {"connections": connections, "req_per_s": round(n / secs, 1), "requests": n,
            "errors": sum(r[k] for k in ("connect", "read", "write", "status", "timeout")),
            "p50_ms": round(r["p50_us"] / 1e3, 3), "p99_ms": round(r["p99_us"] / 1e3, 3),
            "mean_ms": round(r["mean_us"] / 1e3, 3), "seconds": round(secs, 2),
            "server_cpu_ms_per_request": round(cpu / max(n, 1) * 1e3, 3),
            "server_cores_used": round(cpu / secs, 2),  # below the core count: the server waited for CPU or clients
            # how the work spread over the server's processes (the supervisor, then each worker)
            "server_cpu_share_per_process": [round(c / cpu, 2) if cpu else 0.0 for c in used.values()]}


def core_limit(rows: list[dict], cores: int) -> dict:
    """The N-core limit (N cores ÷ server CPU per request at 1 connection) and the throughput at
    the most connections as a % of it."""
    one = next((r for r in rows if r["connections"] == 1), None)
    top = max(rows, key=lambda r: r["connections"])
    if one is None or not one["server_cpu_ms_per_request"]:
        return {}
    limit = cores / (one["server_cpu_ms_per_request"] / 1e3)
    return {"cores": cores, "cpu_ms_per_request_at_1": one["server_cpu_ms_per_request"], "limit_req_per_s": round(limit, 1),
            "connections": top["connections"], "req_per_s": top["req_per_s"],
            "percent_of_limit": round(100 * top["req_per_s"] / limit, 1)}


def start_server(model: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    from ecaug_feast.redis_server import free_port

    import httpx

    port = free_port()
    exe = Path(sys.executable).parent / "ecaug"
    # the server's log goes to a file: an unread pipe fills up (torchrec warns a lot) and blocks it
    log_file = open(Path(tempfile.gettempdir()) / f"ecaug-bench-serve-{port}.log", "w+b")
    proc = subprocess.Popen([str(exe), "serve", "--host", "127.0.0.1", "--port", str(port), "--model", model, *extra],
                            stdout=subprocess.DEVNULL, stderr=log_file, env=os.environ.copy())
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log_file.seek(0)
            raise SystemExit(f"ecaug serve exited: {log_file.read().decode(errors='replace')[-2000:]}")
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"ecaug serve did not become healthy in 180 s (log: {log_file.name})")


# --------------------------------------------------------------------------------------- part 1
def bench_api(args) -> dict:
    import httpx

    from ecaug_feast import feast_io
    from ecaug_feast.datasets.store import load_processed

    state, models, trained = prepare_state(Path(args.state) if args.state else None, args.models)
    data = load_processed("beauty")
    rng = np.random.default_rng(0)
    users = rng.choice(data.train["user_id"].unique(), size=min(args.users, data.train["user_id"].nunique()), replace=False)
    users = [int(u) for u in users]
    store = feast_io.get_store()

    def online_once(u: int) -> None:
        store.get_online_features(features=USER_REFS, entity_rows=[{"user_id": u}]).to_dict()

    extra = (["--threadpool"] if args.threadpool else []) + (["--workers", str(args.workers)] if args.workers else [])
    os.environ.setdefault("ECAUG_METRICS_TOKEN", "bench-" + os.urandom(12).hex())  # /metrics needs a token
    servers = [(m, *start_server(m, extra)) for m in models]
    model, proc, base = servers[0]  # the concurrent runs load the first model
    n_workers = len([p for p in server_pids(proc.pid) if "spawn_main" in _cmdline(p)]) or 1
    out: dict = {"state": str(state), "models": models, "model": model, "trained_weights": trained,
                 "handler": "threadpool" if args.threadpool else "inline (event loop)", "workers": n_workers,
                 "items": int(len(data.items)), "users_sampled": len(users)}
    try:
        clients = {m: httpx.Client(base_url=b, timeout=10) for m, _, b in servers}
        try:
            out["model_version"] = {m: c.get("/health").json()["model_version"] for m, c in clients.items()}
            for u in users[:200]:  # warm-up: connections, caches, allocator
                for c in clients.values():
                    c.get("/recommend", params={"user_id": u, "k": 10})
                online_once(u)
            # floor and every model, interleaved per request so background load hits all alike
            t_online: list[float] = []
            t_rec = {m: [] for m in clients}
            t_server = {m: [] for m in clients}
            fallbacks = {m: 0 for m in clients}
            cpu0 = {m: tree_cpu_seconds(p.pid) for m, p, _ in servers}
            for i in range(args.requests):
                u = users[i % len(users)]
                t0 = time.perf_counter()
                online_once(u)
                t_online.append(time.perf_counter() - t0)
                for m, c in clients.items():
                    t0 = time.perf_counter()
                    r = c.get("/recommend", params={"user_id": u, "k": 10})
                    t_rec[m].append(time.perf_counter() - t0)
                    body = r.json()
                    t_server[m].append(body["took_ms"] / 1e3)
                    fallbacks[m] += body["fallback"] is not None
            out["online_read_in_process"] = pct(t_online)
            out["single_client"] = {}
            for m, p, _ in servers:
                out["single_client"][m] = {
                    # CPU the server process spent per request: far less sensitive to other jobs
                    # than wall time (10 ms tick resolution, summed over all requests)
                    "server_cpu_ms_per_request": round((tree_cpu_seconds(p.pid) - cpu0[m]) / args.requests * 1e3, 3),
                    "recommend_client_side": pct(t_rec[m]),
                    "recommend_server_side": pct(t_server[m]),
                    "fallback_answers": fallbacks[m],
                }
                sc = out["single_client"][m]
                log(f"{m}: server CPU per /recommend {sc['server_cpu_ms_per_request']} ms; server-side p50 "
                    f"{sc['recommend_server_side']['p50_ms']} / p99 {sc['recommend_server_side']['p99_ms']} ms; client-side p99 "
                    f"{sc['recommend_client_side']['p99_ms']} ms")
            log(f"bare online read p50 {out['online_read_in_process']['p50_ms']} / p99 {out['online_read_in_process']['p99_ms']} ms")
        finally:
            for c in clients.values():
                c.close()

        out["concurrent"] = []
        if args.load == "wrk":
            out["load_generator"] = "wrk"
            for n in args.clients:
                row = run_wrk(base, users, n, args.seconds, proc.pid)
                out["concurrent"].append(row)
                log(f"wrk {n} connections: {row['req_per_s']} req/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
                    f"errors {row['errors']}, server CPU {row['server_cpu_ms_per_request']} ms/request "
                    f"(share per process {row['server_cpu_share_per_process']})")
            out["core_limit"] = core_limit(out["concurrent"], _cores())
        for n in (args.clients if args.load == "threads" else []):
            rec = run_concurrent(n, args.seconds, users, lambda cl, u: cl.get("/recommend", params={"user_id": u, "k": 10}), base)
            onl = run_concurrent(n, args.seconds, users, lambda cl, u: online_once(u), None)
            row = {"clients": n, "recommend": rec, "online_read_in_process": onl}
            if args.client_procs:
                row["recommend_client_processes"] = procs = run_concurrent_procs(n, args.seconds, users, base)
                log(f"{n} client processes: /recommend {procs['req_per_s']} req/s p99 {procs['p99_ms']} ms errors {procs['errors']}")
            out["concurrent"].append(row)
            log(f"{n} clients: /recommend {rec['req_per_s']} req/s p99 {rec['p99_ms']} ms errors {rec['errors']}; "
                f"online read {onl['req_per_s']} req/s")
        with httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Bearer {os.environ['ECAUG_METRICS_TOKEN']}"}) as c:
            out["server_metrics_excerpt"] = [ln for ln in c.get("/metrics").text.splitlines()
                                             if ln.startswith(("ecaug_recommend_fallbacks_total", "ecaug_recommend_stage_seconds_sum",
                                                                "ecaug_recommend_stage_seconds_count"))]
    finally:
        for _, p, _ in servers:
            p.terminate()
            p.wait(timeout=20)
        if not args.state and not args.keep_state:
            cleanup_temp_state(state)
    return out


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _http_client_proc(base: str, users: list[int], seconds: float, start_at: float) -> tuple[list[float], int]:
    """One load-generating process: keep-alive GETs of /recommend until the deadline."""
    import httpx

    lat, errors, i = [], 0, 0
    with httpx.Client(base_url=base, timeout=10) as c:
        while time.time() < start_at:
            time.sleep(0.001)
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            u = users[i % len(users)]
            i += 1
            t0 = time.perf_counter()
            try:
                if c.get("/recommend", params={"user_id": u, "k": 10}).status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            lat.append(time.perf_counter() - t0)
    return lat, errors


def run_concurrent_procs(n: int, seconds: float, users: list[int], base: str) -> dict:
    """``n`` client *processes* (no shared GIL between the clients) for ``seconds``."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    start_at = time.time() + 3.0  # let every process import httpx first
    with ProcessPoolExecutor(n, mp_context=mp.get_context("spawn")) as pool:
        futs = [pool.submit(_http_client_proc, base, users[w::n], seconds, start_at) for w in range(n)]
        res = [f.result() for f in futs]
    all_lat = [x for lat, _ in res for x in lat]
    errors = sum(e for _, e in res)
    return {"req_per_s": round(len(all_lat) / seconds, 1), "requests": len(all_lat), "errors": int(errors),
            "seconds": seconds, **{k: v for k, v in pct(all_lat).items() if k != "n"}}


def run_concurrent(n: int, seconds: float, users: list[int], call, base: str | None) -> dict:
    """``n`` threads calling ``call(client, user)`` in a loop for ``seconds``."""
    import httpx

    lat: list[list[float]] = [[] for _ in range(n)]
    errors = [0] * n
    stop = time.monotonic() + seconds

    def worker(w: int) -> None:
        client = httpx.Client(base_url=base, timeout=10) if base else None
        i = w
        try:
            while time.monotonic() < stop:
                u = users[i % len(users)]
                i += n
                t0 = time.perf_counter()
                try:
                    r = call(client, u)
                    if r is not None and r.status_code != 200:
                        errors[w] += 1
                except Exception:
                    errors[w] += 1
                lat[w].append(time.perf_counter() - t0)
        finally:
            if client:
                client.close()

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    all_lat = [x for xs in lat for x in xs]
    return {"req_per_s": round(len(all_lat) / dt, 1), "requests": len(all_lat), "errors": int(sum(errors)),
            "seconds": round(dt, 2), **{k: v for k, v in pct(all_lat).items() if k != "n"}}


# --------------------------------------------------------------------------------------- part 2
def bench_ivf(args, noise: float) -> dict:
    """``noise``: sd of the Gaussian around each of 2000 unit-variance centres (clusters overlap
    more as it grows); ``inf``: isotropic Gaussian, no structure at all (IVF's worst case)."""
    import faiss

    from recommender.serving.index import ItemIndex, recall_at_k

    n, d, nq, k = args.ivf_items, 64, args.ivf_queries, 100
    rng = np.random.default_rng(0)
    n_clusters = 2000
    centers = rng.normal(size=(n_clusters, d)).astype(np.float32)
    if not np.isfinite(noise):
        centers[:] = 0.0
        noise = 1.0
    emb = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 200_000):
        m = min(200_000, n - s)
        emb[s : s + m] = centers[rng.integers(0, n_clusters, m)] + noise * rng.normal(size=(m, d)).astype(np.float32)
    queries = centers[rng.integers(0, n_clusters, nq)] + noise * rng.normal(size=(nq, d)).astype(np.float32)
    label = "isotropic Gaussian" if not centers.any() else f"Gaussian mixture, {n_clusters} centres, noise sd {noise}"
    metric = args.ivf_metric
    if metric == "ip":
        # the sequence tower scores by raw inner product: item norms differ (popular items grow
        # longer vectors), which is what makes maximum inner-product search harder than cosine
        emb *= rng.lognormal(0.0, args.ivf_norm_sd, size=(n, 1)).astype(np.float32)
        label += f", item norms x lognormal(0, {args.ivf_norm_sd})"
    ids = np.arange(1, n + 1)
    faiss.omp_set_num_threads(os.cpu_count() or 1)  # building: use the cores
    t = time.perf_counter()
    flat = ItemIndex.build(emb, ids, metric=metric)
    exact = flat.search(queries, k).item_ids
    t_exact_batch = time.perf_counter() - t
    t = time.perf_counter()
    ivf = ItemIndex.build(emb, ids, metric=metric, kind="ivf", nlist=args.nlist)
    t_build = time.perf_counter() - t
    log(f"IVF{args.nlist} over {n} items built in {t_build:.1f}s")
    faiss.omp_set_num_threads(1)  # serving: one query, one thread

    def lat(index, reps):
        ts = []
        for i in range(reps):
            t0 = time.perf_counter()
            index.search(queries[i % nq : i % nq + 1], k)
            ts.append(time.perf_counter() - t0)
        return pct(ts)

    out = {"items": n, "dim": d, "queries": nq, "k": k, "nlist": args.nlist, "similarity": "inner product" if metric == "ip" else "cosine",
           "data": label,
           "build_seconds": round(t_build, 1), "flat_exact_build_and_batch_search_seconds": round(t_exact_batch, 1),
           "flat_exact_single_query": lat(flat, 30), "ivf": []}
    for nprobe in args.nprobe:
        ivf.nprobe = nprobe
        rec = recall_at_k(ivf.search(queries, k).item_ids, exact)
        row = {"nprobe": nprobe, "recall@100": round(rec, 4), **lat(ivf, 200)}
        out["ivf"].append(row)
        log(f"{label}: nprobe {nprobe}: recall@100 {rec:.4f}, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")
    ap.add_argument("--state", help="an ECAUG_HOME with processed beauty + a checkpoint (e.g. .ecaug)")
    ap.add_argument("--requests", type=int, default=2000, help="single-client requests")
    ap.add_argument("--users", type=int, default=1000, help="distinct users sampled")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of each concurrent run")
    ap.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16],
                    help="concurrent connections (wrk) or client threads (--load threads)")
    ap.add_argument("--load", choices=["wrk", "threads"], default="wrk",
                    help="load generator of the concurrent runs: wrk (apt-get install -y wrk) or in-process threads")
    ap.add_argument("--ivf-items", type=int, default=1_000_000)
    ap.add_argument("--ivf-queries", type=int, default=200)
    ap.add_argument("--nlist", type=int, default=1024)
    ap.add_argument("--ivf-noise", type=lambda s: [float(x) for x in s.split(",")], default=[0.6, 1.5, float("inf")],
                    help="item distributions: noise sd around 2000 centres; inf = isotropic Gaussian")
    ap.add_argument("--nprobe", type=lambda s: [int(x) for x in s.split(",")], default=[8, 16, 32, 64])
    ap.add_argument("--models", type=lambda s: [x for x in s.split(",") if x], default=["sequence", "bag"],
                    help="architectures served side by side in a temp state (first one also gets the concurrent runs)")
    ap.add_argument("--skip-ivf", action="store_true")
    ap.add_argument("--ivf-metric", choices=["cosine", "ip"], default="cosine",
                    help="cosine (bag tower) or raw inner product with unequal item norms (sequence tower)")
    ap.add_argument("--ivf-norm-sd", type=float, default=0.3, help="sd of the log item norms with --ivf-metric ip")
    ap.add_argument("--skip-api", action="store_true")
    ap.add_argument("--threadpool", action="store_true", help="serve /recommend from the thread pool")
    ap.add_argument("--client-procs", action="store_true", help="also load /recommend from N client processes")
    ap.add_argument("--workers", type=int, default=None, help="ecaug serve --workers (default: its own, one per core)")
    ap.add_argument("--keep-state", action="store_true", help="keep the temp state (and its Redis)")
    args = ap.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    from recommender.serving.wiring import configure_threads

    configure_threads(1)
    result: dict = {"benchmark": "serving", "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "machine": {"cpus": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}}
    if not args.skip_api:
        result["api"] = bench_api(args)
    if not args.skip_ivf:
        result["ivf_scale"] = [bench_ivf(args, noise) for noise in args.ivf_noise]
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    lim = (result.get("api") or {}).get("core_limit")
    if lim:
        print(f"{lim['cores']}-core limit: {lim['limit_req_per_s']} req/s ({lim['cores']} cores / "
              f"{lim['cpu_ms_per_request_at_1']} ms of server CPU per request at 1 connection); "
              f"{lim['connections']} connections: {lim['req_per_s']} req/s = {lim['percent_of_limit']} % of it (goal >= 80 %)")
    for row in (result.get("api") or {}).get("concurrent", []):
        if "connections" in row:
            print(f"  {row['connections']:>2} connections: {row['req_per_s']} req/s, p50 {row['p50_ms']} ms, "
                  f"p99 {row['p99_ms']} ms, errors {row['errors']}, server CPU {row['server_cpu_ms_per_request']} ms/request, "
                  f"server used {row['server_cores_used']} cores")
    text = json.dumps(result)
    if args.json:
        print(text)
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
