"""Reversible encoding of a mixed-type table into a float matrix for the GAN.

Per column:

* **continuous** (``quantile``, default): randomized probability-integral transform against a
  1,000-level quantile grid, then the standard-normal quantile function. Values between grid points
  map linearly, ties (atoms such as ``days_since_last == 0``) map to a uniform draw inside their
  CDF interval, so decoding returns the atom exactly and the round trip is exact up to float error.
  Decoding clips to the observed range, so the generator cannot emit out-of-range values.
  ``mode`` is CTGAN's mode-specific normalization (a Gaussian mixture per column, value scaled inside
  its mode + one-hot of the mode) kept for comparison; ``docs/research/column-gan.md`` gives the measurement.
* **one-hot** for categoricals with at most ``max_onehot`` categories (softmax output).
* **rank** (frequency encoding) for high-cardinality ids (items, attributes): categories are ordered
  by frequency, each owns an interval of the empirical CDF, a value is a uniform draw inside its
  interval mapped through the normal quantile function. One output unit per column whatever the
  cardinality (12k items cost as much as one float), and decoding reproduces the marginal exactly
  when the generator's output is well calibrated. Round trip is exact.

NaN in a continuous column gets a 2-way one-hot null indicator. State is plain JSON + numpy arrays
(``state()`` / ``from_state``) so a fitted model can be saved without pickles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri
from sklearn.mixture import BayesianGaussianMixture

from ecaug_feast.errors import DataValidationError

_EPS = 1e-6


@dataclass
class ColumnSpec:
    """How one column is encoded; ``start``/``dims`` locate it in the encoded matrix."""

    name: str
    kind: str  # "quantile" | "mode" | "onehot" | "rank"
    start: int = 0
    dims: int = 1
    integer: bool = False
    nullable: bool = False
    categories: list[Any] = field(default_factory=list)  # onehot / rank
    dtype: str = "float64"

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("name", "kind", "start", "dims", "integer", "nullable", "categories", "dtype")}


def _py(v: Any) -> Any:
    """numpy scalar -> JSON-able python scalar (NaN -> None)."""
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if np.isnan(v) else float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


class DataTransformer:
    """Fit on a DataFrame, then ``transform`` -> float32 matrix and ``inverse_transform`` back."""

    def __init__(self, continuous: str = "quantile", max_onehot: int = 32, n_quantiles: int = 1000,
                 n_modes: int = 8, seed: int = 0) -> None:
        if continuous not in ("quantile", "mode"):
            raise ValueError(f"continuous encoding must be 'quantile' or 'mode', got {continuous!r}")
        self.continuous = continuous
        self.max_onehot = max_onehot
        self.n_quantiles = n_quantiles
        self.n_modes = n_modes
        self.seed = seed
        self.specs: list[ColumnSpec] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.output_dim = 0

    # ------------------------------------------------------------------ fit
    def fit(self, df: pd.DataFrame, discrete_columns: list[str] | tuple[str, ...] = (),
            source: str | None = None) -> "DataTransformer":
        """Learn the per-column encodings. ``discrete_columns`` are categoricals; the rest numeric."""
        _validate_frame(df, source)
        rng = np.random.default_rng(self.seed)
        self.specs, self.arrays, pos = [], {}, 0
        for col in df.columns:
            s = df[col]
            if col in discrete_columns or not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
                vc = s.astype(object).where(s.notna(), None).value_counts(dropna=False, sort=True)
                cats = [_py(c) for c in vc.index]
                if len(cats) < 2:
                    raise DataValidationError(source, col, f"has a single category ({cats[0]!r}); nothing to learn, drop the column")
                if len(cats) <= self.max_onehot:
                    spec = ColumnSpec(col, "onehot", pos, len(cats), categories=sorted(cats, key=repr))
                else:
                    # Rank (frequency) encoding: most frequent first; cumulative CDF boundaries.
                    spec = ColumnSpec(col, "rank", pos, 1, categories=cats)
                    p = vc.to_numpy(dtype=np.float64) / len(s)
                    self.arrays[f"{col}.cdf"] = np.concatenate([[0.0], np.cumsum(p)])
                spec.dtype = str(s.dtype)
            else:
                x = s.to_numpy(dtype=np.float64)
                ok = ~np.isnan(x)
                xs = x[ok]
                if xs.size == 0:
                    raise DataValidationError(source, col, "is all NaN")
                integer = bool(pd.api.types.is_integer_dtype(s) or pd.api.types.is_bool_dtype(s) or np.all(xs == np.round(xs)))
                spec = ColumnSpec(col, self.continuous, pos, 1, integer=integer, nullable=bool((~ok).any()), dtype=str(s.dtype))
                if self.continuous == "quantile":
                    levels = _levels(self.n_quantiles)
                    grid = np.quantile(xs, levels, method="inverted_cdf" if integer else "linear")
                    grid[0], grid[-1] = xs.min(), xs.max()  # exact ends: round trip covers the range
                    self.arrays[f"{col}.grid"] = grid
                else:
                    self._fit_modes(col, xs, rng)
                    spec.dims = 1 + len(self.arrays[f"{col}.means"])
                if spec.nullable:
                    spec.dims += 2
            self.specs.append(spec)
            pos += spec.dims
        self.output_dim = pos
        self._columns = list(df.columns)
        return self

    def _fit_modes(self, col: str, xs: np.ndarray, rng: np.random.Generator) -> None:
        sub = xs if xs.size <= 5000 else rng.choice(xs, 5000, replace=False)
        gm = BayesianGaussianMixture(n_components=self.n_modes, weight_concentration_prior=1e-3,
                                     max_iter=100, random_state=self.seed, n_init=1)
        gm.fit(sub.reshape(-1, 1))
        keep = gm.weights_ > 5e-3
        self.arrays[f"{col}.means"] = gm.means_.ravel()[keep]
        self.arrays[f"{col}.stds"] = np.sqrt(gm.covariances_.ravel()[keep]) + 1e-6
        self.arrays[f"{col}.weights"] = gm.weights_[keep] / gm.weights_[keep].sum()
        self.arrays[f"{col}.range"] = np.array([xs.min(), xs.max()])

    # ------------------------------------------------------------ transform
    def transform(self, df: pd.DataFrame, seed: int | None = None) -> np.ndarray:
        """Encode ``df`` (same columns as at fit) into a float32 matrix ``(n, output_dim)``."""
        rng = np.random.default_rng(self.seed if seed is None else seed)
        n = len(df)
        out = np.zeros((n, self.output_dim), dtype=np.float32)
        for sp in self.specs:
            s = df[sp.name]
            a, b = sp.start, sp.start + sp.dims
            if sp.kind == "onehot":
                idx = self._rank_index(sp, s)
                out[np.arange(n), a + idx] = 1.0
            elif sp.kind == "rank":
                idx = self._rank_index(sp, s)
                cdf = self.arrays[f"{sp.name}.cdf"]
                lo, hi = cdf[idx], cdf[idx + 1]
                # Stay strictly inside the interval so decoding lands on the same category.
                u = lo + (hi - lo) * rng.uniform(0.02, 0.98, n)
                out[:, a] = ndtri(np.clip(u, _EPS, 1 - _EPS))
            else:
                x = s.to_numpy(dtype=np.float64).copy()
                null = np.isnan(x)
                if null.any():
                    if not sp.nullable:
                        raise DataValidationError(None, sp.name, "has NaN but had none when fitting")
                    good = x[~null]
                    x[null] = rng.choice(good, null.sum()) if good.size else 0.0
                vdims = sp.dims - (2 if sp.nullable else 0)
                if sp.kind == "quantile":
                    out[:, a] = self._pit(sp.name, x, rng)
                else:
                    out[:, a:a + vdims] = self._mode_encode(sp.name, x, rng)
                if sp.nullable:
                    out[np.arange(n), a + vdims + null.astype(int)] = 1.0
        return out

    def _rank_index(self, sp: ColumnSpec, s: pd.Series) -> np.ndarray:
        # Vectorized lookup (pandas hash index); NaN matches a None/NaN category.
        idx = pd.Index(pd.Series(sp.categories, dtype=object)).get_indexer(s.astype(object).where(s.notna(), None))
        if (idx < 0).any():
            bad = s[idx < 0].iloc[0]
            raise DataValidationError(None, sp.name, f"category {bad!r} was not seen when fitting")
        return idx

    def _pit(self, col: str, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        grid = self.arrays[f"{col}.grid"]
        nq = grid.size
        levels = _levels(nq)
        x = np.clip(x, grid[0], grid[-1])
        lo = np.searchsorted(grid, x, "left")
        hi = np.searchsorted(grid, x, "right")
        u = np.empty_like(x)
        tie = hi > lo  # x equals one or more grid points: uniform over their levels
        u[tie] = levels[lo[tie]] + rng.uniform(0, 1, tie.sum()) * (levels[hi[tie] - 1] - levels[lo[tie]])
        mid = ~tie  # strictly between grid[lo-1] and grid[lo]: linear, invertible
        i = np.clip(lo[mid], 1, nq - 1)
        g0, g1 = grid[i - 1], grid[i]
        frac = np.where(g1 > g0, (x[mid] - g0) / np.where(g1 > g0, g1 - g0, 1.0), 0.0)
        u[mid] = levels[i - 1] + frac * (levels[i] - levels[i - 1])
        return ndtri(u)

    def _mode_encode(self, col: str, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        mu, sd, w = (self.arrays[f"{col}.{k}"] for k in ("means", "stds", "weights"))
        logp = -0.5 * ((x[:, None] - mu) / sd) ** 2 - np.log(sd) + np.log(w)
        p = np.exp(logp - logp.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        k = (p.cumsum(1) > rng.uniform(size=(len(x), 1))).argmax(1)  # CTGAN samples the mode
        out = np.zeros((len(x), 1 + len(mu)), dtype=np.float32)
        out[:, 0] = np.clip((x - mu[k]) / (4 * sd[k]), -0.99, 0.99)
        out[np.arange(len(x)), 1 + k] = 1.0
        return out

    # ---------------------------------------------------- inverse transform
    def inverse_transform(self, data: np.ndarray) -> pd.DataFrame:
        """Decode a matrix (raw or activated generator output) back to a DataFrame."""
        data = np.asarray(data, dtype=np.float64)
        cols: dict[str, Any] = {}
        for sp in self.specs:
            a = sp.start
            if sp.kind == "onehot":
                idx = data[:, a:a + sp.dims].argmax(1)
                cols[sp.name] = _restore_dtype(self._cat_array(sp)[idx], sp.dtype)
            elif sp.kind == "rank":
                cdf = self.arrays[f"{sp.name}.cdf"]
                u = ndtr(data[:, a])
                idx = np.clip(np.searchsorted(cdf, u, "right") - 1, 0, len(sp.categories) - 1)
                cols[sp.name] = _restore_dtype(self._cat_array(sp)[idx], sp.dtype)
            else:
                vdims = sp.dims - (2 if sp.nullable else 0)
                if sp.kind == "quantile":
                    grid = self.arrays[f"{sp.name}.grid"]
                    levels = _levels(grid.size)
                    x = np.interp(ndtr(data[:, a]), levels, grid)
                else:
                    mu, sd = self.arrays[f"{sp.name}.means"], self.arrays[f"{sp.name}.stds"]
                    k = data[:, a + 1:a + vdims].argmax(1)
                    x = np.clip(data[:, a], -1, 1) * 4 * sd[k] + mu[k]
                    lo, hi = self.arrays[f"{sp.name}.range"]
                    x = np.clip(x, lo, hi)
                if sp.integer:
                    x = np.round(x)
                if sp.nullable:
                    x = np.where(data[:, a + vdims + 1] > data[:, a + vdims], np.nan, x)
                cols[sp.name] = x
        df = pd.DataFrame(cols)
        for sp in self.specs:
            if sp.kind in ("quantile", "mode"):
                if sp.integer and not sp.nullable and sp.dtype.startswith(("int", "Int", "uint")):
                    df[sp.name] = df[sp.name].astype(sp.dtype)
                elif sp.dtype == "bool":
                    df[sp.name] = df[sp.name].astype(bool)
                elif sp.dtype.startswith("float"):
                    df[sp.name] = df[sp.name].astype(sp.dtype)
        return df[[sp.name for sp in self.specs]]

    def _cat_array(self, sp: ColumnSpec) -> np.ndarray:
        """Categories as a numpy array: typed (fast gather) when they are all numbers/bools."""
        cache = self.__dict__.setdefault("_cat_cache", {})
        if sp.name not in cache:
            cats = sp.categories
            if sp.dtype.startswith(("int", "uint", "float", "bool")) and all(c is not None for c in cats):
                cache[sp.name] = np.asarray(cats).astype(sp.dtype)
            else:
                arr = np.empty(len(cats), dtype=object)
                arr[:] = cats
                cache[sp.name] = arr
        return cache[sp.name]

    # ------------------------------------------------------------ metadata
    def spec(self, name: str) -> ColumnSpec:
        for sp in self.specs:
            if sp.name == name:
                return sp
        raise KeyError(name)

    def output_spans(self) -> list[tuple[int, int, str]]:
        """``(start, end, activation)`` blocks of the encoded matrix: ``linear``/``tanh``/``softmax``."""
        spans: list[tuple[int, int, str]] = []
        for sp in self.specs:
            a = sp.start
            if sp.kind == "onehot":
                spans.append((a, a + sp.dims, "softmax"))
                continue
            if sp.kind == "rank" or sp.kind == "quantile":
                spans.append((a, a + 1, "linear"))
                vd = 1
            else:
                vd = sp.dims - (2 if sp.nullable else 0)
                spans.append((a, a + 1, "tanh"))
                spans.append((a + 1, a + vd, "softmax"))
            if sp.nullable:
                spans.append((a + vd, a + vd + 2, "softmax"))
        return spans

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-able config + numpy arrays (saved with ``np.savez``; no pickles)."""
        meta = {"continuous": self.continuous, "max_onehot": self.max_onehot, "n_quantiles": self.n_quantiles,
                "n_modes": self.n_modes, "seed": self.seed, "output_dim": self.output_dim,
                "specs": [sp.to_json() for sp in self.specs]}
        return meta, dict(self.arrays)

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "DataTransformer":
        t = cls(meta["continuous"], meta["max_onehot"], meta["n_quantiles"], meta["n_modes"], meta["seed"])
        t.specs = [ColumnSpec(**d) for d in meta["specs"]]
        t.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        t.output_dim = meta["output_dim"]
        t._columns = [sp.name for sp in t.specs]
        return t


def _levels(n: int) -> np.ndarray:
    """CDF levels of the quantile grid: midpoints, with the ends pinned near 0 and 1 (min/max)."""
    lv = (np.arange(n) + 0.5) / n
    lv[0], lv[-1] = _EPS, 1 - _EPS
    return lv


def _restore_dtype(vals: np.ndarray, dtype: str) -> Any:
    if vals.dtype != object:
        return vals
    if dtype.startswith(("int", "uint")) and not pd.isna(vals).any():
        return vals.astype(np.int64).astype(dtype)
    if dtype == "bool":
        return vals.astype(bool)
    if dtype.startswith("float"):
        return np.array([np.nan if v is None else v for v in vals], dtype=dtype)
    return vals


def _validate_frame(df: pd.DataFrame, source: str | None) -> None:
    if not isinstance(df, pd.DataFrame):
        raise DataValidationError(source, None, f"expected a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise DataValidationError(source, None, "table is empty (0 rows)")
    if df.shape[1] == 0:
        raise DataValidationError(source, None, "table has no columns")
    for col in df.columns:
        if df[col].isna().all():
            raise DataValidationError(source, col, "is all NaN")
