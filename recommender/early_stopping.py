"""End-of-epoch bookkeeping shared by both trainers (``recommender.train``, ``recommender.seq_train``):
keep the best state by validation NDCG@10, stop after ``patience`` epochs without a better one or
when the wall-clock budget is spent, log and report each epoch, agree on stopping across ranks."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch.distributed as dist

log = logging.getLogger("recommender.train")


@dataclass
class EarlyStopping:
    patience: int
    has_valid: bool
    max_seconds: float | None = None
    progress: Callable[[int, dict[str, Any]], None] | None = None
    t_start: float = field(default_factory=time.time)
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"ndcg@10": -1.0})
    best_epoch: int = -1
    best_state: Any = None
    bad: int = 0

    def end_epoch(self, epoch: int, rec: dict[str, Any], state: Any, metrics: dict[str, Any] | None) -> bool:
        """Record epoch ``epoch`` (1-based) on rank 0; ``metrics``: validation metrics, or None
        when the epoch was not evaluated. Without validation the latest state is the best.
        Returns whether training should stop."""
        stop = False
        if metrics is not None:
            rec.update({f"valid_{k}": v for k, v in metrics.items() if k != "users"})
            if metrics["ndcg@10"] > self.best["ndcg@10"]:
                self.best, self.best_epoch, self.best_state, self.bad = metrics, epoch, state, 0
            else:
                self.bad += 1
            stop = self.bad >= self.patience
        elif not self.has_valid:
            self.best_epoch, self.best_state = epoch, state
        if self.max_seconds is not None and time.time() - self.t_start > self.max_seconds:
            stop = True
            rec["budget_stop"] = True
        self.history.append(rec)
        log.info("%s", epoch_line(rec))
        log.debug("epoch %s", rec)  # every figure (buckets, coverage): for a log file at DEBUG
        if self.progress:
            self.progress(epoch, rec)
        return stop

    @property
    def best_valid(self) -> dict[str, float]:
        return {k: v for k, v in self.best.items() if k != "users"} if self.best_epoch > 0 and self.has_valid else {}


def epoch_line(rec: dict[str, Any]) -> str:
    """One readable line per epoch: ``epoch 2: loss 8.123, valid NDCG@10 0.0312, Recall@10 0.0551 (95.0 s)``."""
    out = f"epoch {rec.get('epoch', '?')}: loss {rec['loss']:.3f}" if "loss" in rec else f"epoch {rec.get('epoch', '?')}"
    if "valid_ndcg@10" in rec:
        out += f", valid NDCG@10 {rec['valid_ndcg@10']:.4f}, Recall@10 {rec.get('valid_recall@10', float('nan')):.4f}"
    if "train_s" in rec:
        out += f" ({rec['train_s']:.1f} s)"
    return out + (" (time budget spent)" if rec.get("budget_stop") else "")


def agree_to_stop(stop: bool, world: int) -> bool:
    """Rank 0's decision, broadcast to every rank (collective when ``world`` > 1)."""
    if world > 1:
        flag = [stop]
        dist.broadcast_object_list(flag, src=0)
        stop = bool(flag[0])
    return stop
