"""``jobs.augment.GENERATORS``: the registry ``ecaug augment --generator`` and the demo read, and
the sequence generator's default teacher (the real-only checkpoint ``ecaug train`` wrote)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecaug_feast.errors import EcaugError
from ecaug_feast.features.build import FEATURE_META
from ecaug_feast.jobs.augment import DEFAULT_GENERATOR, GENERATORS, AugmentRequest, augment, pick_teacher
from ecaug_feast.jobs.workspace import Workspace
from recommender.batching import ItemCatalog
from recommender.checkpoint import save_checkpoint
from recommender.model import ModelConfig, TwoTower
from recommender.seq_model import SeqConfig, SeqTwoTower


def test_the_sequence_generator_is_the_default_and_options_stay_with_their_generator(tmp_path, monkeypatch):
    monkeypatch.setenv("ECAUG_HOME", str(tmp_path))
    ws = Workspace.from_env()
    assert DEFAULT_GENERATOR == "sequence" and set(GENERATORS) == {"sequence", "column"}
    with pytest.raises(EcaugError, match="--generator must be one of sequence, column, got 'gan'"):
        augment(ws, "gan", AugmentRequest())
    # refused before anything is read or fitted (the state folder is empty)
    with pytest.raises(EcaugError, match="--rows goes with the column generator"):
        augment(ws, "sequence", AugmentRequest(rows=10))
    with pytest.raises(EcaugError, match="--no-teacher goes with the sequence generator"):
        augment(ws, "column", AugmentRequest(no_teacher=True))


def _checkpoint(ws: Workspace, model: str, dataset: str) -> None:
    cat = ItemCatalog(num_items=5, num_attributes=2, attr_values=np.zeros(0, np.int64), attr_offsets=np.zeros(6, np.int64))
    if model == "sequence":
        cfg = SeqConfig(num_items=5, num_attributes=2, embedding_dim=4, num_blocks=1, max_len=4)
        net = SeqTwoTower(cfg)
    else:
        cfg = ModelConfig(num_items=5, num_attributes=2, user_buckets=8, embedding_dim=4, hidden_dim=4, out_dim=4)
        net = TwoTower(cfg)
    save_checkpoint(ws.models_dir / "real", net.state_dict(), cfg, cat, data={"dataset": dataset})


def test_the_default_teacher_is_the_real_only_sequence_checkpoint_of_the_ingested_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("ECAUG_HOME", str(tmp_path))
    ws = Workspace.from_env()
    ws.feast_dir.mkdir(parents=True)
    (ws.feast_dir / FEATURE_META).write_text(json.dumps({"dataset": "beauty"}))
    real = str(ws.models_dir / "real")

    teacher, why = pick_teacher(ws, AugmentRequest())
    assert teacher is None and "run `ecaug train` first" in why
    _checkpoint(ws, "bag", "beauty")
    teacher, why = pick_teacher(ws, AugmentRequest())
    assert teacher is None and "bag model" in why
    _checkpoint(ws, "sequence", "toys")
    teacher, why = pick_teacher(ws, AugmentRequest())
    assert teacher is None and "trained on 'toys'" in why
    _checkpoint(ws, "sequence", "beauty")
    assert pick_teacher(ws, AugmentRequest()) == (real, f"default: {real}, the real-only model `ecaug train` wrote")
    assert pick_teacher(ws, AugmentRequest(no_teacher=True)) == (None, "--no-teacher")
    assert pick_teacher(ws, AugmentRequest(teacher="other")) == ("other", "--teacher")
    with pytest.raises(EcaugError, match="exclude each other"):
        pick_teacher(ws, AugmentRequest(teacher="other", no_teacher=True))
