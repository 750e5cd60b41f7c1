"""Fault benchmark (issue 12): a table of bad inputs and faults, each run as a real ``ecaug``
process against a temp ``ECAUG_HOME``, and requests served by ``ecaug serve`` while its Redis
stops and comes back on another port.

    python benchmarks/faults.py [--json] [--users 300] [--only NAME[,NAME...]] [--skip-outage]

Set-up (once): an embedded Redis, the first ``--users`` Beauty users ingested, Feast applied and
materialized, a one-epoch checkpoint, a tiny second dataset. Each case then runs in its own copy
of that home (so a case that deletes everything cannot spoil the next), with ``ECAUG_REDIS_URL``
pointing at the set-up Redis unless the case needs the embedded server.

Each outcome is classified:
- ``clean``: what should fail failed with exit 2 and one ``error:`` line (click's usage message
  for usage errors), no traceback; what should work worked;
- ``traceback``: a Python traceback reached the user;
- ``accepted``: bad input or a fault went through with exit 0 (silent wrong data);
- ``other``: a non-zero exit without a traceback that is not one clean line, or a hang;
- and, separately, ``data_lost``: a file of the home that the case must not touch is gone or
  changed, or an innocent process was killed; ``leaked``: a secret appeared in the output.

Outage: ``ecaug serve`` (embedded Redis, ``server.json`` mode) gets a bounded loop of
``/recommend`` requests for known users on loopback, while its Redis is stopped and restarted on a
new port: requests ok / degraded / failed per phase, and seconds until answers are non-degraded.

Figures (goals): tracebacks 0, data lost 0, leaked 0; failed requests 0 during the outage.
Runs nice'd on a shared 2-core machine; about 2-3 minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
ECAUG = str(Path(sys.executable).with_name("ecaug"))
SECRET = "s3cret-pw-4711"


# ------------------------------------------------------------------------------------ helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ecaug(args: list[str], env: dict[str, str], timeout: float = 240) -> tuple[int, str, str, float]:
    """``ecaug ARGS`` as a process: (exit code, stdout, stderr, seconds); 124 on timeout."""
    t0 = time.perf_counter()
    # its own process group: a timeout ends the command and everything it started (serve's workers)
    p = subprocess.Popen([ECAUG, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err, time.perf_counter() - t0
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return 124, out or "", err or "", time.perf_counter() - t0


def must(args: list[str], env: dict[str, str], timeout: float = 600) -> str:
    rc, out, err, _ = ecaug(args, env, timeout)
    if rc != 0:
        raise SystemExit(f"set-up step failed: ecaug {' '.join(args)} (exit {rc})\n{err[-2000:]}")
    return out


def snapshot(home: Path, parts: tuple[str, ...] = ("datasets", "feast", "models", "runs")) -> dict[str, str]:
    """sha1 of every file under the given folders of a home (the data a case must not lose)."""
    out: dict[str, str] = {}
    for part in parts:
        base = home / part
        if not base.exists():
            continue
        for p in sorted(base.rglob("*")):
            if p.is_file() and not p.name.startswith(".") and ".tmp" not in p.name:
                out[str(p.relative_to(home))] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


@dataclass
class Case:
    name: str
    args: list[str]
    expect: str = "error"  # "error" | "usage" | "ok"
    half: str = "b"  # which half of issue 12 (a: names/pids/runs/ingest atomicity, b: the rest)
    embedded: bool = False  # run against the embedded Redis (no ECAUG_REDIS_URL)
    prepare: Callable[[Path, dict[str, str]], Any] | None = None  # (home, env) -> context
    keep: tuple[str, ...] = ("datasets", "feast", "models", "runs")  # folders that must survive
    check: Callable[[Path, Any, str], str | None] | None = None  # extra harm check -> reason
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 240
    says: str | None = None  # the output must contain this (else "other": the right outcome, the wrong words)
    stop_redis: bool = False  # stop the case home's embedded Redis afterwards (a case that started one)


def classify(case: Case, rc: int, out: str, err: str) -> str:
    if "Traceback (most recent call last)" in err:
        return "traceback"
    if case.expect == "ok":
        return "clean" if rc == 0 else "other"
    if rc == 0:
        return "accepted"
    if rc == 2 and case.expect == "usage":
        return "clean" if "Usage:" in err and "Error:" in err else "other"
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    return "clean" if rc == 2 and len(lines) == 1 else "other"


# ------------------------------------------------------------------------------------ inputs
def _csv(home: Path, name: str, rows: list[tuple[Any, Any, str]]) -> Path:
    p = home.parent / f"{home.name}-{name}.csv"
    p.write_text("u,i,t\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows), encoding="utf-8")
    return p


def _events(times: list[str]) -> list[tuple[int, int, str]]:
    return [(1 + k % 3, 10 + k % 5, t) for k, t in enumerate(times)]


def _ingest_csv(times: list[str], map_: str = "user=u,item=i,timestamp=t", name: str = "shop"):
    def prepare(home: Path, env: dict[str, str]) -> list[str]:
        return ["ingest", "--interactions", str(_csv(home, "events", _events(times))), "--map", map_, "--name", name]
    return prepare


def _ingest_parquet(kind: str):
    def prepare(home: Path, env: dict[str, str]) -> list[str]:
        import numpy as np
        import pandas as pd

        p = home.parent / f"{home.name}-events.parquet"
        t = pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC")
        if kind == "list_items":
            df = pd.DataFrame({"u": [1, 1, 2, 2, 3, 3], "t": t,
                               "i": [np.array([1, 2]), np.array([3]), np.array([1, 2]), np.array([4]), np.array([5]), np.array([3])]})
        else:  # categorical user ids (parquet dictionary encoding)
            df = pd.DataFrame({"u": pd.Categorical(["a", "a", "b", "b", "c", "c"]), "i": [1, 2, 1, 3, 2, 3], "t": t})
        df.to_parquet(p)
        return ["ingest", "--interactions", str(p), "--map", "user=u,item=i,timestamp=t", "--name", "shop"]
    return prepare


def _corrupt_manifest(home: Path, env: dict[str, str]) -> list[str]:
    run = home / "runs" / "20240101-000000-abcd"
    run.mkdir(parents=True, exist_ok=True)
    (run / "manifest.json").write_text('{"seq": 1, "gate": "pa', encoding="utf-8")
    return ["runs", "show", run.name]


def _corrupt_parquet(home: Path, env: dict[str, str]) -> list[str]:
    (home / "datasets" / "beauty" / "interactions.parquet").write_bytes(b"PAR1 not parquet PAR1")
    return ["train", "--dataset", "beauty", "--source", "memory", "--epochs", "1", "--name", "x"]


def _full_disk(home: Path, env: dict[str, str]) -> list[str] | None:
    """ECAUG_HOME on a 600 KB tmpfs (needs mount rights; the case is skipped without them)."""
    disk = home.parent / f"{home.name}-disk"
    disk.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)], capture_output=True).returncode != 0:
        return None
    env["ECAUG_HOME"] = str(disk / "home")
    env["_UMOUNT"] = str(disk)
    return ["ingest", "--dataset", "beauty", "--max-users", "3000"]


def _stale_pid(home: Path, env: dict[str, str]) -> subprocess.Popen:
    """server.json naming an innocent process (and a port where no Redis answers)."""
    innocent = subprocess.Popen(["sleep", "300"])
    d = home / "redis"
    d.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (d / "server.json").write_text(json.dumps({"pid": innocent.pid, "port": port, "url": f"redis://127.0.0.1:{port}/0",
                                               "host": "127.0.0.1"}))
    return innocent


def _innocent_alive(home: Path, ctx: Any, out: str) -> str | None:
    alive = ctx.poll() is None
    ctx.kill()
    ctx.wait()
    return None if alive else "an unrelated process named by a stale pid file was killed"


def _rollback_abs(home: Path, env: dict[str, str]) -> list[str]:
    outside = home.parent / f"{home.name}-outside"
    (outside).mkdir()
    (outside / "manifest.json").write_text(json.dumps({"seq": 99, "gate": "pass"}))
    return ["runs", "rollback", "--to", str(outside)]


def _active_unchanged(home: Path, ctx: Any, out: str) -> str | None:
    """``runs/active`` is a symlink to the active run: it must not point outside ``runs/``."""
    act = home / "runs" / "active"
    if not act.is_symlink():
        return None
    target = (act.parent / os.readlink(act)).resolve()
    inside = target == (home / "runs").resolve() or (home / "runs").resolve() in target.parents
    return None if inside else f"runs/active now points at {target}"


def _tiny_catalogue_in_feast(home: Path, env: dict[str, str]) -> list[str]:
    """Feast's sources hold the tiny dataset (its item_features view: the catalogue serve reads),
    the checkpoint was trained on Beauty: the item ids would point at other items."""
    must(["ingest", "--interactions", str(home.parent / "base-tiny.csv"), "--map", "user=u,item=i,timestamp=t",
          "--name", "tiny"], env)
    must(["apply"], env)  # the copied registry names the set-up home's sources: register this home's
    return ["serve", "--model", "real", "--port", str(free_port())]


def _no_secret(home: Path, ctx: Any, out: str) -> str | None:
    return "leaked" if SECRET in out else None


def cases(users: int) -> list[Case]:
    iso_dmy = ["2024-01-05", "2024-01-06", "2024-02-01", "13/04/2024", "03/04/2024", "2024-05-01"]
    return [
        # ---- half b: silent wrong data (item 6)
        Case("mixed ISO and dd/mm timestamps", [], prepare=_ingest_csv(iso_dmy)),
        Case("ambiguous dd/mm vs mm/dd", [], prepare=_ingest_csv(["01/02/2024", "03/04/2024", "05/06/2024"])),
        Case("data wholly before 1970", [], prepare=_ingest_csv(["1960-01-01", "1961-02-03", "1962-03-04"])),
        Case("data in the future", [], prepare=_ingest_csv(["2100-01-01", "2100-02-03", "2100-03-04"])),
        Case("parquet item column of lists", [], prepare=_ingest_parquet("list_items")),
        Case("--map user=a,user=b", [], prepare=_ingest_csv(["2024-01-01"] * 3, map_="user=u,user=i,item=i,timestamp=t")),
        # ---- half b: tracebacks (item 7)
        Case("categorical user id in parquet", [], expect="ok", prepare=_ingest_parquet("categorical"),
             keep=("datasets", "models", "runs")),  # a good ingest replaces feast/'s sources
        Case("disk full during ingest", [], prepare=_full_disk),
        Case("corrupt run manifest: runs show", [], prepare=_corrupt_manifest),
        Case("corrupt processed parquet: train", [], prepare=_corrupt_parquet, keep=("feast", "models", "runs")),
        # serve start-up imports torch, torchrec, Feast and reads the offline store before it can
        # compare catalogues: ~40 s quiet, 90-150 s on a loaded 2-core machine
        Case("catalog mismatch at serve start-up", [], prepare=_tiny_catalogue_in_feast, timeout=240),
        Case("training on a tiny dataset", ["train", "--dataset", "tiny", "--source", "memory", "--epochs", "1"]),
        Case("mistyped option: train --modle x", ["train", "--modle", "x"], expect="usage"),
        Case("mistyped command: ecaug nosuch", ["nosuch"], expect="usage"),
        # ---- half b: exposure (item 8)
        Case("password in ECAUG_REDIS_URL: redis status --json", ["redis", "status", "--json"], expect="ok_or_1",
             env={"ECAUG_REDIS_URL": f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"}, check=_no_secret),
        Case("password in ECAUG_REDIS_URL: error message", ["redis", "start"],
             env={"ECAUG_REDIS_URL": f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"}, check=_no_secret),
        # ---- half a: names, pids, runs (items 1-3)
        Case("train --name ..", ["train", "--dataset", "beauty", "--source", "memory", "--epochs", "1",
                                 "--batch-size", "256", "--dim", "8", "--name", ".."], half="a"),
        Case("train --name .", ["train", "--dataset", "beauty", "--source", "memory", "--epochs", "1",
                                "--batch-size", "256", "--dim", "8", "--name", "."], half="a"),
        Case("ingest --name .", [], half="a", prepare=_ingest_csv(["2024-01-01", "2024-01-02", "2024-01-03"], name=".")),
        Case("ingest --name ..", [], half="a", prepare=_ingest_csv(["2024-01-01", "2024-01-02", "2024-01-03"], name="..")),
        Case("runs rollback --to /abs/dir", [], half="a", prepare=_rollback_abs, check=_active_unchanged),
        Case("runs rollback --to ../x", ["runs", "rollback", "--to", "../x"], half="a", check=_active_unchanged),
        Case("redis stop with a stale pid", ["redis", "stop"], half="a", embedded=True, expect="any",
             prepare=_stale_pid, check=_innocent_alive),
    ]


# ------------------------------------------------------------------------------------ issue 32: exposure, URLs, serve
_CHILDREN: list[subprocess.Popen] = []  # processes the cases start (protected Redis servers), ended at exit


def _protected_redis(password: str) -> int:
    """A real redis-server with ``requirepass``; returns its port."""
    from ecaug_feast.redis_server import redis_binary

    port = free_port()
    d = Path(tempfile.mkdtemp(prefix="ecaug-faults-pwredis-"))
    _CHILDREN.append(subprocess.Popen([redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d),
                                       "--save", "", "--appendonly", "no", "--requirepass", password],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return port
        time.sleep(0.05)
    raise RuntimeError("the password-protected redis-server did not start")


def _with_protected_redis(args: list[str], url: str):
    """``url`` (``{port}`` filled in) as ECAUG_REDIS_URL, pointing at a fresh protected Redis."""
    def prepare(home: Path, env: dict[str, str]) -> list[str]:
        env["ECAUG_REDIS_URL"] = url.format(port=_protected_redis(PW_SPECIAL))
        return args
    return prepare


def _home_is_a_file(home: Path, env: dict[str, str]) -> list[str]:
    f = home.parent / f"{home.name}-a-file"
    f.write_text("not a folder\n", encoding="utf-8")
    env["ECAUG_HOME"] = str(f)
    return ["apply"]


def _file_named_token(home: Path, env: dict[str, str]) -> list[str]:
    d = home.parent / f"{home.name}-in"
    d.mkdir()
    (d / "token").write_text("u,i,t\n1,2,2024-01-01\n", encoding="utf-8")
    return ["ingest", "--interactions", str(d / "token"), "--map", "user=u,item=i,timestamp=t", "--name", "shop"]


PW_SPECIAL = "p@ss:w/rd%7-" + SECRET  # needs %-encoding in a URL; holds SECRET, so a leak is seen
_PW_ENC = urllib.parse.quote(PW_SPECIAL, safe="")


def serving_cases() -> list[Case]:
    """Issue 32 items 6, 7, 9, 10 (exposure, one URL reader, tracebacks). Items 8 and 11 (/metrics,
    lockout, a port in use) need a running server: :func:`serve_probes`."""
    bad = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"
    return [
        Case("doctor: password in ECAUG_REDIS_URL (text)", ["doctor", "--no-import"], half="32", expect="ok_or_1",
             env={"ECAUG_REDIS_URL": bad}, check=_no_secret),
        Case("doctor --json: password in ECAUG_REDIS_URL", ["doctor", "--no-import", "--json"], half="32",
             expect="ok_or_1", env={"ECAUG_REDIS_URL": bad}, check=_no_secret),
        Case("?password= URL (%-encoded): materialize", [], half="32", expect="ok", keep=("datasets", "models", "runs"),
             prepare=_with_protected_redis(["materialize"], "redis://127.0.0.1:{port}/0?password=" + _PW_ENC), check=_no_secret),
        Case("%-encoded password in the URL: redis status", [], half="32", expect="ok",
             prepare=_with_protected_redis(["redis", "status"], f"redis://:{_PW_ENC}@127.0.0.1:{{port}}/0"), check=_no_secret),
        Case("wrong Redis password: materialize", [], half="32", says="authentication failed",
             prepare=_with_protected_redis(["materialize"], f"redis://:wrong-{SECRET}@127.0.0.1:{{port}}/0"), check=_no_secret),
        Case("bad port in ECAUG_REDIS_URL: materialize", ["materialize"], half="32", says="bad port",
             env={"ECAUG_REDIS_URL": "redis://127.0.0.1:99999/0"}),
        Case("bad port in ECAUG_REDIS_URL: redis status", ["redis", "status"], half="32", says="bad port",
             env={"ECAUG_REDIS_URL": "redis://127.0.0.1:abc/0"}),
        Case("bad scheme in ECAUG_REDIS_URL: apply", ["apply"], half="32", says="unsupported scheme",
             env={"ECAUG_REDIS_URL": "http://127.0.0.1:6379/0"}),
        Case("ECAUG_HOME is a file", [], half="32", says="is a file, not a folder", prepare=_home_is_a_file),
        Case("a file named token: no over-redaction", [], half="32", says="token: unsupported file type",
             prepare=_file_named_token),
    ]


def serve_probes(base: str, port: int, env: dict[str, str], admin_token: str) -> list[dict[str, Any]]:
    """Cases against a running ``ecaug serve`` (admin token set, no metrics token): /metrics needs a
    token; 13 bad admin tokens lock out their sender only, never the right token; a second
    ``ecaug serve`` on the same port is one line (exit 2) and announces nothing."""
    import urllib.error
    import urllib.request

    def call(path: str, token: str | None = None, method: str = "GET") -> int:
        req = urllib.request.Request(base + path, method=method,
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    out = []

    def row(name: str, ok: bool, detail: str, leaked: bool = False, secs: float = 0.0) -> None:
        out.append({"case": name, "half": "32", "outcome": "clean" if ok else "accepted", "data_lost": False,
                    "leaked": leaked, "seconds": round(secs, 1), "stderr_tail": detail[:240]})

    codes = (call("/metrics"), call("/metrics", "guess"), call("/metrics", admin_token))
    row("/metrics without a token", codes[:2] == (401, 403) and codes[2] == 200, f"/metrics: {codes}")
    bad = [call("/admin/reload", f"guess{i}", "POST") for i in range(13)]
    right = call("/admin/reload", admin_token, "POST")
    row("13 bad admin tokens, then the right one", right == 200 and set(bad) <= {403, 429},
        f"bad: {bad[:3]}..{bad[-3:]}, right token: {right}")
    # the lockout counts per worker process: at most rate x workers bad tokens a minute get a 403
    more = [call("/admin/reload", f"more{i}", "POST") for i in range(40)]
    right = call("/admin/reload", admin_token, "POST")
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    row("53 bad admin tokens from one address: locked out, the right token still served",
        429 in more and more.count(403) <= 10 * workers and right == 200,
        f"403s: {more.count(403)} of 40 (at most 10 a minute per worker, {workers} workers), last: {more[-5:]}, right token: {right}")
    rc, o, e, secs = ecaug(["serve", "--port", str(port)], env, timeout=240)
    ok = rc == 2 and "in use" in e and "serving" not in o + e and "Traceback" not in e
    r = {"case": "ecaug serve on a port in use", "half": "32", "exit": rc, "data_lost": False, "leaked": SECRET in o + e,
         "outcome": "traceback" if "Traceback" in e else ("clean" if ok else "other"), "seconds": round(secs, 1),
         "stderr_tail": ([ln for ln in e.splitlines() if ln.strip()] or [""])[-1][:240]}
    out.append(r)
    return out


# ------------------------------------------------------------------------------------ issue 32: data
# (refresh input, string ids, timestamp units, runs, crash repair). Crash cases run on the case
# home's own embedded Redis (flushed state, never the shared one) and kill ``ecaug`` with SIGKILL
# at a chosen view through benchmarks/kill_at.py.
KILL_AT = str(ROOT / "benchmarks" / "kill_at.py")
FAKE_RUN = """
import sys, numpy as np, pandas as pd
from ecaug_feast import synth_store
uf = pd.read_parquet(sys.argv[1]).head(int(sys.argv[2]))
rid, seq = synth_store.new_run_id()
acc = uf.drop(columns=["user_id"]).assign(item_id=1).reset_index(drop=True)
acc["user_id"] = synth_store.user_id_start(seq) + np.arange(len(acc), dtype=np.int64)
acc["label"], acc["confidence"] = 1, np.float32(0.9)
acc["is_synthetic"], acc["run_id"], acc["generator_version"] = True, rid, "faults/1"
synth_store.write_run(rid, seq, acc, {"gate": "pass", "gate_reasons": []})
if sys.argv[3] == "activate":
    synth_store.activate(rid)
