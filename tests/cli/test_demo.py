"""``ecaug demo`` end to end, every step, on 300 Beauty users with smoke-size budgets.

Real parts throughout: the demo's own embedded Redis, a Feast repo in a temp state dir, the
generator, TorchRec training and fine-tuning, the serving app.
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
    args = ["demo", "--max-users", "300", "--epochs", "1", "--json"]
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

    # the train step runs first, and its sequence model (models/real) is the augment step's teacher,
    # chosen as `ecaug augment` chooses it by default, under the teacher's settings (no whole
    # synthetic users; the generator's sampling priors, no adversarial stage, kept at random:
    # distill_priors), as the lineage records
    assert list(out["seconds"]).index("train") < list(out["seconds"]).index("augment")
    assert aug["teacher"] == tr["checkpoint"] and aug["synthetic"] == 0
    manifest = json.loads((home / "runs" / aug["run_id"] / "manifest.json").read_text())
    assert manifest["lineage"]["teacher"]["checkpoint"] == tr["checkpoint"], manifest["lineage"]
    assert manifest["lineage"]["teacher_choice"].startswith("default")
    assert manifest["lineage"]["recipe"] == "distill_priors"
    assert manifest["config"]["gan"]["transition_mix"] == 0.08 and manifest["config"]["expansions"] == 3
    assert manifest["config"]["gan"]["adversarial"] is False and manifest["config"]["keep"] == "random"
    assert manifest["config"]["refine"] is None and "refinement" not in manifest["lineage"]["teacher"]
    assert manifest["metrics"]["kept_by"] in ("random", "all")  # all: fewer passed than the pool's size

    # finetune (ecaug finetune's defaults: pre-train on real + the run, then real) and the
    # comparison the demo ends on: both models on the same test users
    ft, cmp = out["finetune"], out["compare"]
    assert cmp["test_users"] == tr["test"]["users"] > 0
    if aug["activated"]:
        assert ft["run_id"] == aug["run_id"] and ft["protocol"] == "pretrain" and ft["synthetic_histories"] > 0
        assert cmp["augmented"] == ft["checkpoint"] and cmp["real_only"] == tr["checkpoint"]
        m = cmp["metrics"]["ndcg@10"]
        assert (m["real_only"], m["augmented"]) == (tr["test"]["ndcg@10"], ft["test"]["ndcg@10"])
    else:
        assert "skipped" in ft and cmp["augmented"] is None

    # serve check: 10 distinct catalogue items, none of them in the user's training history
    sc = out["serve_check"]
    uid = out["online_read"]["user_id"]
    inter = pd.read_parquet(home / "datasets" / "beauty" / "interactions.parquet")
    seen = set(inter.loc[(inter["user_id"] == uid) & (inter["split"] == "train"), "item_id"])
    items = pd.read_parquet(home / "datasets" / "beauty" / "items.parquet")
    assert sc["fallback"] is None and len(sc["items"]) == 10 and len(set(sc["items"])) == 10
    assert not seen & set(sc["items"])
    assert set(sc["items"]) <= set(items["item_id"])

    assert list(out["seconds"]) == ["redis", "ingest", "apply", "materialize", "online_read", "train", "augment", "finetune",
                                    "serve_check", "compare", "summary"]


def test_demo_bad_generator_is_one_line():
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", "demo", "--generator", "nope"], capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    assert "--generator must be one of sequence, column" in p.stderr and "Traceback" not in p.stderr
