"""The product default's choice on the choose half (the rule of docs/results/default-choice.md).

    python benchmarks/default_choice.py RESULTS_DIR_OR_JSON [...] [--json]

Reads study outputs (``results.json``: each run's candidates and their ``choose`` NDCG@10) and
compares ``gan_disc_select`` with ``distill_priors`` (``gan_no_adversarial``: the same settings)
in every (dataset, fraction, seed) cell where both ran: the ratio of their choose-half NDCG@10,
averaged over the seeds of each (dataset, fraction), then over those. ``gan_disc_select`` is the
default when the mean is >= +1 %. Prints validation figures only, never a test figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

CANDIDATE, INCUMBENT = "gan_disc_select", ("distill_priors", "gan_no_adversarial")
MARGIN = 0.01  # what the extra stage must win by on validation (docs/results/default-choice.md, item 4)


def choose_cells(paths: list[Path]) -> dict[tuple[str, float, int], dict[str, float]]:
    """(dataset, fraction, seed) -> {"candidate", "incumbent"}: choose-half NDCG@10 of each."""
    cells: dict[tuple[str, float, int], dict[str, float]] = {}
    for p in paths:
        res = json.loads((p / "results.json" if p.is_dir() else p).read_text())
        ds = res["protocol"]["dataset"]
        for r in res["runs"]:
            role = "candidate" if r["method"] == CANDIDATE else "incumbent" if r["method"] in INCUMBENT else None
            if role is None or not r.get("tried"):
                continue
            key = (ds, float(r["fraction"]), int(r["seed"]))
            if role in cells.setdefault(key, {}):
                raise SystemExit(f"error: {p}: {key} has {role} twice")
            cells[key][role] = max(t["choose_ndcg@10"] for t in r["tried"])
    return {k: v for k, v in cells.items() if len(v) == 2}


def decide(cells: dict[tuple[str, float, int], dict[str, float]]) -> dict:
    groups: dict[tuple[str, float], list[float]] = {}
    for (ds, f, _), v in sorted(cells.items()):
        groups.setdefault((ds, f), []).append(v["candidate"] / v["incumbent"] - 1)
    means = {f"{ds} {f:g}": float(np.mean(r)) for (ds, f), r in groups.items()}
    overall = float(np.mean(list(means.values()))) if means else float("nan")
    return {"cells": [{"dataset": ds, "fraction": f, "seed": s, **v, "ratio": v["candidate"] / v["incumbent"] - 1}
                      for (ds, f, s), v in sorted(cells.items())],
            "by_dataset_fraction": means, "mean": overall, "margin": MARGIN,
            "default": CANDIDATE if overall >= MARGIN else INCUMBENT[0], "scored_on": "validation, choose half"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, nargs="+")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    out = decide(choose_cells(a.results))
    if a.json:
        print(json.dumps(out))
        return 0
    print(f"{'dataset':8} {'fraction':>8} {'seed':>4} {CANDIDATE:>16} {INCUMBENT[0]:>15} {'ratio':>8}   (choose-half NDCG@10)")
    for c in out["cells"]:
        print(f"{c['dataset']:8} {c['fraction']:8g} {c['seed']:4d} {c['candidate']:16.5f} {c['incumbent']:15.5f} {c['ratio']:+8.1%}")
    for k, v in out["by_dataset_fraction"].items():
        print(f"mean {k}: {v:+.1%}")
    print(f"mean over (dataset, fraction): {out['mean']:+.2%} -> default {out['default']} (switch at >= {MARGIN:+.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
