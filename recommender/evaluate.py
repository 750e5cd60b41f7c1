"""Full-ranking evaluation: every item is a candidate, never a sampled subset.

For each evaluated user we score all items 1..I, remove the user's excluded items (training items,
and for the test split also the validation item), and place each held-out target in the ranking:

    rank = #{items scoring strictly higher} + tie offset
    tie offset: "random"      -> uniform in 0..#{other items with the same score}
                "pessimistic" -> #{other items with the same score} (every tie goes against us)

so a model that scores everything equally gets about K/I, never a free hit. A target that is
itself excluded (a re-consumed training item) scores -inf and counts as a miss.

Per user: Recall@K = hits / #targets, NDCG@K = sum 1/log2(rank+2) over hits / ideal DCG.
Coverage@K = share of the catalogue that appears in at least one user's top K.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ecaug_feast.histories import csr_group, csr_take

ScoreFn = Callable[[np.ndarray], torch.Tensor]
# buckets of kept training-history length: where augmentation is expected to matter
HISTORY_BUCKETS = [(1, 1), (2, 3), (4, 7), (8, None)]


@dataclass
class EvalSet:
    """Users to evaluate, with targets and exclusions as CSR over positions 0..n-1."""

    users: np.ndarray  # int64 user ids, one per row
    target_values: np.ndarray
    target_offsets: np.ndarray
    exclude_values: np.ndarray
    exclude_offsets: np.ndarray

    @property
    def n(self) -> int:
        return len(self.users)


def _csr_by_user(users: np.ndarray, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Item ids of ``df`` grouped by ``users`` order -> (values, offsets)."""
    pos = pd.Series(np.arange(len(users)), index=users)
    df = df[df["user_id"].isin(pos.index)]
    return csr_group(pos.loc[df["user_id"].to_numpy()].to_numpy(), df["item_id"].to_numpy(np.int64), len(users))


def make_eval_set(targets: pd.DataFrame, exclude: Sequence[pd.DataFrame]) -> EvalSet:
    """Users with at least one target row; ``exclude``: frames whose (user_id, item_id) are removed."""
    users = np.unique(targets["user_id"].to_numpy(np.int64))
    tv, to = _csr_by_user(users, targets)
    ex = pd.concat([e[["user_id", "item_id"]] for e in exclude], ignore_index=True) if exclude else targets.iloc[:0]
    ev, eo = _csr_by_user(users, ex)
    return EvalSet(users, tv, to, ev, eo)


def evaluate(
    score_fn: ScoreFn,
    es: EvalSet,
    num_items: int,
    ks: Sequence[int] = (10, 20),
    tie_break: str = "random",
    seed: int = 0,
    chunk: int = 1024,
    per_user: bool = False,
) -> dict[str, float]:
    """Metrics averaged over users. ``score_fn(positions)`` -> float tensor [len(positions), I+1]
    where column j scores item id j (column 0 is ignored)."""
    if tie_break not in ("random", "pessimistic"):
        raise ValueError(f"tie_break must be 'random' or 'pessimistic', got {tie_break!r}")
    rng = np.random.default_rng(seed)
    recall = {k: np.zeros(es.n) for k in ks}
    ndcg = {k: np.zeros(es.n) for k in ks}
    covered = np.zeros(num_items + 1, dtype=bool)
    # ideal DCG for n targets, n = 0..k
    ideal = {k: np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))]) for k in ks}
    for s in range(0, es.n, chunk):
        pos = np.arange(s, min(s + chunk, es.n))
        S = score_fn(pos).to(torch.float32).clone()
        if S.shape != (len(pos), num_items + 1):
            raise ValueError(f"score_fn returned shape {tuple(S.shape)}, expected {(len(pos), num_items + 1)}")
        S[:, 0] = float("-inf")
        ev, el = csr_take(es.exclude_values, es.exclude_offsets, pos)
        S[torch.from_numpy(np.repeat(np.arange(len(pos)), el)), torch.from_numpy(ev)] = float("-inf")
        tv, tl = csr_take(es.target_values, es.target_offsets, pos)
        prow = np.repeat(np.arange(len(pos)), tl)
        Snp = S.numpy()
        ts = Snp[prow, tv]
        # one target per user (leave-last-out) compares S in place; several -> one row per target
        rows = Snp if np.array_equal(prow, np.arange(len(pos))) else Snp[prow]
        # numpy's count_nonzero on boolean masks is ~10x faster than torch's bool sum here
        greater = np.count_nonzero(rows > ts[:, None], axis=1).astype(np.int64)
        ties = np.count_nonzero(rows == ts[:, None], axis=1).astype(np.int64) - 1  # others with the same score
        if tie_break == "random":
            off = np.floor(rng.random(len(ts)) * (ties + 1)).astype(np.int64)
        else:
            off = ties
        rank = greater + off
        n_t = tl.astype(np.float64)
        for k in ks:
            hit = rank < k
            hits = np.bincount(prow, weights=hit, minlength=len(pos))
            dcg = np.bincount(prow, weights=np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0), minlength=len(pos))
            idcg = ideal[k][np.minimum(tl, k)]
            with np.errstate(invalid="ignore", divide="ignore"):
                recall[k][pos] = np.where(n_t > 0, hits / np.maximum(n_t, 1), 0.0)
                ndcg[k][pos] = np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 0.0)
        top = torch.topk(S, k=min(10, num_items), dim=1)
        covered[top.indices[torch.isfinite(top.values)].numpy()] = True
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = float(recall[k].mean()) if es.n else 0.0
        out[f"ndcg@{k}"] = float(ndcg[k].mean()) if es.n else 0.0
    covered[0] = False
    out["coverage@10"] = float(covered.sum() / max(num_items, 1))
    out["users"] = float(es.n)
    if per_user:
        out["_per_user"] = {f"ndcg@{k}": ndcg[k] for k in ks} | {f"recall@{k}": recall[k] for k in ks}  # type: ignore[assignment]
    return out


