"""``ecaug demo`` end to end, every step, on 300 Beauty users with smoke-size budgets (the study needs a batch of examples at the 25 % fraction).

Real parts throughout: the demo's own embedded Redis, a Feast repo in a temp state dir, the GAN,
TorchRec training, the serving app, and the quick study.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest


@pytest.mark.slow
def test_demo_every_step(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ecaug_feast.cli.main import app
    from ecaug_feast.redis_server import EmbeddedRedis

    home = tmp_path / "home"
    monkeypatch.setenv("ECAUG_HOME", str(home))
    monkeypatch.delenv("ECAUG_REDIS_URL", raising=False)
    args = ["demo", "--max-users", "300", "--rows", "300", "--gan-steps", "60", "--epochs", "1", "--seeds", "1", "--json"]
    try:
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, (r.output[-3000:], r.exception)
        out = json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        EmbeddedRedis.for_state(home).stop()

    # augment: a run directory exists whatever the gate said; it is published only if it passed
    aug = out["augment"]
    assert aug["gate"] in ("pass", "fail")
    assert (home / "runs" / aug["run_id"] / "manifest.json").exists()
    assert bool(aug["activated"]) == (aug["gate"] == "pass")
    assert 0.0 <= aug["c2st_auc"] <= 1.0

    # the default generator is the sequence GAN: both of its detectors are reported, and the gate
    # says pass exactly when both are within the default bar
    assert aug["generator"] == "sequence" and aug["rows_accepted"] > 0
    both = [aug["c2st_auc"], aug["c2st_auc_sequences"]]
    assert (aug["gate"] == "pass") == (None not in both and max(both) <= 0.80), aug

    # train: a checkpoint from the Feast offline store, scored on the test split
    tr = out["train"]
    assert (home / "models" / "real" / "model.pt").exists()
    assert 0.0 <= tr["test"]["recall@10"] <= 1.0

    # the train step runs first, and its sequence model is the augment step's teacher, under the
    # teacher's settings (no whole synthetic users; no transition mix), as the lineage records
    assert list(out["seconds"]).index("train") < list(out["seconds"]).index("augment")
    assert aug["teacher"] == tr["checkpoint"] and aug["synthetic"] == 0
    manifest = json.loads((home / "runs" / aug["run_id"] / "manifest.json").read_text())
    assert manifest["lineage"]["teacher"]["checkpoint"] == tr["checkpoint"], manifest["lineage"]
    assert manifest["config"]["gan"]["transition_mix"] == 0.0 and manifest["config"]["expansions"] == 3

    # serve check: 10 distinct catalogue items, none of them in the user's training history
    sc = out["serve_check"]
    uid = out["online_read"]["user_id"]
    inter = pd.read_parquet(home / "datasets" / "beauty" / "interactions.parquet")
    seen = set(inter.loc[(inter["user_id"] == uid) & (inter["split"] == "train"), "item_id"])
    items = pd.read_parquet(home / "datasets" / "beauty" / "items.parquet")
    assert sc["fallback"] is None and len(sc["items"]) == 10 and len(set(sc["items"])) == 10
    assert not seen & set(sc["items"])
    assert set(sc["items"]) <= set(items["item_id"])

    # the study: every method at both quick fractions
    ex = out["experiment"]
    got = {(r["method"], r["fraction"]) for r in ex["results"]}
    for m in ("popularity", "real_only", "column_gan", "oversample", "smote"):
        assert {(m, 0.25), (m, 1.0)} <= got
    assert set(out["seconds"]) >= {"ingest", "augment", "train", "serve_check", "experiment"}


def test_demo_bad_generator_is_one_line():
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", "demo", "--generator", "nope"], capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    assert "--generator must be sequence or column" in p.stderr and "Traceback" not in p.stderr


def test_demo_teacher_is_the_train_steps_sequence_model_only(caplog):
    import logging

    from ecaug_feast.cli.demo_cmd import _teacher

    assert _teacher({"model": "sequence", "model_dir": "/m/real", "teacher": True}) == "/m/real"
    with caplog.at_level(logging.INFO):
        assert _teacher({"model": "bag", "model_dir": "/m/real", "teacher": True}) is None  # a bag model cannot teach
        assert _teacher({"model": "sequence", "teacher": True}) is None  # no train step before augment
    assert "not a sequence model" in caplog.records[0].getMessage()
    assert "no train step ran" in caplog.records[1].getMessage()
    assert _teacher({"model": "sequence", "model_dir": "/m/real", "teacher": False}) is None  # --no-teacher
