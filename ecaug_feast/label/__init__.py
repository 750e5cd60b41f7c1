"""Unsupervised-then-supervised labeling of synthetic examples (clustering + classifier)."""

from ecaug_feast.label.labeler import ClusterLabeler, LabelerConfig

__all__ = ["ClusterLabeler", "LabelerConfig"]