print(rid)
"""
QUIET_DRIFT = "".join(f"{k}: null\n" for k in ("psi", "ks", "c2st_auc", "item_js", "item_topk_overlap",
                                              "new_item_share", "label_rate_change"))


def _fake_run(home: Path, env: dict[str, str], n: int = 30, activate: bool = True) -> str:
    p = subprocess.run([sys.executable, "-c", FAKE_RUN, str(home / "feast" / "user_features.parquet"), str(n),
                        "activate" if activate else "-"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"fake run: {p.stderr[-400:]}")
    return p.stdout.strip().splitlines()[-1]


def _killed(view: str, args: list[str], env: dict[str, str]) -> None:
    p = subprocess.run([sys.executable, KILL_AT, view, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    if p.returncode != -signal.SIGKILL:
        raise RuntimeError(f"ecaug {' '.join(args)} was not killed at {view} (exit {p.returncode}): {p.stderr[-400:]}")


def _new_events(home: Path, kind: str) -> Path:
    """Refresh events: known users after the store's last event, one of them made bad."""
    import pandas as pd

    ti = pd.read_parquet(home / "feast" / "train_interactions.parquet")
    last = pd.to_datetime(ti["event_timestamp"], utc=True).max()
    users, items = sorted(ti["user_id"].unique())[:3], sorted(ti["item_id"].unique())[:3]
    ev = pd.DataFrame({"user_id": users, "item_id": items, "event_timestamp": [last + pd.Timedelta(days=d + 1) for d in range(3)]})
    if kind == "future":
        ev.loc[1, "event_timestamp"] = pd.Timestamp("2099-01-01", tz="UTC")
    elif kind == "stranger":
        ev.loc[1, "user_id"] = int(ti["user_id"].max()) + 1000
    elif kind == "late":
        ev.loc[1, "event_timestamp"] = pd.to_datetime(ti["event_timestamp"], utc=True).min() + pd.Timedelta(seconds=1)
    p = home.parent / f"{home.name}-events.csv"
    ev.to_csv(p, index=False)
    return p


