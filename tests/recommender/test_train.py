"""Training, checkpoints, fine-tune modes, and the 2-process DMP run against 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recommender.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from recommender.evaluate import make_eval_set
from recommender.model import TwoTower
from recommender.train import TrainConfig, evaluate_model, finetune_config, model_config_for, train



@pytest.fixture(scope="module")
def trained(beauty_small, small_data, tmp_path_factory, tiny_model):
    """One tiny real-only model, saved as a checkpoint."""
    _, sp = beauty_small
    valid = make_eval_set(sp.valid, [sp.train])
    cfg = model_config_for(small_data, **tiny_model)
    res = train(small_data, valid, cfg, TrainConfig(epochs=3, batch_size=128, patience=3, lr_sparse=0.1, lr_dense=3e-3))
    path = save_checkpoint(tmp_path_factory.mktemp("ck") / "real", res.state, cfg, res.model.catalog, metrics=res.best_valid)
    return res, path, valid


def test_training_learns_and_checkpoint_round_trips(trained, small_data):
    res, path, valid = trained
    losses = [h["loss"] for h in res.history]
    assert losses[-1] < losses[0]
    torch.manual_seed(1)
    untrained = TwoTower(res.cfg, catalog=res.model.catalog)
    assert evaluate_model(res.model, small_data, valid)["ndcg@20"] > evaluate_model(untrained, small_data, valid)["ndcg@20"]
    model, meta = load_checkpoint(path)
    assert meta["model"]["num_items"] == res.cfg.num_items
    for k, t in res.model.state_dict().items():
        assert torch.equal(t, model.state_dict()[k]), k
    assert evaluate_model(model, small_data, valid, seed=3) == evaluate_model(res.model, small_data, valid, seed=3)


@pytest.mark.parametrize("mode", ["full", "towers", "adapters"])
def test_finetune_resumes_from_checkpoint(trained, small_data, mode):
    res, path, valid = trained
    base, _ = load_checkpoint(path)
    cfg = finetune_config(base.cfg, mode, adapter_dim=4)
    lr0 = mode == "full"  # full with zero learning rates must return the checkpoint unchanged
    tc = TrainConfig(epochs=1, batch_size=128, finetune_mode=mode, lr_sparse=0.0 if lr0 else 0.1, lr_dense=0.0 if lr0 else 3e-3)
    ft = train(small_data, None, cfg, tc, init_state=base.state_dict())
    old, new = base.state_dict(), ft.model.state_dict()
    emb = [k for k in old if k.startswith("ebc.")]
    mlp = [k for k in old if not k.startswith("ebc.")]
    if mode == "full":
        assert all(torch.equal(old[k], new[k]) for k in old)
    elif mode == "towers":
        assert all(torch.equal(old[k], new[k]) for k in emb)
        assert any(not torch.equal(old[k], new[k]) for k in mlp)
    else:
        assert all(torch.equal(old[k], new[k]) for k in emb + mlp)
        assert any(not torch.equal(new[k], torch.zeros_like(new[k])) for k in new if k.startswith("user_adapter.up"))


def test_bad_checkpoints_are_refused_clearly(trained, tmp_path):
    res, path, _ = trained
    import shutil

    # corrupt weights
    bad = tmp_path / "corrupt"
    shutil.copytree(path, bad)
    (bad / "model.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    # weights for a different model size
    mism = tmp_path / "mismatch"
    shutil.copytree(path, mism)
    meta = json.loads((mism / "config.json").read_text())
    meta["model"]["embedding_dim"] = 12
    (mism / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_checkpoint(mism)
    # a pickle carrying code is not loaded (weights_only=True)
    evil = tmp_path / "evil"
    shutil.copytree(path, evil)
    torch.save({"x": np.dtype("float64"), "f": os.system}, evil / "model.pt")
    with pytest.raises(CheckpointError, match="corrupt or unsafe"):
        load_checkpoint(evil)
    (evil / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="corrupt checkpoint config"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nowhere")


@pytest.mark.slow
def test_two_process_dmp_matches_single_process(tmp_path, tiny_model):
    """torchrun --nproc_per_node=2 (gloo, table-wise sharding) = one process with the same global batch."""
    model = json.dumps({**tiny_model, "dropout": 0.0})
    worker = str(Path(__file__).with_name("dmp_worker.py"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", worker,
                          str(tmp_path / "two"), model], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, worker, str(tmp_path / "one"), model], env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    r2 = json.loads(two.stdout.strip().splitlines()[-1])
    r1 = json.loads(one.stdout.strip().splitlines()[-1])
    assert (r2["world_size"], r1["world_size"]) == (2, 1)
    assert r2["loss"] == pytest.approx(r1["loss"], rel=1e-4)
    a = torch.load(tmp_path / "one" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "model.pt", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-4), (k, float((a[k] - b[k]).abs().max()))


@pytest.mark.slow
def test_ecaug_train_under_torchrun_saves_once_from_rank_0(tmp_path):
    """``torchrun --nproc_per_node=2 -m ecaug_feast.cli.main train``: both ranks train (each its
    slice of every global batch), rank 0 scores test and writes the one checkpoint and summary."""
    home = tmp_path / "home"
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "ECAUG_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    ing = subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", "ingest", "--dataset", "beauty", "--max-users", "150"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert ing.returncode == 0, ing.stderr[-3000:]
    args = ["train", "--source", "memory", "--epochs", "1", "--batch-size", "64", "--dim", "8", "--json"]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "ecaug_feast.cli.main", *args], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    summaries = [json.loads(ln) for ln in two.stdout.splitlines() if ln.startswith("{")]
    assert len(summaries) == 1, two.stdout[-2000:]  # rank 0 only
    out = summaries[0]
    assert out["world_size"] == 2 and out["model"] == "sequence" and Path(out["checkpoint"]) == home / "models" / "real"
    model, meta = load_checkpoint(out["checkpoint"])
    assert model.cfg.sequential and meta["data"]["world_size"] == 2 and 0.0 <= out["test"]["ndcg@10"] <= 1.0


def test_epoch_line_is_one_readable_line():
    from recommender.early_stopping import epoch_line

    rec = {"epoch": 2, "loss": 8.1234, "train_s": 95.04, "valid_ndcg@10": 0.03123, "valid_recall@10": 0.05512,
           "valid_buckets": {"1": {"ndcg@10": 0.1}}}
    assert epoch_line(rec) == "epoch 2: loss 8.123, valid NDCG@10 0.0312, Recall@10 0.0551 (95.0 s)"
    assert epoch_line({"epoch": 3, "loss": 1.0, "budget_stop": True}) == "epoch 3: loss 1.000 (time budget spent)"
