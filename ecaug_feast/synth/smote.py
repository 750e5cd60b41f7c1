"""SMOTE-style interpolation synthesizer (the naive-augmentation baseline), same API as the GAN.

A synthetic row = a random real row ``x`` moved a uniform fraction ``lam`` towards one of its ``k``
nearest real neighbours ``y``: numeric columns ``x + lam * (y - x)`` (rounded for integer columns),
categorical columns copied from ``x`` or ``y`` (``y`` with probability ``lam``), as in SMOTE-NC.
Neighbours are found in the GAN transformer's encoding (normal scores, one-hot, frequency ranks),
so every column counts on a comparable scale. Everything is vectorized.

In published comparisons this is a strong baseline for fidelity, but its rows lie on segments
between real rows, so the privacy gate (distance to closest record) drops many of them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from ecaug_feast.errors import EcaugError
from ecaug_feast.synth.transformer import DataTransformer


class SmoteSynthesizer:
    """``fit(df, discrete_columns)`` / ``sample(n)``; ``conditions`` filter the parents."""

    def __init__(self, k: int = 5, seed: int = 0, max_rows: int = 200_000) -> None:
        self.k, self.seed, self.max_rows = k, seed, max_rows
        self.fit_seconds = 0.0
        self._df: pd.DataFrame | None = None

    def fit(self, df: pd.DataFrame, discrete_columns: list[str] | tuple[str, ...] = (),
            source: str | None = None) -> "SmoteSynthesizer":
        t0 = time.perf_counter()
        tr = DataTransformer(seed=self.seed).fit(df, discrete_columns, source)
        rng = np.random.default_rng(self.seed)
        if len(df) > self.max_rows:
            df = df.iloc[rng.choice(len(df), self.max_rows, replace=False)]
        self._df = df.reset_index(drop=True)
        self._discrete = [sp.name for sp in tr.specs if sp.kind in ("onehot", "rank")]
        self._integer = [sp.name for sp in tr.specs if sp.kind not in ("onehot", "rank") and sp.integer]
        enc = tr.transform(self._df, seed=self.seed)
        k = min(self.k, len(self._df) - 1)
        if k < 1:
            raise EcaugError("SMOTE needs at least 2 rows")
        nn = NearestNeighbors(n_neighbors=k + 1).fit(enc)
        self._nbrs = nn.kneighbors(enc, return_distance=False)[:, 1:]
        self.fit_seconds = time.perf_counter() - t0
        return self

    def sample(self, n: int, conditions: dict[str, Any] | None = None, seed: int | None = None) -> pd.DataFrame:
        if self._df is None:
            raise EcaugError("SMOTE is not fitted")
        df = self._df
        rng = np.random.default_rng(self.seed + 1 if seed is None else seed)
        pool = np.arange(len(df))
        if conditions:
            m = np.ones(len(df), bool)
            for c, v in conditions.items():
                m &= (df[c] == v).to_numpy()
            pool = pool[m]
            if pool.size == 0:
                raise EcaugError(f"no real rows match {conditions}")
        i = rng.choice(pool, n)
        j = self._nbrs[i, rng.integers(0, self._nbrs.shape[1], n)]
        lam = rng.random(n)
        out = {}
        for col in df.columns:
            a, b = df[col].to_numpy(), df[col].to_numpy()
            if col in self._discrete:
                out[col] = np.where(rng.random(n) < lam, b[j], a[i])
            else:
                x, y = a[i].astype(float), b[j].astype(float)
                v = np.where(np.isnan(x), y, np.where(np.isnan(y), x, x + lam * (y - x)))
                if col in self._integer:
                    v = np.round(v)
                out[col] = v
        res = pd.DataFrame(out)
        for col in df.columns:
            if res[col].dtype != df[col].dtype and not res[col].isna().any():
                res[col] = res[col].astype(df[col].dtype)
        return res

    def save(self, path: str | Path) -> Path:  # pragma: no cover - SMOTE keeps real rows, nothing to save
        raise EcaugError("SMOTE has no weights: it stores the real rows themselves, refit instead")
