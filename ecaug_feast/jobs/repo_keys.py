"""What a shop's view may hold, checked before any fitting: its join key's type (and the reserved
synthetic key space of that type, :mod:`ecaug_feast.ids`) and its feature types; and the list
features' generator.

Key types: Int64, Int32 and String (UUIDs, "u-123", hashed emails). Feature types: the scalars of
:data:`SCALARS` (fitted by the column GAN) and arrays of them (:func:`sample_lists`). Map, Struct,
Json, Bytes and the like are refused with one line naming the view and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureView
from feast.types import Array, Bool, Float32, Float64, Int32, Int64, PrimitiveFeastType, String

from ecaug_feast import synth_store
from ecaug_feast.errors import EcaugError
from ecaug_feast.ids import (DEFAULT_KEY_PREFIX, INT32_RUN_SPACE, INT32_RUNS, SYNTHETIC_INT32_BASE,
                             SYNTHETIC_USER_ID_BASE)
from ecaug_feast.plugin import KEY_PREFIX_TAG, TWIN_OF_TAG

SCALARS = (Int32, Int64, Float32, Float64, String, Bool)
_KINDS = {"Int64": "int64", "Int32": "int32", "String": "string"}


@dataclass(frozen=True)
class KeySpace:
    """The synthetic keys of one twin: its join-key column, the key type, the reserved space."""

    column: str
    kind: str                      # "int64" | "int32" | "string"
    prefix: str = DEFAULT_KEY_PREFIX

    @classmethod
    def of(cls, view: FeatureView, twin: FeatureView) -> "KeySpace":
        """The twin's key space; refuses a view of several keys, a key type ecaug has no synthetic
        space for, and a twin whose declared key type differs from the real view's."""
        keys, real = list(twin.entity_columns), {c.name: c for c in view.entity_columns}
        if len(keys) != 1:
            raise EcaugError(f"view {view.name!r} has {len(keys)} join keys; the plugin augments views of one entity")
        key = keys[0]
        kind = _KINDS.get(str(key.dtype))
        if kind is None:
            raise EcaugError(f"view {view.name!r}, join key {key.name!r}: type {key.dtype}; synthetic keys are Int64, Int32 or String")
        have = real.get(key.name)
        if have is not None and str(have.dtype) != str(key.dtype):
            raise EcaugError(f"view {view.name!r}, join key {key.name!r}: the shop's key is {have.dtype} but the twin declares "
                             f"{key.dtype}; give the Entity value_type=ValueType.{str(have.dtype).upper()} (or the key Field "
                             "in the view's schema) and run `feast apply`")
        return cls(key.name, kind, (twin.tags or {}).get(KEY_PREFIX_TAG, DEFAULT_KEY_PREFIX))

    def describe(self) -> str:
        if self.kind == "int64":
            return f"Int64 keys >= {SYNTHETIC_USER_ID_BASE}"
        if self.kind == "int32":
            return f"Int32 keys in [{SYNTHETIC_INT32_BASE}, {1 << 31})"
        return f"String keys starting with {self.prefix!r}"

    def keys(self, seq: int, run_id: str, n: int) -> np.ndarray:
        """``n`` synthetic keys of run number ``seq`` / id ``run_id`` (disjoint from other runs')."""
        if self.kind == "string":
            return np.array([f"{self.prefix}{run_id}:{i}" for i in range(n)], dtype=object)
        if self.kind == "int32":
            space, start, dtype = INT32_RUN_SPACE, SYNTHETIC_INT32_BASE + (seq % INT32_RUNS) * INT32_RUN_SPACE, np.int32
        else:
            space, start, dtype = synth_store.RUN_ID_SPACE, synth_store.user_id_start(seq), np.int64
        if n > space:
            raise EcaugError(f"{n} synthetic rows: a run of {self.kind} keys holds at most {space}")
        return np.arange(start, start + n, dtype=np.int64).astype(dtype)

    def synthetic(self, values: Any) -> np.ndarray:
        """True where a key lies in the reserved synthetic space (never a real key once checked)."""
        v = np.asarray(values)
        if self.kind == "string":
            return np.array([isinstance(x, str) and x.startswith(self.prefix) for x in v], dtype=bool)
        v = v.astype(np.int64)
        return (v >= SYNTHETIC_INT32_BASE) & (v < (1 << 31)) if self.kind == "int32" else v >= SYNTHETIC_USER_ID_BASE

    def value(self, key: Any) -> dict[str, Any]:
        """The Feast ``Value`` field of one key (for the online store's key function)."""
        return {"string_val": str(key)} if self.kind == "string" else {f"{self.kind}_val": int(key)}

    def check_real(self, view: str, keys: pd.Series) -> None:
        """Refuse (one line) real keys of another type than declared, or inside the reserved space."""
        col = f"view {view!r}, column {self.column!r}"
        vals = keys.dropna()
        if self.kind == "string":
            bad = vals[[not isinstance(x, str) for x in vals]]
            if len(bad):
                raise EcaugError(f"{col}: key {bad.iloc[0]!r} is not a string but the twin declares String keys")
        elif not pd.api.types.is_integer_dtype(vals) and not all(isinstance(x, (int, np.integer)) for x in vals):
            raise EcaugError(f"{col}: keys of type {vals.dtype} (e.g. {vals.iloc[0]!r}) but the twin declares "
                             f"{self.kind.capitalize()}; give the Entity its value_type (ValueType.STRING for string keys) "
                             "and run `feast apply`")
        clash = vals[self.synthetic(vals)] if len(vals) else vals
        if len(clash):
            hint = "choose another key_prefix (SynthTwinConfig)" if self.kind == "string" else "they would collide with synthetic keys"
            raise EcaugError(f"{col}: real key {clash.iloc[0]!r} lies in ecaug's reserved synthetic key space "
                             f"({self.describe()}); {hint}")


