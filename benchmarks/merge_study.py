"""Merge the outputs of one study run seed by seed (``first_seed``) into one report.

    python benchmarks/merge_study.py --out DIR [--methods-may-differ] RUN_DIR [RUN_DIR ...]

Each RUN_DIR is an ``ecaug experiment`` output (``results.json`` + ``per_user.npz``) of the same
protocol over different seeds; the merged folder holds the same four files, the intervals over
all the seeds (``ecaug_feast.study.run.merge_studies``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ecaug_feast.errors import EcaugError
from ecaug_feast.study.run import merge_studies


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--methods-may-differ", action="store_true",
                    help="runs may leave methods out; each row counts the seeds it has")
    ap.add_argument("runs", type=Path, nargs="+")
    a = ap.parse_args(argv)
    try:
        s = merge_studies(a.runs, a.out, methods_may_differ=a.methods_may_differ)
    except EcaugError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out_dir": s["out_dir"], "seeds": s["protocol"]["seed_list"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
