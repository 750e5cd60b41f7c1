"""benchmarks/scaling.py at a tiny scale (2% of Beauty's users): the generator stages and the
extrapolated epochs report what they measured, an extrapolated figure is marked so in the JSON
and the table, and a stage past its memory cap is reported as unable to run (no crash).

The stage functions run in this process (the script runs each in its own subprocess), so
``ECAUG_HOME`` and torch's thread count are put back after each call.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scaling.py"
K = 0.02  # ~450 users: 4 training batches of 128


def _load():
    spec = importlib.util.spec_from_file_location("scaling_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def sc():
    return _load()


def _stage(sc, stage: str, home: Path, **kw) -> dict:
    """``run_stage`` here, restoring what it sets for its own process."""
    import torch

    old_home, threads = os.environ.get("ECAUG_HOME"), torch.get_num_threads()
    try:
        return sc.run_stage(stage, K, home, **kw)
    finally:
        torch.set_num_threads(threads)
        if old_home is None:
            os.environ.pop("ECAUG_HOME", None)
        else:
            os.environ["ECAUG_HOME"] = old_home


@pytest.fixture(scope="module")
def home(sc, tmp_path_factory) -> Path:
    h = tmp_path_factory.mktemp("scaling")
    fig = _stage(sc, "ingest", h)
    assert fig["users"] == 447 and fig["seconds"] > 0
    return h


def test_train_epoch_full_then_extrapolated(sc, home):
    full = _stage(sc, "train_epoch", home)
    assert "extrapolated" not in full and full["examples_per_s"] > 0
    per_epoch = full["batches_per_epoch"]
    assert per_epoch >= 3

    ext = _stage(sc, "train_epoch", home, max_batches=2)
    assert ext["extrapolated"] is True
    assert ext["measured_batches"] == 2 and ext["batches_per_epoch"] == per_epoch
    # seconds_per_batch is rounded to 4 decimals: allow that rounding times the batches (a fast
    # machine's per-batch time makes a relative bound flaky)
    assert ext["seconds"] == pytest.approx(ext["seconds_per_batch"] * per_epoch, abs=5e-5 * per_epoch + 1e-4)
    assert ext["checkpoint"].startswith("untrained")
    # the later stages still work on the (untrained) checkpoint it leaves
    idx = _stage(sc, "index", home)
    assert idx["indexed_items"] > 0


def test_generator_stages(sc, home, monkeypatch):
    # MLE only: the adversarial phase (10 discriminator warm-up steps at least) costs minutes here
    full = _stage(sc, "gen_fit", home, gen_adv_steps=0)
    assert "extrapolated" not in full
    assert full["mle_epochs"] == 1 and full["adv_steps"] == 0 and full["histories"] == 447
    assert full["mle_s"] > 0 and full["seconds"] == pytest.approx(full["mle_s"] + full["after_mle_s"], abs=0.02)

    ext = _stage(sc, "gen_fit", home, gen_adv_steps=0, max_batches=2)
    assert ext["extrapolated"] is True and ext["measured_batches"] == 2
    # the MLE epoch walks the rows not held out (10%), 128 per batch
    assert ext["batches_per_epoch"] == math.ceil((447 - int(447 * 0.1)) / 128)
    assert ext["seconds"] == pytest.approx(ext["after_mle_s"] + ext["mle_s"], abs=0.02)
    assert ext["mle_s"] == pytest.approx(ext["seconds_per_batch"] * ext["batches_per_epoch"] + ext["heldout_pass_s"], abs=0.02)

    gen = _stage(sc, "generate", home)
    assert "extrapolated" not in gen
    assert gen["synthetic"] == int(0.25 * 447) and gen["expanded"] > 0
    assert gen["seconds"] == pytest.approx(gen["expand_s"] + gen["synthetic_s"], abs=0.02)

    # a share of each use, timed and scaled up: marked, with what was measured (64-prompt chunks
    # here so that one chunk is a share of this tiny data)
    monkeypatch.setattr(sc, "GEN_CHUNK", 64)
    part = _stage(sc, "generate", home, gen_chunks=1)
    assert part["extrapolated"] is True
    assert part["measured_expanded"] == 64 and part["measured_synthetic"] == 64
    assert part["expanded"] == gen["expanded"] and part["synthetic"] == gen["synthetic"]

    # the table marks an extrapolated figure and names what did not run
    results = {K: {"ingest": {"users": 447, "seconds": 1.0, "peak_rss_mb": 500.0, "base_rss_mb": 300.0},
                   "gen_fit": ext, "generate": gen,
                   "train_epoch": {"error": "cannot run on this machine: ...", "cannot_run_here": True}}}
    out = sc.growth(results, {}, ["ingest", "gen_fit", "generate", "train_epoch"], 128, 24)
    rows = {r["stage"]: r for r in out["growth"]}
    assert rows["gen_fit"]["extrapolated_at"] == ["0.02"] and rows["generate"]["extrapolated_at"] == []
    assert rows["train_epoch"]["cannot_run_at"] == ["0.02"]
    text = sc.table_text(out)
    assert "~" in text.splitlines()[2]  # gen_fit's row
    assert "2 of 4 batches timed" in text and "cannot run on this machine" in text


def test_memory_cap_says_cannot_run_here(sc):
    """A real allocation past the cap fails inside the stage's process, and the runner turns the
    failure into 'cannot run on this machine' (the torch message it matches is the real one)."""
    code = (f"import importlib.util, torch; spec = importlib.util.spec_from_file_location('s', {str(SCRIPT)!r}); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "m._cap_memory(0.25); torch.ones(2**30, dtype=torch.float32)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode != 0
    err = sc._stage_error(p, 0.25)
    assert err.get("cannot_run_here") is True, p.stderr[-500:]
    assert "0.25 GiB" in err["error"]
    other = sc._stage_error(subprocess.CompletedProcess([], 1, "", "Traceback...\nValueError: bad column"), 0.25)
    assert other == {"error": "ValueError: bad column"}


def test_rerun_stages_replace_and_keep_the_rest(sc, tmp_path, capsys):
    """``--previous`` with a scale run again: the stages run now replace that scale's figures, the
    others stay (a generator change reruns gen_fit alone; its exponent joins the earlier stages')."""
    import json

    prev = {"scales": {"0.02": {"users": 447, "ingest": {"seconds": 99.0, "peak_rss_mb": 1.0, "base_rss_mb": 0.5},
                                "index": {"seconds": 1.5, "peak_rss_mb": 400.0, "base_rss_mb": 300.0}}}}
    f = tmp_path / "prev.json"
    f.write_text(json.dumps(prev))
    assert sc.main(["--scales", "0.02", "--stages", "ingest", "--previous", str(f), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rec = out["scales"]["0.02"]
    assert rec["index"]["seconds"] == 1.5  # kept
    assert rec["ingest"]["seconds"] != 99.0 and rec["ingest"]["users"] == 447  # replaced by this run's
    assert [r["stage"] for r in out["growth"]] == ["ingest", "index"]
