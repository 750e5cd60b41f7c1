"""A shop's own data: an interactions table (CSV or parquet) + optional user and item tables.

The column mapping comes from a YAML file or ``--map user=COL,item=COL,timestamp=COL,...``::

    name: myshop                  # dataset name (default: "custom")
    interactions: events.csv      # paths relative to the YAML file (CLI flags override them)
    items: products.parquet       # optional; keyed by the same column name as `item`
    users: customers.csv          # optional; keyed by the same column name as `user`
    columns:
      user: customer_id           # required
      item: sku                   # required
      timestamp: ts               # required: ISO-8601 text, or numbers (unit: timestamp_unit)
      label: purchased            # optional: rows with label <= 0 are dropped (not interactions)
      weight: quantity            # optional: positive numbers, default 1.0
    item_attributes: [brand, category]   # optional; default = every other column of `items`
    user_attributes: [age_band]          # optional; default = every other column of `users`
    timestamp_unit: s             # for numeric timestamps: s | ms | us | ns (default s; --map timestamp_unit=ms)
    csv_sep: ","                  # optional
    split: temporal               # temporal (default) | leave_last_out

Raw ids of any type are re-indexed to 1..N; id columns of a CSV are read as text, so ``007``,
``7`` and ``0007`` stay three ids (``datasets/<name>/user_map.parquet`` keeps the exact strings).
Numeric timestamps must fall in 1990 .. now + 1 day in the given unit (else the error names the
unit that fits). Every (attribute column, value) pair becomes one
attribute id; a text cell with ``|`` separators holds several values (``"lipstick|matte"``).
Without an item table every item gets the single attribute id 1 ("no attribute data").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ecaug_feast.datasets.base import FUTURE_SLACK, Dataset, SplitKind, reindex, sort_interactions, validate_dataset
from ecaug_feast.errors import DataValidationError, EcaugError

MAPPING_KEYS = {"user", "item", "timestamp", "label", "weight"}
OPTION_KEYS = {"timestamp_unit"}  # settings --map may carry besides columns (KEY=VALUE)
UNIT_SECONDS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
# numeric epochs before this are taken as a wrong unit (ms data read as ns lands in 1970)
PLAUSIBLE_FROM = pd.Timestamp("1990-01-01", tz="UTC")
TOP_KEYS = {
    "name", "interactions", "items", "users", "columns", "item_attributes", "user_attributes",
    "timestamp_unit", "csv_sep", "split",
}


def parse_map_flag(spec: str) -> dict[str, str]:
    """``user=a,item=b,timestamp=c[,timestamp_unit=ms]`` -> dict; raises ``EcaugError`` on a
    malformed spec."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, col = part.partition("=")
        if not sep or not col.strip():
            raise EcaugError(f"--map: expected KEY=COLUMN, got {part!r}")
        key = key.strip()
        if key not in MAPPING_KEYS | OPTION_KEYS:
            raise EcaugError(f"--map: unknown key {key!r} (use {', '.join(sorted(MAPPING_KEYS | OPTION_KEYS))})")
        if key in out:  # keeping the last one silently would read the wrong column
            raise EcaugError(f"--map: key {key!r} given twice ({out[key]!r} and {col.strip()!r})")
        out[key] = col.strip()
    return out


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read and check a mapping YAML; relative table paths are resolved against its folder."""
    path = Path(path)
    if not path.exists():
        raise DataValidationError(path, None, "mapping file not found")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DataValidationError(path, None, f"not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(cfg, dict):
        raise DataValidationError(path, None, "expected a mapping at the top level")
    unknown = set(cfg) - TOP_KEYS
    if unknown:
        raise DataValidationError(path, sorted(unknown)[0], "unknown key in mapping file")
    cols = cfg.get("columns") or {}
    if not isinstance(cols, dict) or set(cols) - MAPPING_KEYS:
        raise DataValidationError(path, "columns", f"expected keys among {sorted(MAPPING_KEYS)}")
    for key in ("interactions", "items", "users"):
        if cfg.get(key):
            p = Path(cfg[key])
            cfg[key] = str(p if p.is_absolute() else path.parent / p)
    cfg["_mapping_file"] = str(path)
    return cfg


def _read_table(path: str | Path, sep: str | None, text_cols: tuple[str, ...] = ()) -> pd.DataFrame:
    """A table from CSV/TSV/parquet; ``text_cols`` (the id columns) of a CSV are read as text,
    never cast to numbers (``007`` and ``7`` are different ids)."""
    path = Path(path)
    if not path.exists():
        raise DataValidationError(path, None, "file not found")
    suffix = "".join(path.suffixes).lower()
    try:
        if suffix.endswith(".parquet") or suffix.endswith(".pq"):
            df = pd.read_parquet(path)
        elif suffix.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
            df = pd.read_csv(path, sep=sep or ("\t" if ".tsv" in suffix else ","), low_memory=False,
                             dtype={c: str for c in text_cols})
        else:
            raise DataValidationError(path, None, "unsupported file type (use .csv, .tsv or .parquet)")
    except DataValidationError:
        raise
    except pd.errors.EmptyDataError:
        raise DataValidationError(path, None, "no rows (empty data)") from None
    except Exception as exc:  # parser errors of many kinds: report as bad input
        raise DataValidationError(path, None, f"cannot read table: {str(exc).splitlines()[0]}") from None
    if df.empty:
        raise DataValidationError(path, None, "no rows (empty data)")
    return df


def _require(df: pd.DataFrame, col: str, path: str | Path) -> pd.Series:
    if col not in df.columns:
        raise DataValidationError(path, col, f"missing column (have: {', '.join(map(str, df.columns[:12]))})")
    s = df[col]
    if s.isna().any():
        raise DataValidationError(path, col, f"{int(s.isna().sum())} NaN/missing values (first at row {int(np.flatnonzero(s.isna())[0])})")
    return s


def _plain(s: pd.Series) -> pd.Series:
    """A categorical column (parquet dictionary encoding) as a column of its values."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return pd.Series(np.asarray(s.astype(object)), index=s.index, name=s.name).infer_objects()
    return s


