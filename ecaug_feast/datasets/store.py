"""The processed store written by ``ecaug ingest``: ``<state>/datasets/<name>/``.

Files: ``interactions.parquet`` (interaction columns + ``split``), ``items.parquet``,
``users.parquet`` (if any), ``user_map.parquet`` / ``item_map.parquet`` (if re-indexed),
``meta.json``. Written into a temp folder next to the target, then renamed into place, so a reader
never sees half a dataset and a failure leaves the previous copy untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecaug_feast import paths
from ecaug_feast.datasets.base import INTERACTION_COLUMNS, Dataset
from ecaug_feast.datasets.split import assign_split
from ecaug_feast.atomic import pid_alive
from ecaug_feast.errors import EcaugError
from ecaug_feast.names import owned_child


@dataclass
class ProcessedDataset:
    """A split dataset read back from the processed store."""

    name: str
    interactions: pd.DataFrame  # all rows, with a `split` column
    items: pd.DataFrame
    users: pd.DataFrame | None
    meta: dict[str, Any]
    path: Path

    def _part(self, split: str) -> pd.DataFrame:
        df = self.interactions
        return df.loc[df["split"] == split, INTERACTION_COLUMNS].reset_index(drop=True)

    @property
    def train(self) -> pd.DataFrame:
        return self._part("train")

    @property
    def valid(self) -> pd.DataFrame:
        return self._part("valid")

    @property
    def test(self) -> pd.DataFrame:
        return self._part("test")

    def _map(self, kind: str) -> pd.DataFrame | None:
        p = self.path / f"{kind}_map.parquet"
        return pd.read_parquet(p) if p.exists() else None

    @property
    def user_map(self) -> pd.DataFrame | None:
        """``raw_user_id`` -> ``user_id`` for re-indexed datasets (None when ids were kept)."""
        return self._map("user")

    @property
    def item_map(self) -> pd.DataFrame | None:
        """``raw_item_id`` -> ``item_id`` for re-indexed datasets (None when ids were kept)."""
        return self._map("item")


def dataset_dir(name: str) -> Path:
    """``<state>/datasets/<name>`` (``name`` checked: one safe path component, never ``..``)."""
    return owned_child(paths.datasets_dir(), name, "dataset name")


def write_processed(ds: Dataset, valid_frac: float = 0.1, test_frac: float = 0.1) -> Path:
    """Split ``ds`` and write it to ``<state>/datasets/<ds.name>/`` atomically; returns the folder."""
    return commit_processed(stage_processed(ds, valid_frac, test_frac), ds.name)


def stage_processed(ds: Dataset, valid_frac: float = 0.1, test_frac: float = 0.1) -> Path:
    """Split ``ds`` and write it into a hidden temp folder beside ``<state>/datasets/<ds.name>/``
    (nothing visible changes); :func:`commit_processed` swaps it in. Returns the temp folder."""
    inter = ds.interactions[INTERACTION_COLUMNS].copy()
    labels, info = assign_split(inter, ds.split_kind, valid_frac, test_frac)
    inter["split"] = pd.Categorical(labels, categories=["train", "valid", "test"]).astype(str)
    target = dataset_dir(ds.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_writers_debris(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{ds.name}.tmp-{os.getpid()}-", dir=target.parent))
    try:
        inter.to_parquet(tmp / "interactions.parquet", index=False)
        items = ds.items[["item_id", "attributes"]].copy()
        items["attributes"] = items["attributes"].map(lambda a: np.asarray(a, dtype=np.int64))
        items.to_parquet(tmp / "items.parquet", index=False)
        if ds.users is not None:
            ds.users.to_parquet(tmp / "users.parquet", index=False)
        if ds.user_map is not None:
            ds.user_map.to_parquet(tmp / "user_map.parquet", index=False)
        if ds.item_map is not None:
            ds.item_map.to_parquet(tmp / "item_map.parquet", index=False)
        meta = {
            **ds.meta,
            **ds.summary(),
            "split": {**info, **{s: int((labels == s).sum()) for s in ("train", "valid", "test")}},
            "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _remove_dead_writers_debris(target: Path) -> None:
    """Delete ``.<name>.tmp-<pid>-*`` / ``.<name>.old-<pid>`` folders whose writer is gone (kill -9)."""
    for p in target.parent.glob(f".{target.name}.*-*"):
        kind, _, rest = p.name[len(target.name) + 2:].partition("-")
        pid = rest.split("-", 1)[0]
        if kind in ("tmp", "old") and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def commit_processed(staged: Path, name: str) -> Path:
    """Swap a folder from :func:`stage_processed` in as ``<state>/datasets/<name>/``: move the old
    copy aside, rename the new one, then delete the old one. Returns the final folder."""
    target = dataset_dir(name)
    try:
        old = None
        if target.exists():
            old = target.with_name(f".{name}.old-{os.getpid()}")  # a sibling: name is checked
            os.replace(target, old)
        os.replace(staged, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return target


def load_processed(name: str, path: Path | None = None) -> ProcessedDataset:
    """Read ``<state>/datasets/<name>/``, or a staged copy at ``path`` (raises ``EcaugError`` if
    ``ecaug ingest`` has not run)."""
    d = Path(path) if path is not None else dataset_dir(name)
    if not (d / "meta.json").exists():
        raise EcaugError(f"{d}: no processed dataset '{name}' (run `ecaug ingest --dataset {name}` first)")
    inter = pd.read_parquet(d / "interactions.parquet")
    items = pd.read_parquet(d / "items.parquet")
    items["attributes"] = items["attributes"].map(lambda a: [int(x) for x in a])
    users = pd.read_parquet(d / "users.parquet") if (d / "users.parquet").exists() else None
    meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
    return ProcessedDataset(name=name, interactions=inter, items=items, users=users, meta=meta, path=d)


def list_processed() -> list[str]:
    """Names of datasets in the processed store."""
    root = paths.datasets_dir()
    return sorted(p.name for p in root.iterdir() if (p / "meta.json").exists()) if root.exists() else []
