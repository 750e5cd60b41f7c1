"""A shop's item keys <-> the model's item indices (issue 31: train and serve from a shop's repo).

The sequence model numbers items 1..n (0 is padding). A shop keys its items by its own values
(strings such as UUIDs, or Int64/Int32). ``ItemKeys`` is the one mapping between the two; a
checkpoint trained from a shop's repo stores it as ``<checkpoint>/item_keys.json``::

    {"dtype": "string" | "int64" | "int32", "keys": [key of index 1, key of index 2, ...]}

A checkpoint of ecaug's own data has no such file (its item ids are the indices).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

FILE = "item_keys.json"
DTYPES = ("string", "int64", "int32")


@dataclass(frozen=True)
class ItemKeys:
    """``keys[i - 1]`` is the shop's key of model item ``i``; unknown keys map to index 0."""

    keys: tuple[Any, ...]
    dtype: str = "string"
    _index: dict[Any, int] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"item key dtype {self.dtype!r}: not one of {', '.join(DTYPES)}")
        norm = tuple(self._norm(k) for k in self.keys)
        if len(set(norm)) != len(norm):
            raise ValueError("item keys: duplicates")
        object.__setattr__(self, "keys", norm)
        object.__setattr__(self, "_index", {k: i + 1 for i, k in enumerate(norm)})

    def _norm(self, key: Any) -> Any:
        return str(key) if self.dtype == "string" else int(key)

    @classmethod
    def from_values(cls, values: Iterable[Any], dtype: str = "string") -> "ItemKeys":
        """Keys in first-seen order (duplicates dropped)."""
        seen: dict[Any, None] = {}
        for v in values:
            seen.setdefault(str(v) if dtype == "string" else int(v), None)
        return cls(tuple(seen), dtype)

    @property
    def num_items(self) -> int:
        return len(self.keys)

    def index_of(self, keys: Iterable[Any]) -> np.ndarray:
        """int64 model indices of ``keys`` (0 where a key is unknown)."""
        out = []
        for k in keys:
            try:
                out.append(self._index.get(self._norm(k), 0))
            except (TypeError, ValueError):  # e.g. "abc" for an int key: unknown, not an error
                out.append(0)
        return np.asarray(out, dtype=np.int64)

    def key_of(self, indices: Iterable[int]) -> list[Any]:
        """The shop's keys of model indices 1..n."""
        return [self.keys[int(i) - 1] for i in indices]

    def save(self, directory: str | Path) -> Path:
        """Write ``<directory>/item_keys.json`` atomically."""
        d = Path(directory)
        fd, tmp = tempfile.mkstemp(prefix=".item_keys.", dir=d)
        with os.fdopen(fd, "w") as f:
            json.dump({"dtype": self.dtype, "keys": list(self.keys)}, f)
        os.replace(tmp, d / FILE)
        return d / FILE

    @classmethod
    def load(cls, directory: str | Path) -> "ItemKeys | None":
        """The mapping stored in a checkpoint directory, or None when it has none."""
        p = Path(directory) / FILE
        if not p.exists():
            return None
        raw = json.loads(p.read_text())
        return cls(tuple(raw["keys"]), raw.get("dtype", "string"))
