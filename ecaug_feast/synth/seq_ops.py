"""``seq_ops``: the simple-operations baseline for history augmentation (numpy only).

Random crop, mask (item dropped), reorder (a short window shuffled) and insert (an item drawn
from the training popularity inserted at a random position), as in CL4SRec (Xie et al. 2022) and
DA4Rec (Song et al. 2022): strong baselines, more so when data is small. ``fit`` reads training
histories only (the insert distribution and the item vocabulary); ``sample`` returns new
histories as CSR (values, offsets) plus the index of the real history each copy came from.

Histories are oldest-first CSR arrays (``values``, ``offsets``), the layout of
:class:`ecaug_feast.histories.Histories`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecaug_feast.histories import csr_rows, rows_to_csr

OPS = ("crop", "mask", "reorder", "insert")


@dataclass
class SeqOpsConfig:
    copies: int = 1            # augmented copies per eligible history
    min_len: int = 2           # histories shorter than this are not augmented (nothing to vary)
    crop_keep: float = 0.6     # crop keeps this share (at least 2 items), a contiguous window
    mask_rate: float = 0.3     # each item dropped with this probability (at least 1 kept... 2 if possible)
    reorder_share: float = 0.4 # window of this share shuffled
    insert_rate: float = 0.3   # this share of the length inserted (at least 1)
    ops: tuple[str, ...] = OPS
    seed: int = 0


class SeqOps:
    """Random sequence operations fitted on training histories."""

    def __init__(self, config: SeqOpsConfig | None = None) -> None:
        self.cfg = config or SeqOpsConfig()
        for op in self.cfg.ops:
            if op not in OPS:
                raise ValueError(f"unknown sequence op {op!r} (choose from {', '.join(OPS)})")

    def fit(self, values: np.ndarray, offsets: np.ndarray) -> "SeqOps":
        """Learn the insert distribution (item popularity) from TRAINING histories only."""
        values = np.asarray(values, np.int64)
        if len(values) == 0:
            raise ValueError("seq_ops needs at least one training item")
        self.items, counts = np.unique(values, return_counts=True)
        self.p = counts / counts.sum()
        self.values, self.offsets = values, np.asarray(offsets, np.int64)
        return self

    def _one(self, h: np.ndarray, op: str, rng: np.random.Generator) -> np.ndarray:
        n, c = len(h), self.cfg
        if op == "crop":
            k = max(2, int(round(c.crop_keep * n))) if n >= 2 else n
            s = int(rng.integers(0, n - k + 1))
            return h[s : s + k].copy()
        if op == "mask":
            keep = rng.random(n) >= c.mask_rate
            if keep.sum() < min(2, n):  # keep the newest items so a next-item target remains
                keep[-min(2, n):] = True
            return h[keep].copy()
        if op == "reorder":
            k = max(2, int(round(c.reorder_share * n)))
            s = int(rng.integers(0, max(n - k, 0) + 1))
            out = h.copy()
            out[s : s + k] = rng.permutation(out[s : s + k])
            return out
        # insert
        k = max(1, int(round(c.insert_rate * n)))
        new = rng.choice(self.items, size=k, p=self.p)
        out = h.tolist()
        for it in new:
            out.insert(int(rng.integers(0, len(out) + 1)), int(it))
        return np.asarray(out, np.int64)

    def sample(self, seed: int | None = None, max_len: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``copies`` augmented histories per fitted history of length >= ``min_len``.
        Returns (values, offsets, source) with ``source`` the index of the real history."""
        rng = np.random.default_rng(self.cfg.seed if seed is None else seed)
        rows, src = [], []
        for i, h in enumerate(csr_rows(self.values, self.offsets)):
            if len(h) < self.cfg.min_len:
                continue
            for _ in range(self.cfg.copies):
                op = self.cfg.ops[int(rng.integers(0, len(self.cfg.ops)))]
                out = self._one(h, op, rng)
                if max_len is not None:
                    out = out[-max_len:]
                rows.append(out)
                src.append(i)
        v, o = rows_to_csr(rows)
        return v, o, np.asarray(src, np.int64)
