"""Split, then point-in-time features for Feast (``split``, ``build``)."""
