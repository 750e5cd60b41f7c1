"""``benchmarks/seq_realism.py``: bad arguments get one line and exit 2, before any fit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "seq_realism.py"


@pytest.mark.parametrize("args, says", [
    (["--settings", "{not json"], "not JSON"),
    (["--settings", '{"gan": {"lr": 0.1}}'], "act at the fit"),
    (["--settings", "[1]"], "expected a JSON object"),
    (["--settings", '{"reject_share": 0.3}'], "unknown SeqAugmentConfig field"),
])
def test_bad_settings_are_one_line(tmp_path, args, says):
    env = {**os.environ, "ECAUG_HOME": str(tmp_path / "nohome")}
    r = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "nohome").exists()