def _refresh_events(kind: str):
    def prepare(home: Path, env: dict[str, str]) -> list[str]:
        _fake_run(home, env)
        return ["refresh", "--events", str(_new_events(home, kind))]
    return prepare


def _string_ids(home: Path, env: dict[str, str]) -> list[str]:
    rows = [("007", 1, "2024-01-01"), ("7", 2, "2024-01-02"), ("0007", 1, "2024-01-03"),
            ("007", 2, "2024-01-04"), ("7", 1, "2024-01-05"), ("0007", 2, "2024-01-06")]
    return ["ingest", "--interactions", str(_csv(home, "ids", rows)), "--map", "user=u,item=i,timestamp=t", "--name", "ids"]


def _three_users(home: Path, ctx: Any, out: str) -> str | None:
    import pandas as pd

    umap = pd.read_parquet(home / "datasets" / "ids" / "user_map.parquet")
    got = sorted(umap["raw_user_id"].astype(str))
    return None if got == ["0007", "007", "7"] else f"user ids merged: {got}"


def _ms_rows(home: Path) -> Path:
    return _csv(home, "ms", [(1 + k % 3, 1 + k % 2, str(1_700_000_000_000 + k * 86_400_000)) for k in range(6)])


def _ms_as_ns(home: Path, env: dict[str, str]) -> list[str]:
    m = home.parent / f"{home.name}-map.yaml"
    m.write_text(f"interactions: {_ms_rows(home)}\ncolumns: {{user: u, item: i, timestamp: t}}\ntimestamp_unit: ns\n")
    return ["ingest", "--mapping", str(m), "--name", "shop"]


