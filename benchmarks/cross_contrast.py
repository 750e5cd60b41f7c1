"""Paired contrasts between methods of two study outputs that ran the same cells.

    python benchmarks/cross_contrast.py A_DIR B_DIR --pairs M1:C1 [M2:C2 ...] [--json]

Two merged study folders (``merge_study.py`` / ``ecaug experiment`` outputs) of the same dataset,
fraction, seeds and users can be compared method against method when they are the same cells: the
script checks that every method both folders hold (``real_only`` at least) scored every test user
identically in every seed (the study is seeded, so a rerun reproduces them), then gives the lift of
each method over ``real_only`` minus the lift of its control, in points, with the paired two-stage
bootstrap of ``study.report.contrast_interval``. A method may come from either folder. Test
figures of runs already reported; it chooses nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ecaug_feast.study.report import BASE, contrast_interval
from ecaug_feast.study.run import read_outputs


def _load(d: Path) -> tuple[dict, dict[tuple[str, str, int], np.ndarray]]:
    """results.json, and (method, fraction, seed) -> per-user NDCG@10 (("users", f, s): user ids),
    read by the study's own reader (``study.run.read_outputs``)."""
    res, rows = read_outputs(d)
    arrays = {}
    for r in rows:
        f, s = f"{r['fraction']:g}", int(r["seed"])
        if "ndcg@10" in r["per_user"]:
            arrays[(r["method"], f, s)] = r["per_user"]["ndcg@10"]
        arrays[("users", f, s)] = r["users"]
    return res, arrays


def cross_contrasts(a: Path, b: Path, pairs: list[tuple[str, str]], resamples: int = 1000, seed: int = 0) -> dict:
    ra, xa = _load(a)
    rb, xb = _load(b)
    if ra["protocol"]["dataset"] != rb["protocol"]["dataset"]:
        raise SystemExit(f"error: {a} and {b} hold other datasets")
    cells = sorted({(f, s) for (_, f, s) in xa} & {(f, s) for (_, f, s) in xb})
    shared = sorted({m for (m, _, _) in xa} & {m for (m, _, _) in xb})  # "users" included: the same test users
    if BASE not in shared or "users" not in shared or not cells:
        raise SystemExit(f"error: {a} and {b} share no {BASE} cell with its test users")
    for m in shared:
        for f, s in cells:
            if (m, f, s) in xa and (m, f, s) in xb and not np.array_equal(xa[(m, f, s)], xb[(m, f, s)]):
                raise SystemExit(f"error: {m} at fraction {f} seed {s} differs between the folders: not the same cells")
    both = {**xb, **xa}
    out = []
    for f in sorted({f for f, _ in cells}):
        for meth, ctrl in pairs:
            seeds = [s for ff, s in cells if ff == f and (meth, f, s) in both and (ctrl, f, s) in both]
            if not seeds:
                continue
            arr = [[both[(m, f, s)] for s in seeds] for m in (meth, ctrl, BASE)]
            out.append({"fraction": float(f), "method": meth, "control": ctrl, "seeds": seeds,
                        **contrast_interval(*arr, resamples=resamples, seed=seed)})
    return {"dataset": ra["protocol"]["dataset"], "checked_equal": [m for m in shared if m != "users"], "contrasts": out, "scored_on": "test"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--pairs", nargs="+", required=True, help="METHOD:CONTROL")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    pairs = [tuple(p.split(":", 1)) for p in args.pairs]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit("error: --pairs takes METHOD:CONTROL")
    for d in (args.a, args.b):
        if not (d / "results.json").is_file() or not (d / "per_user.npz").is_file():
            raise SystemExit(f"error: {d}: not a study output (results.json and per_user.npz)")
    out = cross_contrasts(args.a, args.b, pairs)  # type: ignore[arg-type]
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['dataset']}: the same cells ({', '.join(out['checked_equal'])} equal per user); test, lift points [95 %]")
        for c in out["contrasts"]:
            print(f"  {c['fraction']:g}  {c['method']} - {c['control']}: {100 * c['points']:+.1f} "
                  f"[{100 * c['low']:+.1f}, {100 * c['high']:+.1f}]  seeds {c['seeds']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
