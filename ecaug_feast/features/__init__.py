"""Point-in-time features for Feast (``build``, ``append``, ``ingest``); the split is ``datasets.split``."""