def _names_ms(home: Path, ctx: Any, out: str) -> str | None:
    return None if "'ms'" in out else "the error does not name the unit that fits (ms)"


def _unknown_unit(home: Path, env: dict[str, str]) -> list[str]:
    return ["ingest", "--interactions", str(_ms_rows(home)), "--map", "user=u,item=i,timestamp=t,timestamp_unit=sec"]


def _map_unit(home: Path, env: dict[str, str]) -> list[str]:
    return ["ingest", "--interactions", str(_ms_rows(home)), "--map", "user=u,item=i,timestamp=t,timestamp_unit=ms",
            "--name", "shop"]


def _broken_run(home: Path, env: dict[str, str]) -> list[str]:
    _corrupt_manifest(home, env)
    return ["runs", "list"]


def _listed_broken(home: Path, ctx: Any, out: str) -> str | None:
    return None if "20240101-000000-abcd  BROKEN" in out else "a run with a corrupt manifest is not listed as broken"


def _case_redis(home: Path) -> Any:
    import redis

    return redis.Redis.from_url(json.loads((home / "redis" / "server.json").read_text())["url"])


def _hashes(home: Path, fields: tuple[bytes, ...]) -> dict[bytes, dict[bytes, bytes]]:
    r = _case_redis(home)
    out = {}
    for k in r.scan_iter(count=1000):
        h = r.hgetall(k)
        if any(f in h for f in fields):
            out[k] = h
    return out


