"""The sequence generator trained data-parallel (DDP, gloo, 2 processes under torchrun) reaches the
same quality as one process, and both ranks end with identical weights.

The data is a small synthetic Markov-chain catalog (tests/scale/ddp_generator_worker.py), so the
quality has a known ceiling (~0.7 next-item accuracy). Dropout is 0 there, so the MLE phase has no
randomness besides the shared batch order: 1 and 2 processes see the same per-batch gradient (only
the summation order differs) and must agree to float noise. The adversarial phase samples different
fakes on each rank, so the final figures get a looser tolerance."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_generator_worker.py")
MLE_TOL = 0.01    # held-out NLL after MLE (nats/token): float-order noise only
FINAL_NLL_TOL = 0.05
FINAL_ACC_TOL = 0.03


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_process(out: Path) -> dict:
    spec = importlib.util.spec_from_file_location("ddp_generator_worker", WORKER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.run(out)


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch built without gloo")
def test_two_process_ddp_matches_one_process(tmp_path):
    (tmp_path / "one").mkdir()
    one = _one_process(tmp_path / "one")
    assert "ddp" not in one["report"]  # one process: no process group, the plain path

    two_dir = tmp_path / "two"
    two_dir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(WORKER), str(two_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((two_dir / "metrics.json").read_text(encoding="utf-8"))
    assert two["report"]["ddp"] == {"world": 2, "backend": "gloo"}

    # both ranks hold the same generator
    w0, w1 = (torch.load(two_dir / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)

    # it learned: far below the uniform NLL (log 42: 40 items + EOS + PAD), well above chance accuracy
    assert two["nll"] < 0.8 * torch.log(torch.tensor(42.0)).item() and two["acc"] > 0.3
    # same quality as one process
    assert abs(two["nll_mle"] - one["nll_mle"]) <= MLE_TOL
    assert abs(two["nll"] - one["nll"]) <= FINAL_NLL_TOL
    assert abs(two["acc"] - one["acc"]) <= FINAL_ACC_TOL