def _key(s: pd.Series, path: str | Path, col: str) -> pd.Series:
    """Normalise an id column: integral floats (from CSV NaN-handling) become ints, then strings.
    Categorical columns (parquet dictionary encoding) are read as their values; a cell holding a
    list or array is refused (it would turn into the same text for many different ids)."""
    s = _plain(s)
    if s.dtype == object and isinstance(s.iloc[0], str):  # CSV ids read as text: numbers stay as written
        num = pd.to_numeric(s, errors="coerce")
        if num.notna().all() and not np.all(np.mod(num.to_numpy(dtype=np.float64), 1) == 0):
            raise DataValidationError(path, col, "ids must be integers or strings, got fractional numbers")
    if pd.api.types.is_float_dtype(s.dtype):
        if not np.all(np.mod(s.to_numpy(), 1) == 0):
            raise DataValidationError(path, col, "ids must be integers or strings, got fractional numbers")
        s = s.astype(np.int64)
    if pd.api.types.is_bool_dtype(s.dtype) or not (
        pd.api.types.is_integer_dtype(s.dtype) or s.dtype == object or isinstance(s.dtype, pd.StringDtype)
    ):
        raise DataValidationError(path, col, f"ids must be integers or strings, got {s.dtype}")
    if s.dtype == object:
        nested = s.map(lambda v: isinstance(v, (list, tuple, set, dict, np.ndarray)))
        if nested.any():
            i = int(np.flatnonzero(nested.to_numpy())[0])
            raise DataValidationError(
                path, col, f"ids must be scalars, got a {type(s.iloc[i]).__name__} at row {i} ({_preview(s.iloc[i])})"
            )
    return s.astype(str)


def _preview(value: Any, limit: int = 40) -> str:
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _keyed_table(path: str | Path, sep: str | None, col: str, what: str) -> tuple[pd.DataFrame, pd.Series]:
    """Read an item or user table and its normalised key column; a key listed twice is refused."""
    df = _read_table(path, sep, (col,))
    key = _key(_require(df, col, path), path, col)
    if key.duplicated().any():
        raise DataValidationError(path, col, f"duplicate key: {what} {key[key.duplicated()].iloc[0]!r} listed twice")
    return df, key


# Shapes of date text: year first (ISO-8601 and yyyy/mm/dd) or day/month first (dd/mm/yyyy or
# mm/dd/yyyy, which only the values can tell apart).
_YEAR_FIRST = r"^\s*\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:$|[T\s])"
_DAY_MONTH_FIRST = r"^\s*(\d{1,2})[-/.](\d{1,2})[-/.](\d{2,4})(?:$|[T\s])"