SYNTH_TS = (b"_ts:user_features_synth", b"_ts:interactions_synth")
REAL_TS = (b"_ts:user_features", b"_ts:item_features")


def _deleted_active_run(home: Path, env: dict[str, str]) -> list[str]:
    rid = _fake_run(home, env, activate=False)
    must(["runs", "rollback", "--to", rid], env)  # active and published into the case's own Redis
    shutil.rmtree(home / "runs" / rid)
    return ["runs", "rollback"]


def _no_synth_keys(home: Path, ctx: Any, out: str) -> str | None:
    n = len(_hashes(home, SYNTH_TS))
    return None if n == 0 else f"{n} orphan synthetic keys left in Redis"


def _case_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECAUG_")}
    return {**env, "ECAUG_HOME": str(home)}


def _online_matches_clean(home: Path, ctx: Any, out: str) -> str | None:
    """No intent left, and Redis' real views equal a clean full materialize of the same store."""
    left = [p.name for p in (home / "intents").glob("*.json")] if (home / "intents").exists() else []
    if left:
        return f"intents still pending: {left}"
    repaired = _hashes(home, REAL_TS)
    _case_redis(home).flushdb()
    must(["materialize"], _case_env(home))
    clean = _hashes(home, REAL_TS)
    return None if repaired == clean else f"{sum(1 for k in clean if repaired.get(k) != clean[k])} keys differ from a clean run"


