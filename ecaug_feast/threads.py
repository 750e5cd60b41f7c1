"""Thread pools of the numeric libraries (bottom layer: imports nothing of ``ecaug_feast``)."""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def single_thread() -> threadpool_limits:
    """OpenMP/BLAS pools limited to one thread: on a small shared CPU, spinning OpenMP workers
    made gradient boosting several times slower than one thread (same reason as the GAN)."""
    return threadpool_limits(1)
