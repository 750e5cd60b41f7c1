"""Amazon Beauty / Sports / Toys in the S3-Rec format (``<Category>.txt`` + ``_item2attributes.json``).

The files keep only each user's item *order*, no timestamps. We derive a deterministic clock:

    event k (0-based) of a user with n items happens at
        S3REC_END - (n - 1 - k) days            (S3REC_END = 2014-07-01T00:00:00Z)

so every user's sequence ends on the same day (the last event is the test item on S3REC_END, the
second to last the validation item a day earlier), consecutive events are one day apart, and the
timestamp order equals the sequence order. The same input always yields the same timestamps.
The end date matches the end of the 2014 Amazon review crawl; the absolute dates carry no meaning.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ecaug_feast import paths
from ecaug_feast.datasets.base import Dataset, sort_interactions, validate_dataset
from ecaug_feast.errors import DataValidationError, EcaugError

S3REC_END = pd.Timestamp("2014-07-01T00:00:00Z")
S3REC_STEP = pd.Timedelta(days=1)

# CLI name -> file stem in the S3-Rec release.
S3REC_FILES = {"beauty": "Beauty", "sports": "Sports_and_Outdoors", "toys": "Toys_and_Games"}
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "bundled" / "beauty"


def s3rec_source_dir(name: str) -> Path:
    """Where the files for ``name`` live: ``<shared>/amazon_s3rec/``, else the bundled Beauty copy."""
    stem = S3REC_FILES[name]
    shared = paths.shared_data_dir() / "amazon_s3rec"
    if (shared / f"{stem}.txt").exists():
        return shared
    if name == "beauty" and (BUNDLED_DIR / "Beauty.txt").exists():
        return BUNDLED_DIR
    raise EcaugError(
        f"{shared / (stem + '.txt')}: dataset '{name}' not found (only Beauty is bundled; "
        "set ECAUG_SHARED_DATA to a folder holding amazon_s3rec/)"
    )


def _read_sequences(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse ``user item item ...`` lines; returns (user, item, position) arrays."""
    users: list[int] = []
    lengths: list[int] = []
    items: list[str] = []
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise DataValidationError(path, "item_id", f"line {lineno}: user {parts[0]} has no items")
            try:
                users.append(int(parts[0]))
            except ValueError:
                raise DataValidationError(path, "user_id", f"line {lineno}: not an integer: {parts[0]!r}") from None
            lengths.append(len(parts) - 1)
            items.extend(parts[1:])
    if not users:
        raise DataValidationError(path, None, "no interactions (empty file)")
    try:
        item_arr = np.asarray(items, dtype=np.int64)
    except ValueError:
        bad = next(x for x in items if not x.lstrip("-").isdigit())
        raise DataValidationError(path, "item_id", f"not an integer: {bad!r}") from None
    lens = np.asarray(lengths, dtype=np.int64)
    user_arr = np.repeat(np.asarray(users, dtype=np.int64), lens)
    # position from the END of the sequence: 0 for the last item
    starts = np.repeat(np.cumsum(lens) - lens, lens)
    pos = np.arange(len(item_arr), dtype=np.int64) - starts
    from_end = np.repeat(lens, lens) - 1 - pos
    return user_arr, item_arr, from_end


def _read_attributes(path: Path) -> pd.DataFrame:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataValidationError(path, None, f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(raw, dict):
        raise DataValidationError(path, None, "expected a JSON object {item_id: [attribute ids]}")
    try:
        ids = np.asarray([int(k) for k in raw], dtype=np.int64)
        attrs = [sorted({int(a) for a in v}) for v in raw.values()]
    except (TypeError, ValueError):
        raise DataValidationError(path, "attributes", "keys must be item ids and values lists of integer ids") from None
    if any(a < 1 for lst in attrs for a in lst):
        raise DataValidationError(path, "attributes", "attribute ids must be >= 1")
    return pd.DataFrame({"item_id": ids, "attributes": attrs})


def load_s3rec(name: str, source_dir: str | Path | None = None) -> Dataset:
    """Load one S3-Rec category (``beauty``, ``sports`` or ``toys``)."""
    if name not in S3REC_FILES:
        raise EcaugError(f"unknown S3-Rec dataset '{name}' (choose from {', '.join(S3REC_FILES)})")
    src = Path(source_dir) if source_dir else s3rec_source_dir(name)
    stem = S3REC_FILES[name]
    seq_path, attr_path = src / f"{stem}.txt", src / f"{stem}_item2attributes.json"
    for p in (seq_path, attr_path):
        if not p.exists():
            raise DataValidationError(p, None, "file not found")
    user, item, from_end = _read_sequences(seq_path)
    if user.min() < 1 or item.min() < 1:
        col = "user_id" if user.min() < 1 else "item_id"
        raise DataValidationError(seq_path, col, "ids must be >= 1")
    ts = S3REC_END - pd.to_timedelta(from_end, unit="D")
    inter = pd.DataFrame(
        {
            "user_id": user,
            "item_id": item,
            "event_timestamp": pd.DatetimeIndex(ts).as_unit("ns"),
            "weight": np.ones(len(user), dtype=np.float64),
        }
    )
    dup = inter.duplicated(["user_id", "event_timestamp"])
    if dup.any():
        u = int(inter.loc[dup, "user_id"].iloc[0])
        raise DataValidationError(seq_path, "user_id", f"user {u} appears on more than one line (duplicate key)")
    items = _read_attributes(attr_path)
    # Items 1..I: every id in the sequences or the attribute file.
    n_items = int(max(item.max(), items["item_id"].max()))
    items = items.set_index("item_id").reindex(np.arange(1, n_items + 1, dtype=np.int64))
    items.index.name = "item_id"
    items = items.reset_index()
    items["attributes"] = items["attributes"].map(lambda a: a if isinstance(a, list) else [])
    # Items never interacted with and without attributes can be dropped from the check by giving
    # them nothing; interacted items without attributes are an error (validate_dataset).
    interacted = np.zeros(n_items + 1, dtype=bool)
    interacted[item] = True
    keep = items["attributes"].map(len).gt(0).to_numpy() | interacted[items["item_id"].to_numpy()]
    items = items[keep].reset_index(drop=True)
    ds = Dataset(
        name=name,
        interactions=sort_interactions(inter),
        items=items,
        users=None,
        split_kind="leave_last_out",
        meta={
            "source": str(src),
            "files": [seq_path.name, attr_path.name],
            "format": "s3rec",
            "timestamp_scheme": (
                f"derived from sequence order: event k of n at {S3REC_END.isoformat()} - (n-1-k) days"
            ),
        },
    )
    return validate_dataset(ds, seq_path)
