"""Worker for tests/recommender/test_train.py: trains the bag two-tower (``recommender.train.train``)
on the first 150 Beauty users, alone or under ``torchrun`` (DMP, gloo), and prints what the test
compares. A test harness, not an entry point: ``ecaug train`` is the way to train (also under torchrun).

    python tests/recommender/dmp_worker.py OUT MODEL_JSON                                 # one process
    python -m torch.distributed.run --nproc_per_node 2 tests/recommender/dmp_worker.py OUT MODEL_JSON

Rank 0 writes the checkpoint ``OUT`` and prints one JSON line (world size, loss per epoch).
"""

from __future__ import annotations

import json
import os
import sys

from ecaug_feast.datasets import load_dataset
from ecaug_feast.datasets.split import split_interactions
from ecaug_feast.jobs.train_data import build_in_memory
from recommender.checkpoint import save_checkpoint
from recommender.train import TrainConfig, model_config_for, train

USERS = 150


def main(out: str, model: str) -> None:
    ds = load_dataset("beauty")
    sp = split_interactions(ds)
    train_rows = sp.train[sp.train["user_id"] <= USERS].reset_index(drop=True)
    valid_rows = sp.valid[sp.valid["user_id"] <= USERS].reset_index(drop=True)
    data = build_in_memory(train_rows, ds.items, valid_rows)
    cfg = model_config_for(data, **json.loads(model))
    res = train(data, None, cfg, TrainConfig(epochs=1, batch_size=64, seed=0, patience=1))  # no validation: the last epoch
    if res.model is not None:  # rank 0
        save_checkpoint(out, res.state, cfg, res.model.catalog)
        print(json.dumps({"world_size": int(os.environ.get("WORLD_SIZE", "1")), "loss": [h["loss"] for h in res.history]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