def _killed_materialize(home: Path, env: dict[str, str]) -> list[str]:
    must(["apply"], env)  # the copied registry names the set-up home's sources: this home's own
    _killed("user_features", ["materialize"], env)  # item_features written, user_features not
    return ["repair"]


def _killed_publish(home: Path, env: dict[str, str]) -> list[str]:
    a, b = _fake_run(home, env, activate=False), _fake_run(home, env, activate=False)
    must(["runs", "rollback", "--to", a], env)
    _killed("user_features_synth", ["runs", "rollback", "--to", b], env)
    return ["repair"]


def _publish_repaired(home: Path, ctx: Any, out: str) -> str | None:
    n = len(_hashes(home, (SYNTH_TS[0],)))
    return None if n == 30 else f"{n} synthetic users online after repair (want the active run's 30)"


def _killed_refresh(home: Path, env: dict[str, str]) -> list[str]:
    _fake_run(home, env)
    must(["apply"], env)
    must(["materialize"], env)
    quiet = home.parent / f"{home.name}-quiet.yaml"
    quiet.write_text(QUIET_DRIFT)
    args = ["refresh", "--events", str(_new_events(home, "good")), "--config", str(quiet)]
    _killed("user_features", args, env)  # appended, Redis not yet loaded
    return args  # the same refresh again converges


def _refresh_converged(home: Path, ctx: Any, out: str) -> str | None:
    """The rerun appended nothing twice, and Redis equals a clean materialize."""
    import pandas as pd

    n = len(pd.read_parquet(home / "feast" / "current" / "appended_events.parquet"))
    return f"{n} events on record, 3 appended" if n != 3 else _online_matches_clean(home, ctx, out)


ONLINE_KEEP = ("datasets", "models")  # feast/registry.db records each materialization (a legitimate change)


def data_cases(users: int) -> list[Case]:
    """Issue 32 (data): refresh input, ids, units, runs, crash repair."""
    return [
        Case("refresh: an event dated 2099", [], half="32", prepare=_refresh_events("future"), keep=("datasets", "feast", "models")),
        Case("refresh: an event of an unknown user", [], half="32", prepare=_refresh_events("stranger"),
             keep=("datasets", "feast", "models")),
        Case("refresh: an event before the last event", [], half="32", prepare=_refresh_events("late"),
             keep=("datasets", "feast", "models")),
        Case("ingest: user ids 007, 7 and 0007", [], expect="ok", half="32", prepare=_string_ids, keep=("models", "runs"),
             check=_three_users),
        Case("ingest: ms epochs read with timestamp_unit ns", [], half="32", prepare=_ms_as_ns, check=_names_ms),
        Case("ingest: unknown timestamp_unit", [], half="32", prepare=_unknown_unit),
        Case("ingest: --map timestamp_unit=ms", [], expect="ok", half="32", prepare=_map_unit, keep=("models", "runs")),
        Case("runs list: corrupt manifest listed as broken", [], expect="ok", half="32", prepare=_broken_run, check=_listed_broken),
        Case("runs rollback after deleting the active run's folder", [], expect="ok", half="32", embedded=True, stop_redis=True,
             prepare=_deleted_active_run, keep=ONLINE_KEEP, check=_no_synth_keys),
        Case("kill -9 during materialize, then ecaug repair", [], expect="ok", half="32", embedded=True, stop_redis=True,
             prepare=_killed_materialize, keep=ONLINE_KEEP, check=_online_matches_clean),
        Case("kill -9 during publish, then ecaug repair", [], expect="ok", half="32", embedded=True, stop_redis=True,
             prepare=_killed_publish, keep=ONLINE_KEEP, check=_publish_repaired),
        Case("kill -9 during refresh, then the same refresh again", [], expect="ok", half="32", embedded=True, stop_redis=True,
             prepare=_killed_refresh, keep=ONLINE_KEEP, check=_refresh_converged),
    ]


