"""``ecaug train`` from the Feast offline store, then ``ecaug finetune --from`` that checkpoint."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner


@pytest.mark.slow
def test_train_from_feast_then_finetune(feast_env):
    from ecaug_feast.cli.main import app
    from recommender.checkpoint import load_checkpoint

    runner = CliRunner()
    r = runner.invoke(app, ["train", "--dataset", feast_env.data.name, "--name", "cli-real", "--epochs", "1", "--dim", "8",
                            "--batch-size", "256", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["test"]["users"] > 0 and 0 <= out["test"]["ndcg@10"] <= 1
    model, meta = load_checkpoint("cli-real")
    assert meta["data"]["source"] == "feast"
    r2 = runner.invoke(app, ["finetune", "--from", "cli-real", "--mix-ratio", "0", "--mode", "towers", "--epochs", "1",
                             "--dataset", feast_env.data.name, "--json"])
    assert r2.exit_code == 0, r2.output
    ft = json.loads(r2.stdout.strip().splitlines()[-1])
    assert ft["from"].endswith("cli-real") and ft["mode"] == "towers"
    # fine-tuning started from the checkpoint: its validation score before training is the trained model's
    assert ft["valid_before"]["ndcg@10"] == pytest.approx(out["valid"]["ndcg@10"], abs=0.02)
    tuned, _ = load_checkpoint(ft["checkpoint"])
    k = "ebc.embedding_bags.t_item.weight"
    assert (tuned.state_dict()[k] == model.state_dict()[k]).all()  # towers mode froze the tables


def test_finetune_missing_checkpoint_is_one_line_error(tmp_path):
    from ecaug_feast.cli.main import app

    r = CliRunner().invoke(app, ["finetune", "--from", str(tmp_path / "nope")])
    assert r.exit_code != 0
    assert "checkpoint not found" in str(r.exception)