def _text_timestamps(text: pd.Series, path: str | Path, col: str) -> pd.Series:
    """Parse date text with one format per column: a column mixing year-first and day/month-first
    dates, or whose dd/mm vs mm/dd order the values cannot settle, is refused rather than guessed
    (pandas' per-value guessing reads "03/04/2020" month-first next to ISO rows)."""
    year_first = text.str.match(_YEAR_FIRST)
    parts = text.str.extract(_DAY_MONTH_FIRST)
    dm_first = parts[0].notna()
    other = ~(year_first | dm_first)
    kinds = {"ISO (year first)": year_first, "dd/mm/yyyy-like": dm_first, "other text": other}
    present = [(k, m) for k, m in kinds.items() if m.any()]
    if len(present) > 1 and other.any():  # garbage among dates: say "unparseable", not "mixed"
        bad = pd.to_datetime(text[other], utc=True, errors="coerce", format="mixed").isna()
        if bad.any():
            i = int(np.flatnonzero(other.to_numpy())[int(np.flatnonzero(bad.to_numpy())[0])])
            raise DataValidationError(path, col, f"{int(bad.sum())} unparseable timestamps (first: {text.iloc[i]!r} at row {i})")
    if len(present) > 1:
        (k1, m1), (k2, m2) = present[:2]
        i, j = int(np.flatnonzero(m1.to_numpy())[0]), int(np.flatnonzero(m2.to_numpy())[0])
        raise DataValidationError(
            path, col, f"mixed timestamp formats: {k1} {text.iloc[i]!r} at row {i} and {k2} {text.iloc[j]!r} at row {j}; "
            "use one format (ISO-8601 yyyy-mm-dd is unambiguous)",
        )
    if dm_first.any():
        first, second = parts[0].astype(int), parts[1].astype(int)
        day_first, month_first = bool((first > 12).any()), bool((second > 12).any())
        if day_first and month_first:
            i, j = int(np.flatnonzero((first > 12).to_numpy())[0]), int(np.flatnonzero((second > 12).to_numpy())[0])
            raise DataValidationError(
                path, col, f"mixed date orders: {text.iloc[i]!r} (row {i}) is day-first, {text.iloc[j]!r} (row {j}) month-first",
            )
        if not (day_first or month_first):
            raise DataValidationError(
                path, col, f"ambiguous dates: no value tells dd/mm from mm/dd (first: {text.iloc[0]!r}); use ISO-8601 yyyy-mm-dd",
            )
        return pd.to_datetime(text, utc=True, errors="coerce", dayfirst=day_first, format="mixed")
    if year_first.all():
        return pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    return pd.to_datetime(text, utc=True, errors="coerce", format="mixed")


def _timestamps(s: pd.Series, path: str | Path, col: str, unit: str) -> pd.Series:
    s = _plain(s)
    if pd.api.types.is_bool_dtype(s.dtype):
        raise DataValidationError(path, col, "expected timestamps, got booleans")
    if pd.api.types.is_numeric_dtype(s.dtype):
        _check_epoch_unit(s, path, col, unit)
        ts = pd.to_datetime(s, unit=unit, utc=True, errors="coerce")
    elif isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(s.dtype):
        ts = pd.to_datetime(s, utc=True)
    else:
        ts = _text_timestamps(s.astype(str), path, col)
    if ts.isna().any():
        first = int(np.flatnonzero(ts.isna())[0])
        raise DataValidationError(
            path, col, f"{int(ts.isna().sum())} unparseable timestamps (first: {s.iloc[first]!r} at row {first})"
        )
    return ts.dt.as_unit("ns") if hasattr(ts.dt, "as_unit") else ts


def check_unit(unit: Any, source: str | Path | None) -> str:
    """``timestamp_unit`` must be one of s, ms, us, ns (an unknown unit is refused, not ignored)."""
    if str(unit) not in UNIT_SECONDS:
        raise DataValidationError(source, "timestamp_unit", f"unknown unit {unit!r} (use s, ms, us or ns)")
    return str(unit)


def _check_epoch_unit(s: pd.Series, path: str | Path, col: str, unit: str) -> None:
    """Numeric epochs must land in 1990 .. now + 1 day in ``unit``; else the error names the unit
    in which they would (ms data read as ns would otherwise land in 1970, seconds apart)."""
    v = s.to_numpy(dtype=np.float64)
    if not np.isfinite(v).all():
        return  # NaN/inf: reported as unparseable below
    lo_s, hi_s = PLAUSIBLE_FROM.timestamp(), (pd.Timestamp.now(tz="UTC") + FUTURE_SLACK).timestamp()
    secs = v / UNIT_SECONDS[unit]
    bad = (secs < lo_s) | (secs > hi_s)
    if not bad.any():
        return
    fits = [u for u, f in UNIT_SECONDS.items() if u != unit and lo_s <= v.min() / f and v.max() / f <= hi_s]
    i = int(np.flatnonzero(bad)[0])
    hint = (f"the values fit timestamp_unit {fits[0]!r} (--map timestamp_unit={fits[0]} or `timestamp_unit: {fits[0]}`)"
            if fits else "no unit (s, ms, us, ns) puts them there")
    raise DataValidationError(path, col, f"{int(bad.sum())} timestamps outside 1990 .. now+1 day read as timestamp_unit "
                              f"{unit!r} (first: {s.iloc[i]} at row {i}); {hint}")