def bucket_metrics(per_user: dict[str, np.ndarray], users: np.ndarray, train: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Mean metrics per bucket of kept training-history length (1, 2-3, 4-7, 8+ events)."""
    n_hist = train.groupby("user_id").size().reindex(users).fillna(0).to_numpy()
    out: dict[str, dict[str, float]] = {}
    for lo, hi in HISTORY_BUCKETS:
        sel = (n_hist >= lo) & ((n_hist <= hi) if hi is not None else True)
        name = f"{lo}" if lo == hi else (f"{lo}-{hi}" if hi is not None else f"{lo}+")
        row: dict[str, float] = {"users": int(sel.sum())}
        for k, v in per_user.items():
            row[k] = float(v[sel].mean()) if sel.any() else 0.0
        out[name] = row
    return out


COLD_GROUPS = ("cold", "warm", "all")


def target_is_cold(es: EvalSet, cold_items: np.ndarray) -> np.ndarray:
    """Bool per user of ``es``: its (leave-last-out: only) target is a cold item. A user with
    several targets counts as cold when any of them is."""
    hit = np.isin(es.target_values, np.asarray(cold_items, np.int64)).astype(np.int64)
    return np.add.reduceat(hit, es.target_offsets[:-1]) > 0 if len(hit) else np.zeros(es.n, dtype=bool)


def cold_warm_metrics(score_fn: ScoreFn, es: EvalSet, num_items: int, cold_items: np.ndarray, ks: Sequence[int] = (10,),
                      seed: int = 0, tie_break: str = "random") -> dict[str, dict[str, float]]:
    """Recall@K and NDCG@K, full ranking over every item (warm and cold together), for the users
    whose target is a cold item (``cold``), the others (``warm``) and everyone (``all``). Also
    ``_per_user`` (metric -> array over ``es.users``) and ``_cold`` (the users' group mask) for
    paired intervals."""
    m = evaluate(score_fn, es, num_items, ks=ks, tie_break=tie_break, seed=seed, per_user=True)
    per_user = m.pop("_per_user")
    cold = target_is_cold(es, cold_items)
    out: dict[str, dict[str, float]] = {}
    for g, sel in (("cold", cold), ("warm", ~cold), ("all", np.ones(es.n, dtype=bool))):
        out[g] = {k: float(v[sel].mean()) if sel.any() else 0.0 for k, v in per_user.items()}
        out[g]["users"] = float(sel.sum())
    out["all"]["coverage@10"] = m["coverage@10"]
    out["_per_user"], out["_cold"] = per_user, cold  # type: ignore[assignment]
    return out
