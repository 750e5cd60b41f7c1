"""Baselines in the same harness: popularity, and naive augmentation pools (oversampling, SMOTE).

An augmentation *pool* is a frame of extra examples with the example columns; the experiment mixes
``ratio x len(real)`` rows of it into the real examples (``recommender.data.mix_examples``), the
same way as the GAN's accepted rows, and fine-tunes from the same real-only checkpoint.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch

from recommender.data import EXAMPLE_COLUMNS


def popularity_scorer(train: pd.DataFrame, num_items: int) -> Callable[[np.ndarray], torch.Tensor]:
    """Every user gets the training interaction count of each item (ties broken by the evaluator)."""
    counts = torch.from_numpy(np.bincount(train["item_id"].to_numpy(np.int64), minlength=num_items + 1)[: num_items + 1].astype(np.float32))
    return lambda pos: counts.expand(len(pos), -1)


def sparse_users(examples: pd.DataFrame, quantile: float = 0.5) -> np.ndarray:
    """Users whose number of real examples is at or below the ``quantile`` of that count."""
    real = examples[~examples["is_synthetic"].astype(bool)]
    n = real.groupby("user_id").size()
    return n.index[n <= n.quantile(quantile)].to_numpy(np.int64)


def oversample_pool(examples: pd.DataFrame, size: int, seed: int, quantile: float = 0.5) -> pd.DataFrame:
    """Naive augmentation: ``size`` copies drawn uniformly from the sparse users' real examples."""
    real = examples[~examples["is_synthetic"].astype(bool)]
    cand = real[real["user_id"].isin(sparse_users(real, quantile))]
    if len(cand) == 0 or size <= 0:
        return real.iloc[:0][EXAMPLE_COLUMNS]
    rng = np.random.default_rng(seed)
    out = cand.iloc[rng.integers(0, len(cand), size=size)].copy()
    out["is_synthetic"] = True
    return out[EXAMPLE_COLUMNS].reset_index(drop=True)
