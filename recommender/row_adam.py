"""Re-export: :class:`RowAdam` lives in :mod:`ecaug_feast.row_adam` (shared with the sequence
generator, which as a library may not import the recommender; issue 33)."""

from ecaug_feast.row_adam import RowAdam, SplitAdam  # noqa: F401

__all__ = ["RowAdam", "SplitAdam"]
