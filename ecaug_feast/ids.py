"""Entity key spaces.

Real users and items get contiguous int64 ids from 1 (adapters keep the raw id in a mapping).
Synthetic users live at or above ``SYNTHETIC_USER_ID_BASE`` so a Feast/Redis key of a synthetic
user can never equal a real one (Feast's Redis key is entity key + project, shared by every view).

A shop's own repo (:mod:`ecaug_feast.jobs.augment_repo`) may key its entities otherwise; its
synthetic keys are reserved per key type and checked against every real key before a run is
published:

- Int64: ``[SYNTHETIC_USER_ID_BASE, 2**63)``, run ``seq`` from ``SYNTHETIC_USER_ID_BASE + seq * 2**24``.
- Int32: ``[SYNTHETIC_INT32_BASE, 2**31)`` = ``[2**30, 2**31)``, run ``seq`` from
  ``SYNTHETIC_INT32_BASE + (seq % INT32_RUNS) * INT32_RUN_SPACE`` (at most 2**20 rows a run; the
  numbering wraps after 1024 runs, and only the active run's keys are ever online).
- String (UUIDs, "u-123", ...): ``<prefix><run_id>:<n>`` with the reserved prefix
  ``DEFAULT_KEY_PREFIX`` (configurable on the twin declaration).
"""

from __future__ import annotations

import numpy as np

SYNTHETIC_USER_ID_BASE: int = 1 << 40
MAX_REAL_ID: int = SYNTHETIC_USER_ID_BASE - 1

SYNTHETIC_INT32_BASE: int = 1 << 30
INT32_RUN_SPACE: int = 1 << 20
INT32_RUNS: int = ((1 << 31) - SYNTHETIC_INT32_BASE) // INT32_RUN_SPACE  # 1024

DEFAULT_KEY_PREFIX: str = "ecaug:"


def is_synthetic_user(user_id: int | np.ndarray) -> np.ndarray:
    """True where the id lies in the synthetic key space (elementwise for arrays)."""
    return np.asarray(user_id) >= SYNTHETIC_USER_ID_BASE
