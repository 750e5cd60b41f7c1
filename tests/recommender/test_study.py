"""The study (``ecaug experiment``) on an ingested dataset, and its one example path.

- Parity: the training data read through a private Feast repo (ingest's feature writer, then
  ``get_historical_features``) equals the in-memory shortcut row for row, at a fraction < 1.
- At fraction 1.0 the study's Feast path equals what ``ecaug train --source feast`` reads from the
  Feast store ``ecaug ingest`` wrote (``load_real_from_feast``).
- A dataset brought in through the column mapping runs end to end through the CLI, and the report
  names the split, the data path and the example path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _rows(df: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """``df`` sorted by ``key`` (stable), lists as tuples so frames compare cell by cell."""
    out = df.sort_values(key, kind="stable").reset_index(drop=True).copy()
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = [tuple(int(v) for v in x) if isinstance(x, (list, np.ndarray)) else x for x in out[c]]
    return out


def assert_same_rows(a: pd.DataFrame, b: pd.DataFrame, key: list[str]) -> None:
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(_rows(a, key), _rows(b, key), check_exact=True)


def assert_same_train_data(got, want) -> None:
    assert len(got.examples) == len(want.examples) > 0
    assert_same_rows(got.examples, want.examples, ["user_id", "item_id", "event_timestamp"])
    assert_same_rows(got.user_serving, want.user_serving, ["user_id"])
    assert_same_rows(got.user_test, want.user_test, ["user_id"])
    assert_same_rows(got.item_serving, want.item_serving, ["item_id"])


@pytest.fixture(scope="module")
def beauty_300():
    """300 Beauty users (leave-last-out split, as ingest splits it)."""
    from ecaug_feast.datasets import load_dataset
    from ecaug_feast.datasets.split import split_interactions

    ds = load_dataset("beauty")
    sp = split_interactions(ds)
    keep = np.arange(1, 301)
    return ds, *(df[df["user_id"].isin(keep)].reset_index(drop=True) for df in (sp.train, sp.valid, sp.test))


@pytest.mark.slow
def test_feast_path_equals_memory_row_for_row(beauty_300, tmp_path):
    from ecaug_feast.jobs.study_data import OFFLINE_ONLY_REDIS_URL, train_data, write_feast_repo
    from recommender.data import complete_synthetic, truncate_history

    ds, train, valid, _ = beauty_300
    tr = truncate_history(train, 0.25)
    assert len(tr) < len(train)  # the histories really are cut
    home_before = os.environ.get("ECAUG_HOME")
    repo = write_feast_repo(tmp_path / "f", tr, ds.items, "beauty-0.25")
    assert os.environ.get("ECAUG_HOME") == home_before  # the private state dir was only borrowed
    assert OFFLINE_ONLY_REDIS_URL.split("//")[1] in (repo / "feature_store.yaml").read_text()  # never contacted: closed port
    got = train_data("feast", tr, ds.items, valid, tmp_path / "f")
    want = train_data("memory", tr, ds.items, valid)
    assert got.info["source"] == "feast" and want.info["source"] == "memory"
    assert_same_train_data(got, want)
    # the truncated history reached Feast: no example sees more earlier events than it kept
    assert got.examples["n_interactions"].max() < train.groupby("user_id").size().max()
    # synthetic rows get the same item features (as-of join) from either path
    rows = got.examples.iloc[:40][["user_id", "item_id", "event_timestamp", "n_interactions", "days_since_last", "recent_items",
                                   "top_attributes", "attr_diversity", "mean_item_popularity"]]
    assert_same_rows(complete_synthetic(rows, got), complete_synthetic(rows, want), ["user_id", "item_id", "event_timestamp"])


@pytest.mark.slow
def test_study_at_full_history_reads_what_ingest_wrote(feast_env, tmp_path):
    """Fraction 1.0, every user: the study's private Feast repo serves the same rows as the Feast
    store `ecaug ingest` + `ecaug apply` made (what `ecaug train --source feast` trains on)."""
    from ecaug_feast.jobs.presets import make_config
    from ecaug_feast.jobs.study import dataset_path, load_split, prepare_sources
    from ecaug_feast.jobs.study_data import train_data
    from recommender.data import load_real_from_feast

    cfg = make_config("full", dataset=feast_env.data.name, fractions=[1.0], max_users=None)
    data_dir = dataset_path(cfg, feast_env.state_dir)
    repos = prepare_sources(cfg, data_dir, tmp_path / "work")
    ds, train, valid, _ = load_split(cfg, data_dir)
    got = train_data("feast", train, ds.items, valid, repos[1.0])
    want = load_real_from_feast(feast_env.data.name, store=feast_env.store)
    assert_same_train_data(got, want)


def _ecaug(args: list[str], home: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ECAUG_REDIS_URL"}
    env.update(ECAUG_HOME=str(home), PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


def _shop_csv(path: Path, n_users: int = 260, n_items: int = 60, seed: int = 5) -> None:
    """A shop's own export: string ids, other column names, ISO times; 6-12 orders per customer."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        t0 = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=int(rng.integers(0, 3000)))
        for j, it in enumerate(rng.choice(n_items, size=int(rng.integers(6, 13)), replace=False)):
            rows.append({"customer": f"C{u:04d}", "sku": f"SKU-{it}", "ordered_at": (t0 + pd.Timedelta(hours=5 * j)).isoformat()})
    pd.DataFrame(rows).to_csv(path, index=False)


