"""``ecaug experiment --json``: the interface other tools rely on, on a tiny slice of Beauty (the study
reads the processed dataset: ``feast_env`` has ingested 1,500 Beauty users)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

METHODS = {"popularity", "real_only", "column_gan", "oversample", "smote"}  # the bag model
SEQ_METHODS = {"popularity", "real_only", "seq_ops", "pseudo_prior", "gan_augmented"}
KEYS = ["recall@10", "ndcg@10", "recall@20", "ndcg@20"]


@pytest.mark.slow
def test_experiment_json_interface(tmp_path, feast_env):
    out = tmp_path / "exp"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "ecaug_feast.cli.main", "experiment", "--quick", "--model", "bag", "--fractions", "0.5", "--seeds", "2",
           "--max-users", "200", "--workers", "1", "--out", str(out), "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=Path(__file__).resolve().parents[2])
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    rows = res["results"]
    assert {r["method"] for r in rows} == METHODS
    for r in rows:
        assert r["fraction"] == 0.5 and r["seeds"] == 2
        for k in KEYS:
            assert 0.0 <= r[k] <= 1.0 and r[f"{k}_std"] >= 0.0 and not math.isnan(r[k])
    # methods that cannot pick a worse validation model than real-only's are at least evaluated
    assert (out / "report.md").exists() and (out / "table.md").exists() and (out / "results.json").exists()
    assert (out / "ndcg_vs_fraction.png").stat().st_size > 1000
    full = json.loads((out / "results.json").read_text())
    # the test split is scored once per (method, fraction, seed)
    assert len(full["runs"]) == len(METHODS) * 2
    for run in full["runs"]:
        if run["method"] in ("column_gan", "oversample", "smote"):
            chosen = run["ratio"]
            best = max(t["ndcg@10"] for t in run["tried"])
            assert next(t for t in run["tried"] if t["ratio"] == chosen)["ndcg@10"] == best


def test_bad_fraction_is_one_line_error():
    p = subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", "experiment", "--fractions", "1.5"],
                       capture_output=True, text=True)
    assert p.returncode != 0
    assert "fractions must lie in (0, 1]" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.slow
def test_experiment_sequence_model_json(tmp_path, feast_env):
    """The default model is the sequence model; its rows carry per-history-length buckets."""
    out = tmp_path / "exp-seq"
    cmd = [sys.executable, "-m", "ecaug_feast.cli.main", "experiment", "--quick", "--fractions", "1.0", "--seeds", "1",
           "--max-users", "300", "--workers", "1", "--out", str(out), "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[2])
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["model"] == "sequence"
    assert {r["method"] for r in res["results"]} == SEQ_METHODS
    full = json.loads((out / "results.json").read_text())
    run = next(r for r in full["runs"] if r["method"] == "real_only")
    assert run["model"] == "sequence"
    buckets = run["test"]["buckets"]
    assert list(buckets) == ["1", "2-3", "4-7", "8+"]
    # every evaluated user falls in exactly one bucket (at 100% every Beauty user keeps >= 3 events)
    assert sum(b["users"] for b in buckets.values()) == run["test"]["users"]
    assert buckets["1"]["users"] == 0
    for run in full["runs"]:
        if run["method"] in ("seq_ops", "pseudo_prior", "gan_augmented"):
            # the size is chosen on validation (0 = keep real-only), the test split scored once
            chosen = run["ratio"]
            assert next(t for t in run["tried"] if t["ratio"] == chosen)["ndcg@10"] == max(t["ndcg@10"] for t in run["tried"])
            assert "buckets" in run["test"] and run["pool"]["rows"] > 0, run["pool"]
    gan = next(r for r in full["runs"] if r["method"] == "gan_augmented")["pool"]
    for k in ("c2st_auc_sequences", "catalogue_coverage", "tail_share", "labeler_agreement"):
        assert k in gan
    assert "History pools" in (out / "report.md").read_text()


def _quick_sequence_study(out: Path, *args: str) -> dict:
    """``ecaug experiment --quick`` at 100 %, 1 seed, 300 users, with ``args``; its results.json."""
    cmd = [sys.executable, "-m", "ecaug_feast.cli.main", "experiment", "--quick", "--fractions", "1.0", "--seeds", "1",
           "--max-users", "300", "--workers", "1", *args, "--out", str(out), "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[2])
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_experiment_pretrain_protocol(tmp_path, feast_env):
    """``--seq-protocol pretrain`` (ASReP's order): a fresh model on real + augmented histories, then
    fine-tuned on real alone; the run says so, and the size is still chosen on validation."""
    full = _quick_sequence_study(tmp_path / "exp-pre", "--methods", "real_only,seq_ops", "--seq-protocol", "pretrain")
    assert full["config"]["seq_protocol"] == "pretrain" and "ASReP" in full["protocol"]["augmented_histories"]
    run = next(r for r in full["runs"] if r["method"] == "seq_ops")
    sized = [t for t in run["tried"] if t["ratio"] > 0]
    assert sized and all(t["pretrain_epochs"] >= 1 for t in sized), run["tried"]
    chosen = run["ratio"]
    assert next(t for t in run["tried"] if t["ratio"] == chosen)["ndcg@10"] == max(t["ndcg@10"] for t in run["tried"])


@pytest.mark.parametrize("flag, want", [("--seq-protocol", "finetune, pretrain"), ("--seq-targets", "all, real"),
                                        ("--seq-inference", "real, expanded"), ("--seq-teacher", "none, recommender")])
def test_bad_seq_choice_is_one_line_error(flag, want):
    p = subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", "experiment", flag, "mix"],
                       capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    assert f"{flag} must be one of {want}" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.slow
def test_experiment_generated_items_as_context_only(tmp_path, feast_env):
    """``--seq-targets real``: the GAN's expansions keep their generated items as context only; the
    run says so, and its pool holds exactly the accepted expansions (whole synthetic users, which
    have no real item to train on, leave it)."""
    full = _quick_sequence_study(tmp_path / "exp-ctx", "--methods", "real_only,gan_augmented", "--seq-targets", "real")
    assert full["config"]["seq_targets"] == "real" and "context only" in full["protocol"]["generated_items"]
    pool = next(r for r in full["runs"] if r["method"] == "gan_augmented")["pool"]
    # every accepted expansion trains (it has real items); no accepted whole user does (the masks
    # themselves: tests/recommender/test_seq_model.py::test_generated_items_are_context_but_never_targets)
    assert pool["rows"] == pool["accepted"] - pool["accepted_synthetic"] > 0, pool


@pytest.mark.slow
def test_experiment_expanded_inference_inputs(tmp_path, feast_env):
    """``--seq-inference expanded`` (ASReP's evaluation): each candidate is also validated reading
    the expansions; real-only's model reading them is one more candidate; the run says so, the
    choice is the validation best, and real-only reading real histories stays candidate 0."""
    full = _quick_sequence_study(tmp_path / "exp-inf", "--methods", "real_only,pseudo_prior", "--seq-inference", "expanded")
    assert full["config"]["seq_inference"] == "expanded" and "ASReP" in full["protocol"]["inference_inputs"]
    run = next(r for r in full["runs"] if r["method"] == "pseudo_prior")
    kinds = {(t["ratio"], t.get("inputs", "real")) for t in run["tried"]}
    assert {(0.0, "real"), (0.0, "expanded")} <= kinds and any(r > 0 and i == "expanded" for r, i in kinds), run["tried"]
    best = max(run["tried"], key=lambda t: t["ndcg@10"])
    assert (run["ratio"], run["inputs"]) == (best["ratio"], best.get("inputs", "real"))
    real = next(r for r in full["runs"] if r["method"] == "real_only")
    if (run["ratio"], run["inputs"]) == (0.0, "real"):
        assert run["test"]["ndcg@10"] == real["test"]["ndcg@10"]


@pytest.mark.slow
def test_experiment_recommender_as_teacher(tmp_path, feast_env):
    """``--seq-teacher recommender``: gan_augmented's expansions are continuations drawn from
    real-only's model, gated as usual; with ``--seq-inference expanded`` they are not read as
    earlier items (continuations come after a user's history), so only real inputs are tried."""
    full = _quick_sequence_study(tmp_path / "exp-teach", "--methods", "real_only,gan_augmented", "--seq-teacher", "recommender",
                                 "--seq-inference", "expanded", "--seq-aug", '{"n_new": 2, "synthetic_share": 0, "expansions": 2}',
                                 "--seq-ratios", "2")
    assert full["config"]["seq_teacher"] == "recommender" and "teacher" in full["protocol"]["expansions"]
    run = next(r for r in full["runs"] if r["method"] == "gan_augmented")
    assert run["pool"]["teacher"] is True and run["pool"]["prepended"] is False and run["pool"]["rows"] > 0, run["pool"]
    assert all(t.get("inputs", "real") == "real" for t in run["tried"]) and len(run["tried"]) >= 2, run["tried"]
    # --seq-aug reached the pipeline: two items a short user, no whole synthetic users
    assert full["config"]["seq_aug"] == {"n_new": 2, "synthetic_share": 0, "expansions": 2} and run["pool"]["synthetic"] == 0, run["pool"]
    assert full["config"]["seq_ratios"] == [2.0] and [t["ratio"] for t in run["tried"]] == [0.0, 2.0], run["tried"]
    assert run["pool"]["expanded"] % 2 == 0  # two expansions of each short history


@pytest.mark.parametrize("value", ["{bad", '{"n_new": 2, "copies": 3}', '{"n_new": "two"}', "[2]"])
def test_bad_seq_aug_is_one_line_error(value):
    p = subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", "experiment", "--seq-aug", value],
                       capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    assert "--seq-aug: expected a JSON object" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("value, want", [("x", "expected numbers like 1,3"), ("0", "expected numbers in (0, 100]")])
def test_bad_seq_ratios_is_one_line_error(value, want):
    p = subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", "experiment", "--seq-ratios", value],
                       capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    assert f"--seq-ratios: {want}" in p.stderr and "Traceback" not in p.stderr


def test_bag_model_rejects_history_methods():
    p = subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", "experiment", "--model", "bag", "--methods", "gan_augmented"],
                       capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    assert "need --model sequence" in p.stderr and "Traceback" not in p.stderr


def test_sequence_model_rejects_column_methods():
    p = subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", "experiment", "--methods", "smote"],
                       capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    assert "need --model bag" in p.stderr and "Traceback" not in p.stderr


def test_out_folder_with_other_files_is_refused_and_kept(tmp_path):
    keep = tmp_path / "precious.txt"
    keep.write_text("data")
    p = subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", "experiment", "--quick", "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    assert "holds other files" in p.stderr and "Traceback" not in p.stderr
    assert keep.read_text() == "data"