def check_features(view: FeatureView) -> tuple[list[str], list[str]]:
    """``(scalar features, list features)`` of ``view``; refuses (one line) any other type."""
    scalars, lists = [], []
    for f in view.features:
        t = f.dtype
        if isinstance(t, PrimitiveFeastType) and any(t == s for s in SCALARS):
            scalars.append(f.name)
        elif isinstance(t, Array) and isinstance(t.base_type, PrimitiveFeastType) and any(t.base_type == s for s in SCALARS):
            lists.append(f.name)
        else:
            raise EcaugError(f"view {view.name!r}, field {f.name!r}: type {t} is not supported (scalars "
                             f"{', '.join(map(str, SCALARS))} and Array of them are; Map, Struct, Json and bytes are not)")
    if not scalars:
        raise EcaugError(f"view {view.name!r}: no scalar feature for the generator to fit (only lists: {lists})")
    return scalars, lists


def twin_of(twin: FeatureView) -> str:
    return (twin.tags or {}).get(TWIN_OF_TAG, twin.name)


def sample_lists(real: pd.Series, n: int, rng: np.random.Generator) -> tuple[list[list[Any]], np.ndarray, dict[str, Any]]:
    """``n`` synthetic lists for a list feature the column GAN cannot produce: each list's length
    drawn from the real lengths, its items drawn without replacement from the real items by their
    frequency (so no real user's list is copied wholesale). A draw equal to a real list of two or
    more items is redrawn (up to 10 times), else its row is dropped (the copy check). Returns the
    lists, the rows kept and what was done (for the manifest)."""
    lists = [[] if x is None else list(x) for x in real]
    lengths = np.array([len(x) for x in lists] or [0])
    flat = [i for x in lists for i in x]
    items, counts = (np.unique(np.array(flat, dtype=object if flat and isinstance(flat[0], str) else None), return_counts=True)
                     if flat else (np.array([]), np.array([])))
    p = counts / counts.sum() if len(counts) else counts
    seen = {tuple(x) for x in lists if len(x) >= 2}
    out, keep, redrawn = [], np.ones(n, dtype=bool), 0
    for i in range(n):
        for _ in range(10):
            size = int(min(rng.choice(lengths), len(items)))
            draw = [x.item() if hasattr(x, "item") else x for x in items[rng.choice(len(items), size, replace=False, p=p)]] if size else []
            if len(draw) < 2 or tuple(draw) not in seen:
                break
            redrawn += 1
        else:
            keep[i] = False
        out.append(draw)
    info = {"method": "length and items drawn from the real marginals", "real_lists": len(lists),
            "distinct_items": int(len(items)), "copies_redrawn": redrawn, "rows_dropped_as_copies": int((~keep).sum())}
    return out, keep, info