@pytest.mark.slow
def test_experiment_on_a_dataset_ingested_through_the_mapping(tmp_path):
    csv = tmp_path / "orders.csv"
    _shop_csv(csv)
    home = tmp_path / "home"
    r = _ecaug(["ingest", "--interactions", str(csv), "--map", "user=customer,item=sku,timestamp=ordered_at", "--name", "myshop",
                "--split", "leave_last_out"], home)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "study"
    r = _ecaug(["experiment", "--dataset", "myshop", "--quick", "--json", "--seeds", "1", "--fractions", "0.5", "--workers", "1",
                "--model", "bag", "--methods", "popularity,real_only,oversample", "--out", str(out)], home)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["dataset"] == "myshop"
    assert {row["method"] for row in res["results"]} == {"popularity", "real_only", "oversample"}
    for row in res["results"]:
        assert row["fraction"] == 0.5 and row["seeds"] == 1 and 0.0 <= row["ndcg@10"] <= 1.0
    assert res["data"]["path"] == str(home / "datasets" / "myshop")
    assert res["data"]["split"]["kind"] == "leave_last_out" and res["data"]["example_path"] == "feast"
    full = json.loads((out / "results.json").read_text())
    assert full["protocol"]["split"].startswith("per-user leave-last-out")
    report = (out / "report.md").read_text()
    assert str(home / "datasets" / "myshop") in report and "leave_last_out" in report and "**feast**" in report
    # the private Feast repos were temporary; the ingested Feast sources were not touched
    assert not [p for p in tmp_path.iterdir() if ".feast-" in p.name]
    assert (home / "feast" / "train_interactions.parquet").exists()


@pytest.mark.slow
def test_experiment_temporal_split_memory_source(tmp_path):
    """The default split of own data (temporal) is stated, and --source memory is named."""
    csv = tmp_path / "orders.csv"
    _shop_csv(csv, seed=9)
    home = tmp_path / "home"
    assert _ecaug(["ingest", "--interactions", str(csv), "--map", "user=customer,item=sku,timestamp=ordered_at"], home).returncode == 0
    out = tmp_path / "study"
    r = _ecaug(["experiment", "--dataset", "custom", "--quick", "--json", "--seeds", "1", "--fractions", "1.0", "--workers", "1",
                "--model", "bag", "--methods", "popularity,real_only", "--source", "memory", "--out", str(out)], home)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["data"]["split"]["kind"] == "temporal" and res["data"]["example_path"] == "memory"
    full = json.loads((out / "results.json").read_text())
    assert full["protocol"]["split"].startswith("temporal: one global time cut")
    # a temporal cut leaves held-out users without training events: they are scored, not dropped
    inter = pd.read_parquet(home / "datasets" / "custom" / "interactions.parquet")
    test_users = set(inter.loc[inter["split"] == "test", "user_id"])
    assert test_users - set(inter.loc[inter["split"] == "train", "user_id"])  # the data has such users
    for run in full["runs"]:
        assert run["test"]["users"] == len(test_users), run["method"]
    assert "**memory**" in (out / "report.md").read_text()


def test_not_ingested_is_one_line_error(tmp_path):
    r = _ecaug(["experiment", "--dataset", "nothere", "--quick", "--out", str(tmp_path / "o")], tmp_path / "home", timeout=120)
    assert r.returncode == 2, r.stderr
    assert "no processed dataset 'nothere'" in r.stderr and "Traceback" not in r.stderr


def test_bad_source_is_one_line_error(tmp_path):
    r = _ecaug(["experiment", "--source", "redis", "--quick"], tmp_path / "home", timeout=120)
    assert r.returncode == 2, r.stderr
    assert "--source must be one of feast, memory" in r.stderr and "Traceback" not in r.stderr


def _row(method: str, seed: int, ndcg: float, cold: float) -> dict:
    metrics = {m: ndcg for m in ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "coverage@10")}
    buckets = {"1": {"users": 30, "ndcg@10": cold, "recall@10": cold}, "2-3": {"users": 10, "ndcg@10": 3 * cold, "recall@10": cold},
               "4-7": {"users": 40, "ndcg@10": ndcg, "recall@10": ndcg}, "8+": {"users": 20, "ndcg@10": ndcg, "recall@10": ndcg}}
    return {"method": method, "fraction": 0.25, "seed": seed, "ratio": 1.0, "test": {**metrics, "buckets": buckets}}


def test_verdict_needs_two_std_apart_and_reports_cold_users():
    """A +10 % mean lift inside the seeds' noise is not 'met'; the <=3 bucket is the user-weighted
    mix of the 1 and 2-3 buckets, and its lift is reported on its own."""
    from ecaug_feast.jobs.study import COLD_BUCKET, aggregate, verdict

    base = [_row("real_only", s, x, 0.01) for s, x in enumerate([0.030, 0.040, 0.050])]
    noisy = [_row("gan_augmented", s, x, 0.02) for s, x in enumerate([0.028, 0.046, 0.060])]  # +11.7 %, std .016
    v = verdict(aggregate(base + noisy))
    g = v["gan_lift_at_low_fraction"]
    assert g["lift"] > 0.10 and not g["two_std_apart"] and not g["met"]
    res = {r["method"]: r for r in aggregate(base + noisy)}
    assert res["real_only"]["buckets"][COLD_BUCKET] == pytest.approx({"users": 40, "ndcg@10": (30 * .01 + 10 * .03) / 40, "recall@10": .01})
    assert v["cold_lift_vs_real_only"]["0.25"]["gan_augmented"] == pytest.approx(1.0)

    tight = [_row("gan_augmented", s, x, 0.02) for s, x in enumerate([0.0445, 0.0450, 0.0455])]  # mean .045 vs .040
    base_tight = [_row("real_only", s, x, 0.01) for s, x in enumerate([0.0399, 0.0400, 0.0401])]
    g = verdict(aggregate(base_tight + tight))["gan_lift_at_low_fraction"]
    assert g["two_std_apart"] and g["met"]
