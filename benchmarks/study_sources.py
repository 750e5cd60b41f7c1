"""What the study's Feast example path costs against the in-memory shortcut, per history fraction.

    python benchmarks/study_sources.py [--fractions 0.25,1.0] [--max-users N]

On Beauty's training split (the registry's copy, split as ingest splits it): for each fraction,
``memory`` = ``build_in_memory``; ``feast`` = ingest's writer into a private Feast repo + apply
(``write_feast_repo``, once per fraction in the study) and the read through
``get_historical_features`` (``train_data``, once per cell). Prints one JSON line per fraction.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fractions", default="0.25,1.0")
    ap.add_argument("--max-users", type=int, default=None)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    from ecaug_feast.datasets import load_dataset
    from ecaug_feast.datasets.split import split_interactions
    from ecaug_feast.jobs.study_data import train_data, write_feast_repo
    from recommender.data import truncate_history
    from recommender.study_methods import sample_users

    ds = load_dataset("beauty")
    sp = split_interactions(ds)
    train, valid, _ = sample_users(sp.train, sp.valid, sp.test, a.max_users)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("ECAUG_HOME", tmp)  # nothing of the caller's state is touched
        for f in [float(x) for x in a.fractions.split(",")]:
            tr = truncate_history(train, f)
            t0 = time.perf_counter()
            mem = train_data("memory", tr, ds.items, valid)
            t_mem = time.perf_counter() - t0
            t0 = time.perf_counter()
            write_feast_repo(os.path.join(tmp, f"f{f:g}"), tr, ds.items, "bench")
            t_write = time.perf_counter() - t0
            t0 = time.perf_counter()
            fe = train_data("feast", tr, ds.items, valid, os.path.join(tmp, f"f{f:g}"))
            t_read = time.perf_counter() - t0
            assert len(fe.examples) == len(mem.examples)
            print(json.dumps({"fraction": f, "users": int(tr["user_id"].nunique()), "examples": int(len(mem.examples)),
                              "memory_s": round(t_mem, 2), "feast_write_apply_s": round(t_write, 2), "feast_read_s": round(t_read, 2),
                              "loadavg": round(os.getloadavg()[0], 2)}), flush=True)


if __name__ == "__main__":
    main()
