"""The product path through the real CLI, in order, with every command's defaults:
``ecaug ingest`` (a Beauty subset) -> ``apply`` -> ``materialize`` -> ``train`` -> ``augment``
-> ``finetune`` -> ``serve`` (one ``GET /recommend``). Real processes, a private state folder,
real Feast and the embedded Redis ``apply`` starts; only the budgets are small (``--epochs 1``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from ecaug_feast.redis_server import free_port

USERS = 400  # Beauty users kept by the ingest: enough histories for the generator and its gate


def _ecaug(args: list[str], env: dict[str, str], timeout: float = 600) -> dict:
    """Run ``ecaug ARGS --json``; its last stdout line (a JSON object). A failure shows stderr."""
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", *args, "--json"], env=env, capture_output=True,
                       text=True, timeout=timeout)
    print(f"ecaug {args[0]}: {time.monotonic() - t0:.1f} s")  # shown with -s or on a failure
    assert p.returncode == 0, (args, p.stderr[-4000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def _get(url: str) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, json.loads(r.read())


def _serve(env: dict[str, str], user_id: int, k: int = 10, wait_s: float = 120) -> dict:
    """``ecaug serve`` on a free port (its defaults otherwise); one /recommend once /health is ok; stopped."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ecaug_feast.cli.main", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            assert proc.poll() is None, proc.stderr.read()[-4000:]
            try:
                if _get(f"http://127.0.0.1:{port}/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "ecaug serve did not answer /health"
            time.sleep(0.5)
        status, body = _get(f"http://127.0.0.1:{port}/recommend?user_id={user_id}&k={k}")
        assert status == 200, body
        return body
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_ingest_train_augment_finetune_serve_in_order(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "ECAUG_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("ECAUG_REDIS_URL", None)  # the embedded Redis of this state folder
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    try:
        _ecaug(["ingest", "--dataset", "beauty", "--max-users", str(USERS)], env)
        _ecaug(["apply"], env)
        _ecaug(["materialize"], env)

        tr = _ecaug(["train", "--epochs", "1"], env)  # defaults: the sequence model, models/real
        assert tr["model"] == "sequence" and Path(tr["checkpoint"]) == home / "models" / "real"

        aug = _ecaug(["augment"], env)  # defaults: the sequence generator, models/real as its teacher
        assert aug["generator"] == "sequence" and aug["teacher"] == tr["checkpoint"]
        assert aug["gate"] == "pass" and aug["activated"] and aug["rows_accepted"] > 0, aug
        lineage = json.loads((Path(aug["run_dir"]) / "manifest.json").read_text())["lineage"]
        assert lineage["teacher"]["checkpoint"] == tr["checkpoint"] and lineage["teacher_choice"].startswith("default")

        ft = _ecaug(["finetune", "--epochs", "1"], env)  # defaults: from models/real, the active run's histories
        assert ft["model"] == "sequence" and ft["run_id"] == aug["run_id"] and ft["synthetic_histories"] > 0
        assert ft["from"] == tr["checkpoint"] and Path(ft["checkpoint"]).exists()

        inter = pd.read_parquet(home / "datasets" / "beauty" / "interactions.parquet")
        train = inter[inter["split"] == "train"]
        uid = int(train["user_id"].iloc[0])
        body = _serve(env, uid)  # --model latest: the fine-tuned checkpoint
        items = [it["item_id"] for it in body["items"]]
        assert len(items) == 10 == len(set(items)) and body.get("fallback") is None, body
        assert not set(items) & set(train.loc[train["user_id"] == uid, "item_id"])
        assert Path(ft["checkpoint"]).name in body["model_version"], body["model_version"]
    finally:
        subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", "redis", "stop"], env=env, capture_output=True, timeout=60)