def run_case(case: Case, base: Path, work: Path, base_env: dict[str, str], i: int) -> dict[str, Any]:
    home = work / f"case{i:02d}"
    shutil.copytree(base, home, symlinks=True, ignore=shutil.ignore_patterns("redis"))  # runs/active is a relative link
    env = {**base_env, "ECAUG_HOME": str(home), **case.env}
    if case.embedded:
        env.pop("ECAUG_REDIS_URL", None)
    ctx: Any = None
    args = list(case.args)
    if case.prepare is not None:
        ctx = case.prepare(home, env)
        if isinstance(ctx, list):
            args = ctx
        elif ctx is None and case.name.startswith("disk full"):
            return {"case": case.name, "half": case.half, "outcome": "skipped", "reason": "cannot mount a tmpfs here"}
    before = snapshot(home, case.keep)
    rc, out, err, secs = ecaug(args, env, case.timeout)
    if "_UMOUNT" in env:
        subprocess.run(["umount", env["_UMOUNT"]], check=False)
    if case.expect == "ok_or_1":  # status of an unreachable server: exit 1 by design
        outcome = "traceback" if "Traceback" in err else ("clean" if rc in (0, 1) else "other")
    elif case.expect == "any":
        outcome = "traceback" if "Traceback" in err else ("clean" if rc in (0, 1, 2) else "other")
    else:
        outcome = classify(case, rc, out, err)
    if rc == 124:
        outcome = "other"
    elif case.says and outcome == "clean" and case.says not in out + err:
        outcome = "other"  # the right exit, the wrong words (e.g. "no Redis answers" for a wrong password)
    after = snapshot(home, case.keep) if home.exists() else {}
    lost = sorted(k for k, v in before.items() if after.get(k) != v)
    try:
        harm = case.check(home, ctx, out + err) if case.check else None
    finally:
        if case.stop_redis:
            subprocess.run([ECAUG, "redis", "stop"], env=env, capture_output=True, timeout=60)
    leaked = SECRET in out + err
    err_lines = [ln for ln in err.splitlines() if ln.strip()]
    return {
        "case": case.name, "half": case.half, "args": args[:3], "exit": rc, "outcome": outcome,
        "data_lost": bool(lost) or (harm is not None and harm != "leaked"), "lost_files": lost[:5], "harm": harm,
        "leaked": leaked, "seconds": round(secs, 1), "stderr_tail": (err_lines[-1] if err_lines else "")[:240],
    }


# ------------------------------------------------------------------------------------ outage
def outage(base: Path, base_env: dict[str, str], users: list[int]) -> dict[str, Any]:
    """``ecaug serve`` on the embedded Redis of ``base``; Redis stopped, restarted on a new port."""
    import urllib.error
    import urllib.request

    env = {**base_env, "ECAUG_HOME": str(base)}
    env.pop("ECAUG_REDIS_URL", None)
    port = free_port()
    admin = "admin-" + SECRET  # the probes' admin token (never printed: it holds SECRET)
    # the log goes to a file: an unread pipe fills up (N workers' torchrec warnings) and blocks the server
    log_file = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([ECAUG, "serve", "--model", "real", "--port", str(port)], env={**env, "ECAUG_ADMIN_TOKEN": admin},
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log_file, text=True)
    probes: list[dict[str, Any]] = []
    url = f"http://127.0.0.1:{port}"
    counts: dict[str, dict[str, int]] = {}

    def get(uid: int) -> str:
        try:
            with urllib.request.urlopen(f"{url}/recommend?user_id={uid}&k=10", timeout=5) as r:
                body = json.loads(r.read())
            return "degraded" if body.get("degraded") else "ok"
        except (urllib.error.URLError, OSError, ValueError):
            return "failed"

    def burst(phase: str, n: int, stop_when_ok: bool = False, limit_s: float = 30.0) -> float:
        c = counts.setdefault(phase, {"ok": 0, "degraded": 0, "failed": 0})
        t0 = time.perf_counter()
        for k in range(n):
            res = get(users[k % len(users)])
            c[res] += 1
            if stop_when_ok and res == "ok":
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > limit_s:
                break
            if stop_when_ok:
                time.sleep(0.05)
        return time.perf_counter() - t0

    try:
        deadline = time.monotonic() + 300  # N workers load their models on a loaded 2-core machine
        while get(users[0]) == "failed":
            if proc.poll() is not None or time.monotonic() > deadline:
                log_file.seek(0)
                return {"error": f"ecaug serve did not come up: {log_file.read()[-500:]}", "probes": probes}
            time.sleep(0.5)
        probes = serve_probes(url, port, env, admin)
        burst("before", 200)
        must(["redis", "stop"], env)
        burst("redis_down", 200)
        new_port = free_port()
        must(["redis", "start", "--port", str(new_port)], env)
        recover_s = burst("after_restart_new_port", 2000, stop_when_ok=True)
        recovered = counts["after_restart_new_port"]["ok"] > 0
        burst("after_recovery", 200)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    total = {k: sum(c[k] for c in counts.values()) for k in ("ok", "degraded", "failed")}
    return {"phases": counts, "total": total, "recovered": recovered,
            "seconds_to_recover": round(recover_s, 2) if recovered else None, "new_port": new_port, "probes": probes}


