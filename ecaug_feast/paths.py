"""Where ecaug keeps its state. One place, so every module agrees.

``ECAUG_HOME`` (default ``.ecaug/`` in the current working directory, never inside the installed
package) holds everything a run writes: processed datasets, Feast parquet sources, the Feast
registry, the embedded Redis data, synthetic runs, checkpoints. Nothing here creates a folder:
the code that writes a file creates its parent.
``ECAUG_FEATURE_REPO`` (default: the Feast repository shipped with the package) holds the Feast
definitions that ``ecaug`` renders into ``<state>/feature_repo/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ecaug_feast.errors import EcaugError

PACKAGE_DIR = Path(__file__).resolve().parent
# The checkout root when running from source (an installed wheel: site-packages). Only the
# checkout's own files live here (feature_repo/, ../shared); state never does.
REPO_ROOT = PACKAGE_DIR.parent
STATE_DIRNAME = ".ecaug"


def state_dir() -> Path:
    """Root of all state written by ecaug: ``$ECAUG_HOME``, else ``./.ecaug`` (not created here).
    A path that is (or lies under) a file is an :class:`EcaugError`: nothing could be written there."""
    home = os.environ.get("ECAUG_HOME", "").strip()
    path = (Path(home).expanduser() if home else Path.cwd() / STATE_DIRNAME).resolve()
    blocker = next((p for p in (path, *path.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        what = "ECAUG_HOME" if home else "the state folder"
        raise EcaugError(f"{what}={path}: {blocker} is a file, not a folder; point ECAUG_HOME at a folder")
    return path


def feature_repo_dir() -> Path:
    """The Feast definitions: ``$ECAUG_FEATURE_REPO``, else the repo shipped with the package.

    A wheel carries it as ``ecaug_feast/feature_repo/`` (mapped from the checkout's top-level
    ``feature_repo/`` at build time); a checkout or editable install uses ``feature_repo/`` itself.
    """
    env = os.environ.get("ECAUG_FEATURE_REPO", "").strip()
    if env:
        return Path(env).expanduser().resolve()
    packaged = PACKAGE_DIR / "feature_repo"
    return packaged if (packaged / "feature_store.yaml").exists() else REPO_ROOT / "feature_repo"


def repo_state_dir(repo_dir: str | Path) -> Path:
    """The state dir a Feast repo belongs to: the folder holding its registry's ``feast/`` folder.

    Feast imports a repo's definitions with the repo as working directory, so a cwd-relative
    default would point inside the repo; the registry path in ``feature_store.yaml``
    (``<state>/feast/registry.db``, relative paths taken from the repo) names the right one.
    """
    import yaml

    repo = Path(repo_dir).resolve()
    cfg = yaml.safe_load((repo / "feature_store.yaml").read_text(encoding="utf-8")) or {}
    reg = cfg.get("registry")
    reg = reg.get("path") if isinstance(reg, dict) else reg
    if not reg:
        return state_dir()
    return (repo / Path(reg).expanduser()).resolve().parent.parent


def datasets_dir() -> Path:
    """Processed datasets: ``<state>/datasets/<name>/``."""
    return state_dir() / "datasets"


def feast_data_dir() -> Path:
    """Parquet sources read by Feast: ``<state>/feast/``."""
    return state_dir() / "feast"


def runs_dir() -> Path:
    """Synthetic runs: ``<state>/runs/<run_id>/``."""
    return state_dir() / "runs"


def item_runs_dir() -> Path:
    """Synthetic item runs (the ``item_features_synth`` view's): ``<state>/item_runs/<run_id>/``."""
    return state_dir() / "item_runs"


def models_dir() -> Path:
    """Checkpoints and ANN indexes: ``<state>/models/``."""
    return state_dir() / "models"


def shared_data_dir() -> Path:
    """The workplace's public datasets (``../shared/data``), when present."""
    return Path(os.environ.get("ECAUG_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
