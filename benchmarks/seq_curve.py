"""Learning curve of the sequence model: validation NDCG@10 / Recall@10 per epoch (full ranking,
all validation users), then test metrics with history-length buckets, for one configuration.

Used to compare settings epoch by epoch in separate runs (fp32 vs bf16 logits, batch bucketing):

    python benchmarks/seq_curve.py [--fraction 1.0] [--seed 0] [--dataset beauty]
                                   [--train '{"threads": 1, "bf16": true}'] [--model '{"embedding_dim": 64}']

Prints one line per epoch (epoch, loss, train seconds, valid NDCG@10, valid Recall@10) and a
final ``RESULT {json}`` line. Features are built in memory by the data layer's builders (the same
rows as Feast's offline store: tests/recommender/test_data.py checks the parity).
"""

from __future__ import annotations

import argparse
import json
import time

from ecaug_feast.noise import quiet_known_noise


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="beauty")
    p.add_argument("--fraction", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", default="{}", help="SeqTrainConfig overrides (JSON)")
    p.add_argument("--model", default="{}", help="SeqConfig overrides (JSON)")
    a = p.parse_args()
    quiet_known_noise()
    from ecaug_feast.datasets import load_dataset
    from ecaug_feast.datasets.split import split_interactions
    from ecaug_feast.jobs.train_data import build_in_memory
    from recommender.data import truncate_history
    from recommender.evaluate import make_eval_set
    from recommender.seq_train import SeqTrainConfig, evaluate_seq, seq_config_for, train_seq

    ds = load_dataset(a.dataset)
    sp = split_interactions(ds)
    data = build_in_memory(truncate_history(sp.train, a.fraction), ds.items, sp.valid)
    valid = make_eval_set(sp.valid, [sp.train])
    test = make_eval_set(sp.test, [sp.train, sp.valid])
    cfg = seq_config_for(data, **json.loads(a.model))
    t = time.time()

    def show(e: int, r: dict) -> None:
        print(e, round(r["loss"], 3), r["train_s"], round(r.get("valid_ndcg@10", 0), 4), round(r.get("valid_recall@10", 0), 4), flush=True)

    res = train_seq(data, valid, cfg, SeqTrainConfig(seed=a.seed, **json.loads(a.train)), progress=show)
    te = evaluate_seq(res.model, data, test, "test", seed=a.seed, buckets=True)
    print("RESULT", json.dumps({"dataset": a.dataset, "fraction": a.fraction, "seed": a.seed, "train": json.loads(a.train),
                                "best_epoch": res.best_epoch, "seconds": round(time.time() - t), "test": te}), flush=True)


if __name__ == "__main__":
    main()