# ------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")
    ap.add_argument("--users", type=int, default=300, help="Beauty users in the set-up dataset")
    ap.add_argument("--only", default=None, help="comma-separated case names (substring match)")
    ap.add_argument("--skip-outage", action="store_true")
    a = ap.parse_args()
    os.nice(5)
    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="ecaug-faults-"))
    base = work / "base"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECAUG_")}
    env["ECAUG_HOME"] = str(base)
    log = (lambda s: print(s, file=sys.stderr, flush=True))
    try:
        log(f"set-up in {base}")
        redis_url = json.loads(must(["redis", "start", "--json"], env).strip().splitlines()[-1])["url"]
        must(["ingest", "--dataset", "beauty", "--max-users", str(a.users)], env)
        must(["apply"], env)
        must(["materialize"], env)
        must(["train", "--dataset", "beauty", "--source", "memory", "--epochs", "1", "--batch-size", "256",
              "--dim", "8", "--name", "real"], env)
        tiny = _csv(base, "tiny", [(1, 10, "2024-01-01"), (1, 11, "2024-01-02"), (1, 12, "2024-01-03"),
                                    (2, 10, "2024-01-04"), (2, 13, "2024-01-05"), (2, 11, "2024-01-06"),
                                    (3, 12, "2024-01-07"), (3, 10, "2024-01-08"), (3, 11, "2024-01-09")])
        must(["ingest", "--interactions", str(tiny), "--map", "user=u,item=i,timestamp=t", "--name", "tiny"], env)
        must(["ingest", "--dataset", "beauty", "--max-users", str(a.users)], env)  # beauty's sources back in feast/
        import pandas as pd

        known = sorted(pd.read_parquet(base / "datasets" / "beauty" / "interactions.parquet")["user_id"].unique().tolist())[:50]
        t_setup = time.perf_counter() - t_start
        log(f"set-up done in {t_setup:.0f} s; running cases")

        case_env = {**env, "ECAUG_REDIS_URL": redis_url}
        chosen = cases(a.users) + serving_cases() + data_cases(a.users)
        if a.only:
            keys = [k.strip() for k in a.only.split(",")]
            chosen = [c for c in chosen if any(k in c.name for k in keys)]
        results = []
        for i, case in enumerate(chosen):
            try:
                r = run_case(case, base, work, case_env, i)
            except Exception as exc:  # noqa: BLE001 - the harness, not the case: report and go on
                r = {"case": case.name, "half": case.half, "outcome": "harness_error", "data_lost": False,
                     "leaked": False, "stderr_tail": f"{type(exc).__name__}: {exc}"[:240]}
            results.append(r)
            log(f"  {r['outcome']:<9} {'LOST ' if r.get('data_lost') else ''}{'LEAK ' if r.get('leaked') else ''}"
                f"[{case.half}] {case.name}: {r.get('stderr_tail', r.get('reason', ''))[:150]}")
        out_outage = None if a.skip_outage else outage(base, env, known)
        if out_outage is not None:
            for r in out_outage.pop("probes", []):  # the running server's cases (issue 32 items 8, 11)
                results.append(r)
                log(f"  {r['outcome']:<9} {'LEAK ' if r.get('leaked') else ''}[{r['half']}] {r['case']}: {r['stderr_tail'][:150]}")
            log(f"outage: {json.dumps(out_outage)}")
    finally:
        for child in _CHILDREN:
            child.terminate()
            child.wait(timeout=10)
        subprocess.run([ECAUG, "redis", "stop"], env=env, capture_output=True)
        for p in work.glob("*-disk"):
            subprocess.run(["umount", str(p)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    tried = [r for r in results if r["outcome"] != "skipped"]

    def count(pred: Callable[[dict], bool], rows: list[dict] = tried) -> int:
        return sum(1 for r in rows if pred(r))

    figures = {
        "cases_tried": len(tried),
        "skipped": len(results) - len(tried),
        "clean": count(lambda r: r["outcome"] == "clean"),
        "tracebacks": count(lambda r: r["outcome"] == "traceback"),
        "accepted_bad_input": count(lambda r: r["outcome"] == "accepted"),
        "other": count(lambda r: r["outcome"] in ("other", "harness_error")),
        "data_lost": count(lambda r: r["data_lost"]),
        "leaked_secrets": count(lambda r: r["leaked"]),
        "by_half": {h: {"tried": count(lambda r: r["half"] == h),
                        "clean": count(lambda r: r["half"] == h and r["outcome"] == "clean" and not r["data_lost"])}
                    for h in sorted({r["half"] for r in tried})},
        "outage_requests": (out_outage or {}).get("total"),
        "outage_recovered_on_new_port": (out_outage or {}).get("recovered"),
        "outage_seconds_to_recover": (out_outage or {}).get("seconds_to_recover"),
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    print(f"cases tried {figures['cases_tried']} (skipped {figures['skipped']}): clean {figures['clean']}, "
          f"tracebacks {figures['tracebacks']} (goal 0), accepted bad input {figures['accepted_bad_input']}, "
          f"other {figures['other']}, data lost {figures['data_lost']} (goal 0), leaked {figures['leaked_secrets']} (goal 0)")
    if out_outage:
        print(f"outage: requests {figures['outage_requests']}, recovered on the new port: {figures['outage_recovered_on_new_port']} "
              f"after {figures['outage_seconds_to_recover']} s; per phase {out_outage.get('phases')}")
    if a.json:
        print(json.dumps({"figures": figures, "cases": results, "outage": out_outage}, default=str))


if __name__ == "__main__":
    main()
