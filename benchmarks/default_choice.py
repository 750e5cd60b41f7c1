"""The choose-half rules of docs/results/default-choice.md.

    python benchmarks/default_choice.py RESULTS_DIR_OR_JSON [...] [--json]
    python benchmarks/default_choice.py DIR [...] --rule labeler     # the second rule

Reads study outputs (``results.json``: each run's candidates and their ``choose`` NDCG@10) and
compares a candidate with an incumbent in every (dataset, fraction, seed) cell where both ran:
the ratio of their choose-half NDCG@10, averaged over the seeds of each (dataset, fraction), then
over those. The candidate wins when the mean is >= the rule's margin. Rules (declared in that file):

- ``default`` (the first): ``gan_disc_select`` against ``distill_priors`` (``gan_no_adversarial``:
  the same settings), margin +1 %.
- ``labeler`` (the next choice): ``gan_disc_select_no_labeler`` against ``gan_disc_select``,
  margin 0 %: the labeler's filter leaves ``gan_disc_select`` when the candidate wins.

Prints validation figures only, never a test figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# rule -> (candidate, incumbent and its other names, margin the candidate must reach)
RULES = {
    # the first rule: the extra stage must win by +1 % on validation (default-choice.md, item 4)
    "default": ("gan_disc_select", ("distill_priors", "gan_no_adversarial"), 0.01),
    # the next choice: the filter is the extra part, and costs seconds, so no margin (its item 3)
    "labeler": ("gan_disc_select_no_labeler", ("gan_disc_select",), 0.0),
}


def choose_cells(paths: list[Path], rule: str = "default") -> dict[tuple[str, float, int], dict[str, float]]:
    """(dataset, fraction, seed) -> {"candidate", "incumbent"}: choose-half NDCG@10 of each."""
    candidate, incumbent, _ = RULES[rule]
    cells: dict[tuple[str, float, int], dict[str, float]] = {}
    for p in paths:
        res = json.loads((p / "results.json" if p.is_dir() else p).read_text())
        ds = res["protocol"]["dataset"]
        for r in res["runs"]:
            role = "candidate" if r["method"] == candidate else "incumbent" if r["method"] in incumbent else None
            if role is None or not r.get("tried"):
                continue
            key = (ds, float(r["fraction"]), int(r["seed"]))
            if role in cells.setdefault(key, {}):
                raise SystemExit(f"error: {p}: {key} has {role} twice")
            cells[key][role] = max(t["choose_ndcg@10"] for t in r["tried"])
    return {k: v for k, v in cells.items() if len(v) == 2}


def decide(cells: dict[tuple[str, float, int], dict[str, float]], rule: str = "default") -> dict:
    candidate, incumbent, margin = RULES[rule]
    groups: dict[tuple[str, float], list[float]] = {}
    for (ds, f, _), v in sorted(cells.items()):
        groups.setdefault((ds, f), []).append(v["candidate"] / v["incumbent"] - 1)
    means = {f"{ds} {f:g}": float(np.mean(r)) for (ds, f), r in groups.items()}
    overall = float(np.mean(list(means.values()))) if means else float("nan")
    return {"cells": [{"dataset": ds, "fraction": f, "seed": s, **v, "ratio": v["candidate"] / v["incumbent"] - 1}
                      for (ds, f, s), v in sorted(cells.items())],
            "by_dataset_fraction": means, "mean": overall, "margin": margin, "rule": rule,
            "candidate": candidate, "incumbent": incumbent[0],
            "default": candidate if overall >= margin else incumbent[0], "scored_on": "validation, choose half"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, nargs="+")
    ap.add_argument("--rule", choices=sorted(RULES), default="default",
                    help="default: gan_disc_select vs distill_priors (+1 %%); labeler: its unfiltered ablation vs gan_disc_select (0 %%)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    out = decide(choose_cells(a.results, a.rule), a.rule)
    if a.json:
        print(json.dumps(out))
        return 0
    w1, w2 = max(16, len(out["candidate"])), max(15, len(out["incumbent"]))
    print(f"{'dataset':8} {'fraction':>8} {'seed':>4} {out['candidate']:>{w1}} {out['incumbent']:>{w2}} {'ratio':>8}   (choose-half NDCG@10)")
    for c in out["cells"]:
        print(f"{c['dataset']:8} {c['fraction']:8g} {c['seed']:4d} {c['candidate']:{w1}.5f} {c['incumbent']:{w2}.5f} {c['ratio']:+8.1%}")
    for k, v in out["by_dataset_fraction"].items():
        print(f"mean {k}: {v:+.1%}")
    print(f"mean over (dataset, fraction): {out['mean']:+.2%} -> {out['default']} (rule {out['rule']}: "
          f"{out['candidate']} at >= {out['margin']:+.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
