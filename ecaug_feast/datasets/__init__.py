"""Dataset adapters. ``load_dataset(name)`` for the bundled formats, ``load_generic`` for a shop's own data.

All return a validated :class:`Dataset` (see ``datasets.base`` for the invariants).
"""

from __future__ import annotations

from ecaug_feast.datasets.base import INTERACTION_COLUMNS, Dataset, subset_users, validate_dataset
from ecaug_feast.datasets.diginetica import load_diginetica
from ecaug_feast.datasets.generic import load_generic
from ecaug_feast.datasets.s3rec import load_s3rec
from ecaug_feast.errors import EcaugError

DATASETS = ("beauty", "sports", "toys", "diginetica")


def load_dataset(name: str) -> Dataset:
    """Load ``beauty`` | ``sports`` | ``toys`` (S3-Rec format) or ``diginetica``."""
    key = name.lower()
    if key in ("beauty", "sports", "toys"):
        return load_s3rec(key)
    if key == "diginetica":
        return load_diginetica()
    raise EcaugError(f"unknown dataset '{name}' (choose from {', '.join(DATASETS)}, or use --interactions with --map)")


__all__ = ["DATASETS", "INTERACTION_COLUMNS", "Dataset", "load_dataset", "load_generic", "subset_users", "validate_dataset"]