def _numeric(s: pd.Series, path: str | Path, col: str) -> np.ndarray:
    vals = pd.to_numeric(s, errors="coerce")
    if vals.isna().any():
        first = int(np.flatnonzero(vals.isna())[0])
        raise DataValidationError(path, col, f"expected numbers, got {s.iloc[first]!r} at row {first}")
    return vals.to_numpy(dtype=np.float64)


def _attribute_lists(table: pd.DataFrame, cols: list[str], path: str | Path) -> list[list[int]]:
    """Every (column, value) pair -> an attribute id from 1; ``|`` splits multi-valued text cells."""
    for c in cols:
        if c not in table.columns:
            raise DataValidationError(path, c, "missing attribute column")
    vocab: dict[tuple[str, str], int] = {}
    out: list[list[int]] = []
    for row in table[cols].itertuples(index=False, name=None):
        ids: list[int] = []
        for c, v in zip(cols, row):
            if v is None or (isinstance(v, float) and np.isnan(v)):
                continue
            if isinstance(v, (list, tuple, set, np.ndarray)):  # a parquet list cell: several values
                values = [str(x) for x in v]
            else:
                values = str(v).split("|") if isinstance(v, str) else [str(v)]
            for part in values:
                part = part.strip()
                if part:
                    ids.append(vocab.setdefault((c, part), len(vocab) + 1))
        out.append(sorted(set(ids)))
    return out


