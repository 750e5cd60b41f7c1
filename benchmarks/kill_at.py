"""Run ``ecaug ARGS`` and kill it (SIGKILL, as ``kill -9``) when Feast is asked to materialize
the feature view VIEW, after the views before it were written: a crash at the same point on every
machine, for the crash-repair checks (``benchmarks/faults.py``, ``tests/faults/test_crash_repair.py``).

    python benchmarks/kill_at.py VIEW ARGS...     (exits by SIGKILL when VIEW is reached)
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def main() -> None:
    from feast import FeatureStore

    kill_at, args = sys.argv[1], sys.argv[2:]
    for name in ("materialize", "materialize_incremental"):
        orig = getattr(FeatureStore, name)

        def patched(self: Any, *a: Any, _orig: Any = orig, **kw: Any) -> Any:
            if kill_at in (kw.get("feature_views") or []):
                os.kill(os.getpid(), signal.SIGKILL)
            return _orig(self, *a, **kw)

        setattr(FeatureStore, name, patched)
    from ecaug_feast.cli.main import main as ecaug

    sys.argv = ["ecaug", *args]
    ecaug()


if __name__ == "__main__":
    main()
