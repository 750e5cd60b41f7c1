"""Entity key spaces.

Real users and items get contiguous int64 ids from 1 (adapters keep the raw id in a mapping).
Synthetic users live at or above ``SYNTHETIC_USER_ID_BASE`` so a Feast/Redis key of a synthetic
user can never equal a real one (Feast's Redis key is entity key + project, shared by every view).
"""

from __future__ import annotations

import numpy as np

SYNTHETIC_USER_ID_BASE: int = 1 << 40
MAX_REAL_ID: int = SYNTHETIC_USER_ID_BASE - 1


def is_synthetic_user(user_id: int | np.ndarray) -> np.ndarray:
    """True where the id lies in the synthetic key space (elementwise for arrays)."""
    return np.asarray(user_id) >= SYNTHETIC_USER_ID_BASE
