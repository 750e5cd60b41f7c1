"""The study's report: paired 95 % intervals of each method's lift over ``real_only``.

Lift = mean NDCG@10 of the method / mean NDCG@10 of ``real_only`` - 1, over the same users.
Interval: a two-stage bootstrap (:func:`lift_interval`): each resample draws the seeds with
replacement, then, within each drawn seed, the scored users with replacement (the same users for
the method and ``real_only``: paired), and averages the per-seed lifts; the 2.5 and 97.5
percentiles bound it. The per-seed lifts and their spread are reported beside it. One row per
(fraction, method). A screen's rows are validation (``choose`` half) figures and say so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BASE = "real_only"


def lift_interval(method: list[np.ndarray], base: list[np.ndarray], resamples: int = 1000, seed: int = 0,
                  level: float = 0.95) -> dict[str, Any]:
    """Lift of ``method`` over ``base`` (per seed: per-user metric arrays over the same users) with
    its two-stage bootstrap interval; see the module docstring. (The lift is the contrast of
    ``method`` with ``base`` itself: (m - b) / b.)"""
    for m, b in zip(method, base):
        if len(m) != len(b):
            raise ValueError("paired arrays: the same users for the method and the base")
    c = contrast_interval(method, base, base, resamples, seed, level)
    pts = np.array(c["seed_points"])
    return {"lift": c["points"], "low": c["low"], "high": c["high"], "seed_lifts": c["seed_points"],
            "seed_std": float(np.nanstd(pts, ddof=1)) if len(pts) > 1 else 0.0}


def summarize(rows: list[dict[str, Any]], resamples: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """One row per (fraction, method): mean NDCG@10 / Recall@10 over seeds and the lift interval
    against ``real_only`` (when it ran in the same cells)."""
    out = []
    keys = sorted({(r["fraction"], r["method"]) for r in rows}, key=lambda k: k[0])
    order = {m: i for i, m in enumerate(dict.fromkeys(r["method"] for r in rows))}
    for f, meth in sorted(keys, key=lambda k: (k[0], order[k[1]])):
        mine = sorted([r for r in rows if r["fraction"] == f and r["method"] == meth], key=lambda r: r["seed"])
        rec: dict[str, Any] = {"fraction": f, "method": meth, "seeds": len(mine), "scored_on": mine[0]["scored_on"],
                               "ndcg@10": float(np.mean([r["metrics"]["ndcg@10"] for r in mine])),
                               "recall@10": float(np.mean([r["metrics"]["recall@10"] for r in mine]))}
        # the product's realism gate on each seed's pool: the study trains on a pool whatever its gate
        # said (publish off), `ecaug augment` publishes only a pass, so the table says which it was
        gates = [str((r.get("pool") or {}).get("gate")) for r in mine if (r.get("pool") or {}).get("gate")]
        rec["gate"] = ", ".join(f"{g} {gates.count(g)}/{len(mine)}" for g in dict.fromkeys(gates)) if gates else "-"
        # the validation figure choices are made on (the choose half): the chosen candidate's, per seed
        chose = [max(t["choose_ndcg@10"] for t in r["tried"]) for r in mine if r.get("tried")]
        rec["choose_ndcg@10"] = float(np.mean(chose)) if chose else None
        base = {r["seed"]: r for r in rows if r["fraction"] == f and r["method"] == BASE}
        paired = [r for r in mine if r["seed"] in base and r.get("per_user")]
        if meth != BASE and paired and all(base[r["seed"]].get("per_user") for r in paired):
            rec.update(lift_interval([r["per_user"]["ndcg@10"] for r in paired], [base[r["seed"]]["per_user"]["ndcg@10"] for r in paired],
                                     resamples, seed))
        out.append(rec)
    return out


def table_markdown(summary: list[dict[str, Any]], screen: bool) -> str:
    """The report table; a screen's header says its figures are validation (``choose`` half)."""
    split = "validation (choose half)" if screen else "test"
    lines = [f"| fraction | method | seeds | lift NDCG@10 vs real_only ({split}) | 95 % interval | per-seed lifts | "
             f"NDCG@10 ({split}) | Recall@10 ({split}) | NDCG@10 (choose half) | pool's realism gate |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary:
        if "lift" in r:
            lift, ci = f"{r['lift']:+.1%}", f"[{r['low']:+.1%}, {r['high']:+.1%}]"
            seeds = ", ".join(f"{x:+.1%}" for x in r["seed_lifts"])
        else:
            lift, ci, seeds = "-", "-", "-"
        lines.append(f"| {r['fraction']:g} | {r['method']} | {r['seeds']} | {lift} | {ci} | {seeds} | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} | "
                     f"{'-' if r.get('choose_ndcg@10') is None else format(r['choose_ndcg@10'], '.4f')} | {r.get('gate', '-')} |")
    return "\n".join(lines) + "\n"



# ------------------------------------------------------------------------------------------------
# contrasts: the GAN method against its controls and ablations (issue 30's bar is in lift points)

# (method, control): "method beats control by X points of lift over real_only"
CONTRASTS = (("gan_augmented", "self_distill"), ("gan_augmented", "real_twice"), ("gan_augmented", "gan_no_adversarial"),
             ("gan_augmented", "gan_no_labeler"), ("gan_disc_select", "gan_augmented"),
             ("gan_no_adversarial", "self_distill"), ("self_distill", "real_twice"),
             # the product default (distill_priors = gan_no_adversarial's settings) against its labeler ablation
             ("gan_no_adversarial", "distill_priors_no_labeler"), ("distill_priors", "distill_priors_no_labeler"),
             # the whole GAN part (stage + discriminator selection) against the pool without it
             ("gan_disc_select", "gan_no_adversarial"), ("gan_disc_select", "distill_priors"),
             # gan_disc_select (the product default for one session) against the issue's two controls
             ("gan_disc_select", "self_distill"), ("gan_disc_select", "real_twice"),
             # gan_disc_select's ablations: its policy updates, its labeler; and the ASReP control
             ("gan_disc_select", "gan_disc_select_no_adversarial"), ("gan_disc_select", "gan_disc_select_no_labeler"),
             ("gan_disc_select", "pseudo_prior"))


def contrast_interval(method: list[np.ndarray], control: list[np.ndarray], base: list[np.ndarray], resamples: int = 1000,
                      seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Lift of ``method`` minus lift of ``control`` (both over ``base``, the same users per seed) in
    lift points, with the two-stage bootstrap of :func:`lift_interval` (the same user draw for all
    three arrays: paired)."""
    if not (len(method) == len(control) == len(base)) or not method:
        raise ValueError("one per-user array per seed for method, control and base, same seeds")
    if any(not (len(m) == len(c) == len(b)) for m, c, b in zip(method, control, base)):
        raise ValueError("paired arrays: the same users for method, control and base")
    pts = np.array([(m.mean() - c.mean()) / b.mean() if b.mean() > 0 else np.nan for m, c, b in zip(method, control, base)])
    rng = np.random.default_rng(seed)
    n_s = len(method)
    boot = np.empty(resamples)
    for r in range(resamples):
        seeds = rng.integers(0, n_s, n_s) if n_s > 1 else np.zeros(1, np.int64)
        per = []
        for s in seeds:
            w = np.bincount(rng.integers(0, len(base[s]), len(base[s])), minlength=len(base[s]))
            b = w @ base[s]
            per.append((w @ method[s] - w @ control[s]) / b if b > 0 else np.nan)
        boot[r] = np.mean(per)
    a = (1 - level) / 2
    lo, hi = np.nanquantile(boot, [a, 1 - a]) if np.isfinite(boot).any() else (np.nan, np.nan)
    return {"points": float(np.nanmean(pts)), "low": float(lo), "high": float(hi), "seed_points": [float(x) for x in pts]}


def summarize_contrasts(rows: list[dict[str, Any]], resamples: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """One row per (fraction, :data:`CONTRASTS` pair) whose two methods and ``real_only`` ran in
    the same cells."""
    out = []
    by = {(r["fraction"], r["method"], r["seed"]): r for r in rows if r.get("per_user")}
    for f in sorted({r["fraction"] for r in rows}):
        for meth, ctrl in CONTRASTS:
            seeds = sorted(s for (ff, m, s) in by if ff == f and m == meth and (f, ctrl, s) in by and (f, BASE, s) in by)
            if not seeds:
                continue
            arr = [[by[(f, m, s)]["per_user"]["ndcg@10"] for s in seeds] for m in (meth, ctrl, BASE)]
            out.append({"fraction": f, "method": meth, "control": ctrl, "seeds": len(seeds),
                        **contrast_interval(*arr, resamples=resamples, seed=seed)})
    return out


def contrast_markdown(contrasts: list[dict[str, Any]], screen: bool) -> str:
    """The contrasts table (empty when there are none)."""
    if not contrasts:
        return ""
    split = "validation (choose half)" if screen else "test"
    lines = [f"| fraction | method | control | seeds | method − control, NDCG@10 lift points ({split}) | 95 % interval | per seed |",
             "|---|---|---|---|---|---|---|"]
    for c in contrasts:
        lines.append(f"| {c['fraction']:g} | {c['method']} | {c['control']} | {c['seeds']} | {100 * c['points']:+.1f} | "
                     f"[{100 * c['low']:+.1f}, {100 * c['high']:+.1f}] | {', '.join(f'{100 * x:+.1f}' for x in c['seed_points'])} |")
    return "\n".join(lines) + "\n"

# ------------------------------------------------------------------------------------------------
# the cold-item study (issue 34): cold / warm / all, each with an interval

COLD_BASE = "cold_attr_tower"  # the issue's bar: the generator against the DropoutNet-style tower
GROUPS = ("cold", "warm", "all")


def mean_interval(per_seed: list[np.ndarray], resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Mean of a per-user metric (one array per seed) with a two-stage bootstrap interval: seeds
    with replacement, then users within each drawn seed; the mean of the per-seed means."""
    if not per_seed or any(len(a) == 0 for a in per_seed):
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan")}
    rng = np.random.default_rng(seed)
    n_s = len(per_seed)
    boot = np.empty(resamples)
    for r in range(resamples):
        seeds = rng.integers(0, n_s, n_s) if n_s > 1 else np.zeros(1, np.int64)
        boot[r] = np.mean([per_seed[s][rng.integers(0, len(per_seed[s]), len(per_seed[s]))].mean() for s in seeds])
    a = (1 - level) / 2
    lo, hi = np.quantile(boot, [a, 1 - a])
    return {"mean": float(np.mean([x.mean() for x in per_seed])), "low": float(lo), "high": float(hi)}


def summarize_cold(rows: list[dict[str, Any]], resamples: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """One row per method: per group (cold / warm / all) NDCG@10 and Recall@10 with their
    intervals, and the NDCG@10 lift over ``cold_attr_tower`` per group (paired: the same users)."""
    out = []
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for meth in methods:
        mine = sorted([r for r in rows if r["method"] == meth], key=lambda r: r["seed"])
        base = {r["seed"]: r for r in rows if r["method"] == COLD_BASE}
        rec: dict[str, Any] = {"fraction": 1.0, "method": meth, "seeds": len(mine), "scored_on": mine[0]["scored_on"],
                               "ndcg@10": float(np.mean([r["metrics"]["ndcg@10"] for r in mine])),
                               "recall@10": float(np.mean([r["metrics"]["recall@10"] for r in mine])), "groups": {}}
        for g in GROUPS:
            sel = [_group_mask(r, g) for r in mine]
            grp: dict[str, Any] = {"users": int(np.mean([s.sum() for s in sel]))}
            for k in ("ndcg@10", "recall@10"):
                grp[k] = mean_interval([r["per_user"][k][s] for r, s in zip(mine, sel)], resamples, seed)
            paired = [r for r in mine if r["seed"] in base]
            if meth != COLD_BASE and paired:
                m_arr = [r["per_user"]["ndcg@10"][_group_mask(r, g)] for r in paired]
                b_arr = [base[r["seed"]]["per_user"]["ndcg@10"][_group_mask(r, g)] for r in paired]
                if all(len(a) == len(b) and len(a) for a, b in zip(m_arr, b_arr)):
                    grp["lift_vs_" + COLD_BASE] = lift_interval(m_arr, b_arr, resamples, seed)
            rec["groups"][g] = grp
        out.append(rec)
    return out


def _group_mask(r: dict[str, Any], g: str) -> np.ndarray:
    cold = np.asarray(r["per_user"]["cold"], dtype=bool)
    return cold if g == "cold" else (~cold if g == "warm" else np.ones(len(cold), dtype=bool))


def cold_table_markdown(summary: list[dict[str, Any]], screen: bool) -> str:
    """The cold / warm / all table: mean over seeds [95 % interval]; lift of NDCG@10 over the
    attribute tower [interval]. A screen's header says its figures are validation."""
    split = "validation (choose half)" if screen else "test"

    def ci(d: dict[str, Any], fmt: str = ".4f") -> str:
        return f"{d['mean']:{fmt}} [{d['low']:{fmt}}, {d['high']:{fmt}}]"

    def lift(d: dict[str, Any] | None) -> str:
        return "-" if not d else f"{d['lift']:+.1%} [{d['low']:+.1%}, {d['high']:+.1%}]"

    head = "| method | seeds | " + " | ".join(f"{g} NDCG@10 | {g} Recall@10" for g in GROUPS) + \
        f" | cold NDCG@10 vs {COLD_BASE} | warm NDCG@10 vs {COLD_BASE} |"
    lines = [f"Scored on: {split}. Mean over seeds [95 % interval: two-stage bootstrap, seeds then users]; "
             f"users per group (seed mean): " + ", ".join(f"{g} {summary[0]['groups'][g]['users']}" for g in GROUPS) if summary else "",
             "", head, "|" + "---|" * (2 + 2 * len(GROUPS) + 2)]
    key = "lift_vs_" + COLD_BASE
    for r in summary:
        gs = r["groups"]
        cells = " | ".join(f"{ci(gs[g]['ndcg@10'])} | {ci(gs[g]['recall@10'])}" for g in GROUPS)
        lines.append(f"| {r['method']} | {r['seeds']} | {cells} | {lift(gs['cold'].get(key))} | {lift(gs['warm'].get(key))} |")
    return "\n".join(lines) + "\n"
