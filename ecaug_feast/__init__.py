"""ecaug-feast: expand sparse e-commerce training data and plug it into Feast and TorchRec."""

from __future__ import annotations

__version__ = "0.1.0"

DIST_NAME = "ecaug-feast"


def version() -> str:
    """The installed distribution's version (wheel metadata), else this source tree's ``__version__``."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _dist_version

    try:
        return _dist_version(DIST_NAME)
    except PackageNotFoundError:  # run from a checkout that was never installed
        return __version__
