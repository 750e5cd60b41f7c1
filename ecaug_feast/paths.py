"""Where ecaug keeps its state. One place, so every module agrees.

``ECAUG_HOME`` (default ``<repo>/.ecaug``) holds everything a run writes: processed datasets,
Feast parquet sources, the Feast registry, the embedded Redis data, synthetic runs, checkpoints.
``ECAUG_FEATURE_REPO`` (default ``<repo>/feature_repo``) is the Feast repository.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def state_dir() -> Path:
    """Root of all state written by ecaug (created on demand)."""
    p = Path(os.environ.get("ECAUG_HOME", REPO_ROOT / ".ecaug")).expanduser().resolve()
    p.mkdir(parents=True, exist_ok=True)
    return p


def feature_repo_dir() -> Path:
    """The Feast repository (``feature_store.yaml`` and definitions)."""
    return Path(os.environ.get("ECAUG_FEATURE_REPO", REPO_ROOT / "feature_repo")).expanduser().resolve()


def datasets_dir() -> Path:
    """Processed datasets: ``<state>/datasets/<name>/``."""
    return state_dir() / "datasets"


def feast_data_dir() -> Path:
    """Parquet sources read by Feast: ``<state>/feast/``."""
    return state_dir() / "feast"


def runs_dir() -> Path:
    """Synthetic runs: ``<state>/runs/<run_id>/``."""
    return state_dir() / "runs"


def models_dir() -> Path:
    """Checkpoints and ANN indexes: ``<state>/models/``."""
    return state_dir() / "models"


def shared_data_dir() -> Path:
    """The workplace's public datasets (``../shared/data``), when present."""
    return Path(os.environ.get("ECAUG_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
