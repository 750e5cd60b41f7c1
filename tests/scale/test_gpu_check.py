"""``benchmarks/gpu_check.py`` (issue 33's GPU script) runs end to end on the CPU: the training
step with both losses and the product's generator, with no TorchRec, fbgemm or Feast import
(the lent GPU machine has none of them). A smoke test: it times nothing it asserts on."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_runs_on_cpu_without_torchrec_or_feast(tmp_path, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setenv("OUT", str(tmp_path))
    before = {m for m in sys.modules if m.split(".")[0] in ("torchrec", "fbgemm_gpu", "feast")}
    assert mod.main(["--device", "cpu", "--items", "300", "--steps", "2", "--negatives", "64",
                     "--gen-users", "200", "--gen-items", "100"]) == 0
    after = {m for m in sys.modules if m.split(".")[0] in ("torchrec", "fbgemm_gpu", "feast")}
    assert after == before  # the script itself imports none of them
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1].removeprefix("RESULT "))
    assert res["device"] == "cpu" and res == json.loads((tmp_path / "gpu_check.json").read_text())
    steps = [r for r in res["rows"] if r["part"] == "train_step"]
    assert {r["loss"] for r in steps} == {"full", "sampled"} and all(r["s_per_step"] > 0 for r in steps)
    gen = [r for r in res["rows"] if r["part"] == "generator"][0]
    assert gen["ran"] and gen["expanded"] > 0
