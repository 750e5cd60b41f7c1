"""Worker for tests/recommender/test_seq_sharding.py: trains a tiny sequence two-tower
(``recommender.seq_train.train_seq``) on 128 Beauty users, alone or under ``torchrun``
(DMP, gloo), with the item table laid out as asked, and prints what the test compares. A test
harness, not an entry point (``ecaug train`` trains, also under torchrun).

    python tests/recommender/seq_dmp_worker.py OUT SHARDING                                 # one process
    python -m torch.distributed.run --nproc_per_node 2 tests/recommender/seq_dmp_worker.py OUT SHARDING

Rank 0 saves the final state to ``OUT`` (torch.save) and prints one JSON line: world size, the
loss per epoch, and the top-10 items of 20 users scored with the final model.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

from ecaug_feast.datasets import load_dataset
from ecaug_feast.datasets.split import split_interactions
from ecaug_feast.jobs.train_data import build_in_memory
from recommender.evaluate import make_eval_set
from recommender.seq_train import SeqTrainConfig, seq_config_for, seq_scorer, train_seq

USERS = 128


def main(out: str, sharding: str) -> None:
    torch.set_num_threads(1)
    ds = load_dataset("beauty")
    sp = split_interactions(ds)
    # USERS users with at least 2 training events (each has a next item to predict): whole batches
    # of 32 on both runs (under torchrun a partial last batch is dropped, alone it is not)
    n = sp.train.groupby("user_id").size()
    users = n[n >= 2].index[:USERS]
    train_rows = sp.train[sp.train["user_id"].isin(users)].reset_index(drop=True)
    valid_rows = sp.valid[sp.valid["user_id"].isin(users)].reset_index(drop=True)
    data = build_in_memory(train_rows, ds.items, valid_rows)
    # no dropout: both runs must take the same steps; the dense kernel and Adam everywhere
    cfg = seq_config_for(data, embedding_dim=8, num_blocks=1, num_heads=1, max_len=10, dropout=0.0)
    tcfg = SeqTrainConfig(epochs=2, batch_size=32, seed=0, patience=5, threads=1, sharding=sharding)
    res = train_seq(data, None, cfg, tcfg)  # no validation: the last epoch's weights
    if res.model is not None:  # rank 0
        torch.save(res.state, out)
        es = make_eval_set(valid_rows, [train_rows])
        S = seq_scorer(res.model, data, es)(np.arange(min(20, len(es.users))))
        print(json.dumps({"world_size": int(os.environ.get("WORLD_SIZE", "1")), "loss": [h["loss"] for h in res.history],
                          "top10": torch.topk(S, 10, -1).indices.tolist(), "scores": S[:, :50].tolist()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
