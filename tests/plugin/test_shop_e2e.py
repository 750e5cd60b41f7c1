"""Issue 31 item 7: a shop's own Feast repo end to end, on repos written here that ecaug's code has
never seen, with the real Feast and the real Redis.

A bookshop lends books to readers. Its repo file declares the entity ``reader`` (``reader_id``),
the view ``reader_shelf`` (``n_loans`` and ``recent_books``, the reader's last books, newest first:
a list feature), the event log ``loans`` with its twin (``synthetic_events``) and the view's twin
computed by the shop's own function ``shelf_rows``. Two variants:

- String keys (UUIDs for readers and books), ``Array(String)``, the file offline store;
- Int64 keys (large numbers, never model indices), ``Array(Int64)``, the DuckDB offline store.

The flow: stock ``feast apply`` + ``feast materialize`` of the real view; ``ecaug augment --repo R
--events loans --view reader_shelf`` (the sequence path; gate pass); the twin materialized and the
shop's real Redis keys byte-identical before and after; ``training_rows`` returns synthetic
histories; ``ecaug train --repo``; then ``ecaug serve --repo R`` (a real process) answers
``/recommend?user_id=<a reader's key>`` with the shop's book keys, none of them in the reader's
history."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, urlparse

import numpy as np
import pandas as pd
import pytest

from _shop import dump_keys, ecaug_cli, feast_cli, write_store_yaml

pytestmark = pytest.mark.slow

REPO_FILE = '''\
"""The bookshop's repo file (never seen by ecaug's code)."""
from datetime import timedelta

import pandas as pd
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Int64, String

from ecaug_feast.plugin import synthetic_events, synthetic_twins

reader = Entity(name="reader", join_keys=["reader_id"], value_type=ValueType.__USER_VT__)

reader_shelf = FeatureView(
    name="reader_shelf", entities=[reader], ttl=timedelta(days=365), online=True,
    schema=[Field(name="reader_id", dtype=__USER_T__), Field(name="n_loans", dtype=Int64),
            Field(name="recent_books", dtype=Array(__ITEM_T__))],
    source=FileSource(name="shelf_source", path="data/shelf.parquet", timestamp_field="updated_at"),
)

loans = FileSource(name="loans", path="data/loans.parquet", timestamp_field="loaned_at")
loans_synth = synthetic_events(loans, user_key="reader_id", item_key="book_id", user_type=__USER_T__,
                               item_type=__ITEM_T__, runs_dir="data/ecaug_runs")


def shelf_rows(events: pd.DataFrame) -> pd.DataFrame:
    """The bookshop's own feature code: a reader's loans and last 8 books, newest first."""
    g = events.sort_values("loaned_at", kind="stable").groupby("reader_id")
    return pd.DataFrame({"n_loans": g.size().astype("int64"),
                         "recent_books": g["book_id"].agg(lambda s: list(s)[::-1][:8])}).reset_index()


reader_shelf_synth, = synthetic_twins([reader_shelf], entities=[reader], runs_dir="data/ecaug_runs",
                                      features={"reader_shelf": shelf_rows})
'''

TINY = {"gan": dict(embedding_dim=16, num_layers=1, num_heads=1, max_len=20, mle_epochs=2, adv_steps=4, adv_batch=16,
                    batch_size=32, gen_max_len=6, threads=1, device="cpu"),
        "expand_below": 6, "n_new": 3, "synthetic_share": 0.1, "c2st_rows": 500, "max_c2st_auc": 1.0}
HISTORY = 8  # books in recent_books
TINY_TRAIN = ["--epochs", "1", "--batch-size", "32", "--dim", "16", "--json"]


def write_bookshop(repo: Path, redis_url: str, db: int, keys: str, offline: str, readers: int = 120,
                   books: int = 50) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The repo (yaml, data, repo file); returns its loans and shelf rows."""
    rng = np.random.default_rng(31)
    (repo / "data").mkdir(parents=True)
    if keys == "uuid":
        rids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(readers)]
        bids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(books)]
    else:  # large numbers: an answer of model indices (1..n) could never pass for them
        rids = [int(x) for x in rng.choice(10**11, readers, replace=False) + 10**9]  # below the synthetic range (2**40)
        bids = [int(x) for x in rng.choice(10**9, books, replace=False) + 7 * 10**9]
    pop = 1.0 / np.arange(1, books + 1) ** 0.8
    pop /= pop.sum()
    end = datetime(2025, 5, 1, tzinfo=timezone.utc)
    loans = []
    for rid in rids:  # a reader moves along a shelf: the next book is mostly a near one
        at, b = end - timedelta(days=90), int(rng.choice(books, p=pop))
        seen: set[int] = set()
        for _ in range(int(rng.integers(3, 11))):
            while b in seen:
                b = (b + 1) % books
            seen.add(b)
            at += timedelta(hours=float(rng.uniform(5, 150)))
            loans.append({"reader_id": rid, "book_id": bids[b], "loaned_at": at})
            b = int((b + rng.integers(1, 4)) % books) if rng.random() < 0.7 else int(rng.choice(books, p=pop))
    loans = pd.DataFrame(loans)
    loans.to_parquet(repo / "data" / "loans.parquet")
    g = loans.sort_values("loaned_at", kind="stable").groupby("reader_id", sort=False)
    shelf = pd.DataFrame({"updated_at": g["loaned_at"].max(), "n_loans": g.size().astype("int64"),
                          "recent_books": g["book_id"].agg(lambda s: list(s)[::-1][:HISTORY])}).reset_index()
    shelf[["reader_id", "updated_at", "n_loans", "recent_books"]].to_parquet(repo / "data" / "shelf.parquet")
    write_store_yaml(repo, redis_url, db, f"bookshop_{keys}", offline)
    user_t, item_t, vt = ("String", "String", "STRING") if keys == "uuid" else ("Int64", "Int64", "INT64")
    (repo / "bookshop_repo.py").write_text(REPO_FILE.replace("__USER_T__", user_t).replace("__ITEM_T__", item_t)
                                           .replace("__USER_VT__", vt))
    return loans, shelf


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def serve_repo(repo: Path, env: dict[str, str], workers: int, wait_s: float = 180):
    """``ecaug serve --repo R`` on a free port; its process and base URL once /health is ok."""
    from ecaug_feast.redis_server import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ecaug_feast.cli.main", "serve", "--repo", str(repo), "--port",
                             str(port), "--workers", str(workers)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    while True:
        assert proc.poll() is None, proc.stderr.read()[-4000:]
        try:
            if _get(f"{base}/health")[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "ecaug serve --repo did not answer /health"
        time.sleep(0.5)
    return proc, base


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("keys,offline,db,workers", [("uuid", "file", 8, 1), ("int64", "duckdb", 9, 2)])
def test_shop_repo_augment_train_serve(keys: str, offline: str, db: int, workers: int, tmp_path: Path, redis_url: str,
                                       monkeypatch, capsys):
    import redis
    from feast import FeatureStore

    from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE
    from ecaug_feast.plugin import training_rows
    from ecaug_feast.redis_server import free_port

    home = tmp_path / "state"
    monkeypatch.setenv("ECAUG_HOME", str(home))
    repo = tmp_path / "bookshop"
    loans, shelf = write_bookshop(repo, redis_url, db, keys, offline)
    client = redis.Redis(host=urlparse(redis_url).hostname, port=urlparse(redis_url).port, db=db)
    client.flushdb()

    # the shop's own steps, with the stock feast CLI
    feast_cli(repo, ["apply"], monkeypatch)
    feast_cli(repo, ["materialize", "2024-01-01T00:00:00", "2025-07-01T00:00:00", "--views", "reader_shelf"], monkeypatch)
    before = dump_keys(client)
    assert len(before) == len(shelf)

    # behaviour from the shop's event log, its features computed by the shop's own function
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    code, out, err = ecaug_cli(["augment", "--repo", str(repo), "--config", str(tmp_path / "tiny.json"), "--json",
                                "--events", "loans", "--view", "reader_shelf"], capsys, monkeypatch)
    assert code == 0, err[-3000:]
    res = json.loads(out.strip().splitlines()[-1])
    assert res["gate"] == "pass" and res["activated"] is True, res
    syn = pd.read_parquet(Path(res["run_dir"]) / "loans_synth.parquet")
    rows = pd.read_parquet(Path(res["run_dir"]) / "reader_shelf_synth.parquet")
    assert res["materialized"] == {"reader_shelf_synth": syn["reader_id"].nunique()} == {"reader_shelf_synth": len(rows)}
    if keys == "uuid":
        assert syn["reader_id"].str.startswith(f"ecaug:{res['run_id']}:").all()
    else:
        assert str(syn["reader_id"].dtype) == "int64" and (syn["reader_id"] >= SYNTHETIC_USER_ID_BASE).all()
    assert set(syn["book_id"]) <= set(loans["book_id"])

    # the twin is online; the shop's own Redis keys are byte-identical
    after = dump_keys(client)
    assert {k: after.get(k) for k in before} == before and len(after) == len(before) + len(rows)
    store = FeatureStore(repo_path=str(repo))
    some = rows["reader_id"].iloc[0]
    newest = syn[syn["reader_id"] == some].sort_values("loaned_at")["book_id"].tolist()[::-1][:HISTORY]
    got = store.get_online_features(features=["reader_shelf_synth:recent_books", "reader_shelf_synth:run_id"],
                                    entity_rows=[{"reader_id": some if keys == "uuid" else int(some)}]).to_dict()
    assert got["recent_books"] == [newest] and got["run_id"] == [res["run_id"]]

    # training_rows: real rows and synthetic histories, both through get_historical_features
    ent = pd.DataFrame({"reader_id": shelf["reader_id"], "event_timestamp": pd.Timestamp("2025-06-01", tz="UTC")})
    tr = training_rows(store, ent, ["reader_shelf:recent_books"], mix_ratio=0.5, seed=1)
    real_rows, syn_rows = tr[~tr["is_synthetic"]], tr[tr["is_synthetic"]]
    assert len(real_rows) == len(shelf) and len(syn_rows) == min(round(0.5 * len(shelf)), len(rows)) > 0
    assert (syn_rows["run_id"] == res["run_id"]).all() and real_rows["run_id"].isna().all()
    by_key = rows.set_index("reader_id")["recent_books"].map(list)
    for _, r in syn_rows.iterrows():
        assert len(r["recent_books"]) > 0 and list(r["recent_books"]) == by_key[r["reader_id"]]
    assert [list(x) for x in real_rows["recent_books"]] == [list(x) for x in shelf["recent_books"]]

    # serving checks the repo's checkpoint first: one line, exit 2, before anything is served
    serve = ["serve", "--repo", str(repo), "--port", str(free_port())]
    code, _, err = ecaug_cli(serve, capsys, monkeypatch)
    assert code == 2 and "no checkpoint yet; train one with `ecaug train --repo`" in err and "Traceback" not in err, err
    train = ["train", "--repo", str(repo), "--events", "loans", *TINY_TRAIN]
    code, out, err = ecaug_cli([*train, "--name", "nohist"], capsys, monkeypatch)
    assert code == 0, err[-3000:]
    code, _, err = ecaug_cli([*serve, "--model", "nohist"], capsys, monkeypatch)
    assert code == 2 and "trained without a history feature" in err and "Traceback" not in err, err
    shutil.rmtree(json.loads(out.strip().splitlines()[-1])["checkpoint"])

    # the model trained from the repo (the vocabulary: the shop's book keys), then served from it
    code, out, err = ecaug_cli([*train, "--history", "reader_shelf:recent_books"], capsys, monkeypatch)
    assert code == 0, err[-3000:]
    ckpt = Path(json.loads(out.strip().splitlines()[-1])["checkpoint"])
    assert ckpt == home / "repos" / f"bookshop_{keys}" / "models" / "real"
    env = {**os.environ, "ECAUG_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    proc, base = serve_repo(repo, env, workers)  # 2: each worker process builds the shop's services itself
    try:
        reader = shelf.sort_values("n_loans").iloc[-1]  # a reader with a long history
        rid = reader["reader_id"]
        history = set(loans.loc[loans["reader_id"] == rid, "book_id"]) | set(reader["recent_books"])
        status, body = _get(f"{base}/recommend?user_id={quote(str(rid))}&k=5")
        assert status == 200 and body["fallback"] is None and body["degraded"] is False, body
        assert body["user_id"] == rid and body["excluded_seen"] == len(history)
        got = [it["item_id"] for it in body["items"]]
        assert len(got) == 5 and all(isinstance(b, str if keys == "uuid" else int) for b in got), got
        assert set(got) <= set(loans["book_id"]) and not set(got) & history, (got, history)

        # a key the shop's online store does not hold: today's unknown-user answer, the most loaned books
        unknown = "no-such-reader" if keys == "uuid" else 5
        status, body = _get(f"{base}/recommend?user_id={unknown}&k=3")
        counts = loans["book_id"].value_counts()
        assert status == 200 and body["fallback"] == "unknown_user" and body["excluded_seen"] == 0, body
        assert sorted(counts[[it["item_id"] for it in body["items"]]], reverse=True) == counts.iloc[:3].tolist()
        status, body = _get(f"{base}/items/{quote(str(got[0]))}")
        assert status == 200 and body["item_id"] == got[0] and body["train_interactions"] == counts[got[0]], body
        if keys != "uuid":
            status, body = _get(f"{base}/recommend?user_id=abc")
            assert status == 422 and "Int64" in json.dumps(body) and "abc" not in json.dumps(body), body
        else:  # the shop gets new books and retrains: served without a restart, with the new vocabulary
            new = [str(uuid.UUID(int=i, version=4)) for i in range(3)]
            assert _get(f"{base}/items/{new[0]}")[0] == 404
            more = pd.DataFrame({"reader_id": [f"new-reader-{i}" for i in range(6)], "book_id": new * 2,
                                 "loaned_at": loans["loaned_at"].max() + pd.to_timedelta(np.arange(1, 7), "h")})
            pd.concat([loans, more], ignore_index=True).to_parquet(repo / "data" / "loans.parquet")
            code, out, err = ecaug_cli([*train, "--history", "reader_shelf:recent_books", "--name", "v2"], capsys, monkeypatch)
            assert code == 0, err[-3000:]
            deadline = time.monotonic() + 120
            while not str(_get(f"{base}/health")[1].get("model_version")).startswith("v2@"):
                assert time.monotonic() < deadline, _get(f"{base}/health")[1]
                time.sleep(0.5)
            status, body = _get(f"{base}/items/{new[0]}")
            # the event source changed since start: the reload read it again (its new loans count)
            assert status == 200 and body["item_id"] == new[0] and body["train_interactions"] == 2, body
            status, body = _get(f"{base}/recommend?user_id={quote(str(rid))}&k=5")
            assert status == 200 and body["fallback"] is None and body["model_version"].startswith("v2@"), body
            assert not {it["item_id"] for it in body["items"]} & history
    finally:
        stop(proc)
    err = proc.stderr.read()
    assert "Traceback" not in err, err[-3000:]
