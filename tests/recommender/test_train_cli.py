"""``ecaug train`` from the Feast offline store, then ``ecaug finetune --from`` that checkpoint."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner


def _train(runner: CliRunner, dataset: str, name: str) -> dict:
    """One-epoch ``ecaug train`` from the Feast offline store; returns its --json summary."""
    from ecaug_feast.cli.main import app

    r = runner.invoke(app, ["train", "--dataset", dataset, "--name", name, "--model", "bag", "--epochs", "1", "--dim", "8",
                            "--batch-size", "256", "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_train_from_feast_then_finetune(feast_env):
    from ecaug_feast.cli.main import app
    from recommender.checkpoint import load_checkpoint

    runner = CliRunner()
    out = _train(runner, feast_env.data.name, "cli-real")
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


@pytest.mark.slow
def test_finetune_on_a_published_synthetic_run(feast_env):
    """train -> a gated synthetic run published into Feast -> finetune on real + that run."""
    from ecaug_feast.quality.gates import GateConfig
    from ecaug_feast.synth.gan import GANConfig
    from ecaug_feast.synth.pipeline import AugmentConfig
    from ecaug_feast.jobs.augment import augment_run
    from ecaug_feast.jobs.workspace import Workspace
    from ecaug_feast.cli.main import app
    from recommender.checkpoint import load_checkpoint

    runner = CliRunner()
    _train(runner, feast_env.data.name, "ft-base")
    _, base_meta = load_checkpoint("ft-base")
    # smoke-sized GAN and a loose gate so the run is published (gate behaviour: tests/quality)
    cfg = AugmentConfig(gan=GANConfig(max_steps=60, eval_every=30, calib_rows=2000), max_fit_rows=2500, holdout_rows=500,
                        gates=GateConfig(max_c2st_auc=1.0, min_column_shapes=0.0, min_pair_trends=0.0, c2st_rows=1000))
    ws = Workspace.from_env(repo=feast_env.repo_dir)
    run = augment_run(ws, rows=400, seed=3, config=cfg)
    assert run["gate"] == "pass" and run["activated"], run

    # fine-tuning reads the run through Feast (user_features_synth, point in time); the pandas join
    # of the run's files (kept for runs the views do not serve) gives the same rows
    import pandas as pd

    from ecaug_feast.jobs.finetune import synthetic_examples
    from ecaug_feast.jobs.train import load_real

    data, _, _ = load_real(ws, feast_env.data.name, "feast")
    via_feast, rid = synthetic_examples(ws, data, None, source="feast")
    in_memory, _ = synthetic_examples(ws, data, None, source="memory")
    assert rid == run["run_id"] and len(via_feast) > 0
    key = ["user_id", "item_id", "event_timestamp"]
    a = via_feast.sort_values(key).reset_index(drop=True)
    b = in_memory.sort_values(key).reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    for c in a.columns:
        if a[c].dtype == object:
            assert [list(x) for x in a[c]] == [list(x) for x in b[c]], c
        else:
            pd.testing.assert_series_equal(a[c], b[c], check_dtype=False, check_exact=False, rtol=1e-6, obj=c)

    r2 = runner.invoke(app, ["finetune", "--from", "ft-base", "--mix-ratio", "0.5", "--mode", "adapters", "--epochs", "1",
                             "--dataset", feast_env.data.name, "--name", "ft-mixed", "--json"])
    assert r2.exit_code == 0, r2.output
    ft = json.loads(r2.stdout.strip().splitlines()[-1])
    assert ft["run_id"] == run["run_id"] and ft["mix_ratio"] == 0.5
    _, meta = load_checkpoint("ft-mixed")
    assert meta["data"]["run_id"] == run["run_id"]
    # the mixed training set is the real one plus some of the run's positive synthetic rows
    added = meta["data"]["examples"] - base_meta["data"]["examples"]
    assert 0 < added <= run["rows_accepted"]
