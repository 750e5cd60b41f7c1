"""Lazy row-wise Adam for one embedding table: a step updates only the rows it is given.

Why this and not another sparse optimizer (issue 33, the item table on one process):
- fbgemm's fused kernels (TorchRec's ``fused`` compute kernel, applied inside backward) would
  update only the looked-up rows, but fbgemm 1.8's CPU kernels refuse Adam ("Optimizer adam is
  not supported in CPU mode": CPU offers only exact (row-wise) Adagrad and SGD), and the
  sequence model is tuned for Adam (SASRec); swapping the item table to row-wise Adagrad would
  change the training, not only its cost.
- ``torch.optim.SparseAdam`` needs sparse gradients, and TorchRec's data-parallel dense kernel
  (fbgemm's dense table-batched embedding) gives the table a dense one.
So the table keeps TorchRec's dense kernel and its dense gradient, and this optimizer reads,
updates and writes back only the given rows (the ids a sampled step looked up): the rule of
``torch.optim.SparseAdam`` and TensorFlow Addons' ``LazyAdam``. A touched row's update is
exactly ``torch.optim.Adam``'s (same moments, bias correction by the global step count, L2
``weight_decay`` added to the gradient); an untouched row, and its moments, stay as they are
(dense Adam would keep moving it on its old momentum). Given every row each step it is
``torch.optim.Adam`` (tested).
"""

from __future__ import annotations

import math
from typing import Any

import torch


class RowAdam:
    """Adam on the rows ``rows`` of one 2-D parameter per :meth:`step` (the rest untouched).
    The moments are dense ``[rows, dim]`` tensors allocated once; a step costs O(rows touched)."""

    def __init__(self, param: torch.Tensor, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        if param.dim() != 2:
            raise ValueError(f"RowAdam optimises a 2-D table, got shape {tuple(param.shape)}")
        self.param, self.lr, self.betas, self.eps, self.weight_decay = param, lr, betas, eps, weight_decay
        self.exp_avg = torch.zeros_like(param, memory_format=torch.contiguous_format).detach()
        self.exp_avg_sq = torch.zeros_like(self.exp_avg)
        self.steps = 0

    def zero_grad(self) -> None:
        """Drop the gradient (the next backward writes a fresh one, as ``set_to_none``)."""
        self.param.grad = None

    @torch.no_grad()
    def step(self, rows: torch.Tensor | None = None) -> None:
        """One Adam step on ``rows`` (item ids, unique; None = every row). No gradient: no step.
        A sparse gradient (``torch.nn.functional.embedding(..., sparse=True)``) names its rows
        itself: the step takes those, and ``rows`` is not read."""
        g_all = self.param.grad
        if g_all is None:
            return
        self.steps += 1
        b1, b2 = self.betas
        p = self.param  # not .data: the version counter must move, as under torch.optim (seq_candidates reads it)
        if g_all.is_sparse:
            g_all = g_all.coalesce()
            rows, g = g_all.indices()[0], g_all.values()
        else:
            if rows is None:
                rows = torch.arange(p.shape[0], device=p.device)
            rows = rows.to(p.device, torch.int64)
            g = g_all.index_select(0, rows)
        w = p.index_select(0, rows)
        if self.weight_decay:
            g = g.add(w, alpha=self.weight_decay)
        m = self.exp_avg.index_select(0, rows).lerp_(g, 1 - b1)
        v = self.exp_avg_sq.index_select(0, rows).mul_(b2).addcmul_(g, g, value=1 - b2)
        self.exp_avg.index_copy_(0, rows, m)
        self.exp_avg_sq.index_copy_(0, rows, v)
        step_size = self.lr / (1 - b1**self.steps)
        denom = (v.sqrt() / math.sqrt(1 - b2**self.steps)).add_(self.eps)
        p.index_copy_(0, rows, w.addcdiv_(m, denom, value=-step_size))

    def state_dict(self) -> dict[str, Any]:
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.steps = int(state["steps"])


class SplitAdam:
    """Adam as one optimizer over a model whose one table may be row-wise: ``torch.optim.Adam``
    over ``params`` (``dense``) and :class:`RowAdam` over ``table`` (``rows``; None: no row-wise
    table, ``params`` holds everything). ``step(rows)``: the table rows the step read (None = all).
    The sequence trainer and the sequence generator both step through it (issue 33)."""

    def __init__(self, params: Any, table: torch.Tensor | None, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 weight_decay: float = 0.0) -> None:
        self.rows = None if table is None else RowAdam(table, lr=lr, betas=betas, weight_decay=weight_decay)
        self.dense = torch.optim.Adam(list(params), lr=lr, betas=betas, weight_decay=weight_decay)

    def zero_grad(self) -> None:
        self.dense.zero_grad()
        if self.rows is not None:
            self.rows.zero_grad()

    def step(self, rows: torch.Tensor | None = None) -> None:
        """One step of both; ``rows``: the table rows the step read (row-wise only; None = every row)."""
        self.dense.step()
        if self.rows is not None:
            self.rows.step(rows)
