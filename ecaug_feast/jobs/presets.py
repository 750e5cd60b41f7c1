"""The bag model's budgets: what ``ecaug train --model bag`` and ``ecaug finetune`` of a bag
checkpoint read (``PRESETS["full"]``), and the study's bag cells (``full``; ``quick`` for tests
and the demo). Sized for 2 shared CPU cores. The sequence study's settings live in its protocol
file (``ecaug_feast.study.protocol``).
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "full": dict(
        ratios=[0.5],
        pool_cap=20_000,
        model=dict(embedding_dim=64, hidden_dim=256, out_dim=64, temperature=0.1, dropout=0.3),
        train=dict(epochs=8, patience=2, batch_size=1024, lr_sparse=0.04, lr_dense=2e-3),
        finetune=dict(epochs=2, patience=1, batch_size=1024, lr_sparse=0.02, lr_dense=1e-3),
        gan=dict(max_steps=500, eval_every=100, patience=3),
    ),
    "quick": dict(
        ratios=[0.5],
        pool_cap=3000,
        model=dict(embedding_dim=16, hidden_dim=32, out_dim=16, temperature=0.1, dropout=0.1, user_buckets=4096),
        train=dict(epochs=3, patience=1, batch_size=256, lr_sparse=0.05, lr_dense=2e-3),
        finetune=dict(epochs=1, patience=1, batch_size=256, lr_sparse=0.02, lr_dense=1e-3),
        gan=dict(max_steps=60, eval_every=30, patience=2, batch_size=200, eval_rows=500, calib_rows=2000),
    ),
}