def load_generic(
    interactions: str | Path | None = None,
    mapping: dict[str, str] | None = None,
    *,
    items: str | Path | None = None,
    users: str | Path | None = None,
    mapping_file: str | Path | None = None,
    name: str | None = None,
    split: SplitKind | None = None,
) -> Dataset:
    """Load a shop's data through a column mapping (flags override the mapping file)."""
    cfg: dict[str, Any] = read_mapping(mapping_file) if mapping_file else {}
    cols = dict(cfg.get("columns") or {})
    flags = dict(mapping or {})
    unit = check_unit(flags.pop("timestamp_unit", None) or cfg.get("timestamp_unit", "s"),
                      "--map" if "timestamp_unit" in (mapping or {}) else mapping_file)
    cols.update(flags)
    inter_path = interactions or cfg.get("interactions")
    if not inter_path:
        raise EcaugError("no interactions table given (--interactions PATH or `interactions:` in the mapping file)")
    for key in ("user", "item", "timestamp"):
        if key not in cols:
            raise EcaugError(f"column mapping lacks '{key}' (e.g. --map user=COL,item=COL,timestamp=COL)")
    items_path = items or cfg.get("items")
    users_path = users or cfg.get("users")
    sep = cfg.get("csv_sep")
    split_kind: SplitKind = split or cfg.get("split") or "temporal"
    if split_kind not in ("temporal", "leave_last_out"):
        raise EcaugError(f"split must be 'temporal' or 'leave_last_out', got {split_kind!r}")

    df = _read_table(inter_path, sep, (cols["user"], cols["item"]))
    raw_user = _key(_require(df, cols["user"], inter_path), inter_path, cols["user"])
    raw_item = _key(_require(df, cols["item"], inter_path), inter_path, cols["item"])
    ts = _timestamps(_require(df, cols["timestamp"], inter_path), inter_path, cols["timestamp"], unit)
    weight = np.ones(len(df))
    if "weight" in cols:
        weight = _numeric(_require(df, cols["weight"], inter_path), inter_path, cols["weight"])
        if (weight <= 0).any() or not np.isfinite(weight).all():
            raise DataValidationError(inter_path, cols["weight"], "weights must be positive finite numbers")
    keep = np.ones(len(df), dtype=bool)
    if "label" in cols:
        label = _numeric(_require(df, cols["label"], inter_path), inter_path, cols["label"])
        keep = label > 0
        if not keep.any():
            raise DataValidationError(inter_path, cols["label"], "no rows with a positive label (empty data)")
    frame = pd.DataFrame({"raw_user": raw_user, "raw_item": raw_item, "event_timestamp": ts, "weight": weight})[keep]
    dup = frame.duplicated(["raw_user", "raw_item", "event_timestamp"])
    if dup.any():
        r = frame[dup].iloc[0]
        raise DataValidationError(
            inter_path,
            f"{cols['user']}, {cols['item']}, {cols['timestamp']}",
            f"{int(dup.sum())} duplicate keys (first: user {r.raw_user}, item {r.raw_item}, {r.event_timestamp})",
        )

    # Item table (attributes). Items appearing only in the item table are kept as catalogue items.
    if items_path:
        it, it_key = _keyed_table(items_path, sep, cols["item"], "item")
        attr_cols = cfg.get("item_attributes") or [c for c in it.columns if c != cols["item"]]
        if not attr_cols:
            raise DataValidationError(items_path, None, "item table has no attribute columns")
        it_attrs = pd.Series(_attribute_lists(it, list(attr_cols), items_path), index=it_key.to_numpy())
        unknown = ~frame["raw_item"].isin(it_attrs.index)
        if unknown.any():
            raise DataValidationError(
                items_path, cols["item"],
                f"{int(frame.loc[unknown, 'raw_item'].nunique())} interacted items have no row, so no attributes "
                f"(first: {frame.loc[unknown, 'raw_item'].iloc[0]!r})",
            )
        no_attr = it_attrs[it_attrs.map(len) == 0]
        if len(no_attr):
            raise DataValidationError(items_path, ", ".join(attr_cols), f"{len(no_attr)} items have no attributes (first: {no_attr.index[0]!r})")
        raw_items_all = pd.concat([frame["raw_item"], pd.Series(it_key.to_numpy())], ignore_index=True)
    else:
        attr_cols, it_attrs = [], None
        raw_items_all = frame["raw_item"]

    frame = frame.sort_values("event_timestamp", kind="stable")
    user_ids, user_map = reindex(frame["raw_user"], "user_id")
    _, item_map = reindex(raw_items_all.loc[lambda s: ~s.duplicated()], "item_id")
    item_index = pd.Series(item_map["item_id"].to_numpy(), index=item_map["raw_item_id"].to_numpy())
    inter = pd.DataFrame(
        {
            "user_id": user_ids,
            "item_id": item_index.reindex(frame["raw_item"].to_numpy()).to_numpy(dtype=np.int64),
            "event_timestamp": pd.DatetimeIndex(frame["event_timestamp"]).as_unit("ns"),
            "weight": frame["weight"].to_numpy(dtype=np.float64),
        }
    )
    attrs = it_attrs.reindex(item_map["raw_item_id"].to_numpy()).tolist() if it_attrs is not None else [[1]] * len(item_map)
    items_df = pd.DataFrame({"item_id": item_map["item_id"].to_numpy(), "attributes": attrs})

    users_df = None
    if users_path:
        us, us_key = _keyed_table(users_path, sep, cols["user"], "user")
        ucols = cfg.get("user_attributes") or [c for c in us.columns if c != cols["user"]]
        for c in ucols:
            if c not in us.columns:
                raise DataValidationError(users_path, c, "missing user attribute column")
        uidx = pd.Series(user_map["user_id"].to_numpy(), index=user_map["raw_user_id"].to_numpy())
        known = us_key.isin(uidx.index).to_numpy()
        users_df = us.loc[known, list(ucols)].reset_index(drop=True)
        users_df.insert(0, "user_id", uidx.reindex(us_key[known].to_numpy()).to_numpy(dtype=np.int64))
        users_df = users_df.sort_values("user_id").reset_index(drop=True)

    ds = Dataset(
        name=name or cfg.get("name") or "custom",
        interactions=sort_interactions(inter),
        items=items_df,
        users=users_df,
        split_kind=split_kind,
        meta={
            "source": str(inter_path),
            "files": [str(p) for p in (inter_path, items_path, users_path) if p],
            "format": "generic",
            "columns": cols,
            "item_attributes": list(attr_cols),
            "timestamp_scheme": "from the mapped timestamp column (UTC)",
            "timestamp_unit": unit,
            "negative_label_rows_dropped": int((~keep).sum()),
            **({"mapping_file": cfg["_mapping_file"]} if "_mapping_file" in cfg else {}),
        },
        user_map=user_map,
        item_map=item_map,
    )
    return validate_dataset(ds, inter_path)
