"""Incremental append to the Feast sources: new real events become a new published version of
``<state>/feast/`` (the counterpart of :func:`ecaug_feast.features.ingest.ingest_dataset`, which
rebuilds everything). Only the users and items the events touch are recomputed.

Used by ``ecaug refresh`` (:mod:`ecaug_feast.jobs.refresh`); a library: it takes the Feast data
folder and the events, and starts nothing.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ecaug_feast import feast_io, paths
from ecaug_feast import schema as S
from ecaug_feast.datasets.base import FUTURE_SLACK
from ecaug_feast.datasets.store import dataset_dir
from ecaug_feast.errors import DataValidationError
from ecaug_feast.features import build
from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE

APPENDED_LOG = "appended_events.parquet"


def checked_feast_dir(feast_dir: Path | None) -> Path:
    d = Path(feast_dir) if feast_dir else paths.feast_data_dir()
    if not (d / "train_interactions.parquet").exists():
        raise DataValidationError(d / "train_interactions.parquet", None, "missing: run `ecaug ingest` first")
    return d


def store_events(feast_dir: Path | None = None) -> pd.DataFrame:
    """The training interactions source (user, item, time, label), times as UTC."""
    return feast_io.source_rows(feast_io.source_file(checked_feast_dir(feast_dir), feast_io.TRAIN_SOURCE))


def _attribute_lists(col: pd.Series, f: Path) -> list[list[int] | None]:
    """The optional ``attributes`` column: a list of attribute ids per row (parquet lists, or in a
    CSV ids separated by spaces, ``|``, ``;`` or commas, brackets allowed); empty/null = not given."""
    out: list[list[int] | None] = []
    for v in col:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            out.append(None)
            continue
        parts = re.split(r"[\s|;,]+", v.strip().strip("[]").strip()) if isinstance(v, str) else list(v)
        parts = [p for p in parts if not (isinstance(p, str) and p == "")]
        try:
            ids = [int(p) for p in parts]
        except (TypeError, ValueError):
            raise DataValidationError(f, S.ATTRIBUTES, f"not a list of integer attribute ids: {str(v)[:40]!r}") from None
        out.append(ids or None)
    return out


def read_events(path: str | Path) -> pd.DataFrame:
    """New interactions from a CSV/parquet file or a folder of them: ``user_id``, ``item_id``,
    ``event_timestamp`` (ecaug's ids: ``datasets/<name>/user_map``/``item_map``), optional
    ``label`` (rows with label <= 0 are dropped, as at ingest), optional ``attributes`` (the
    attribute ids of an item not in the catalogue yet: a new item, added by the append)."""
    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.suffix in (".csv", ".parquet")) if p.is_dir() else [p]
    if not files or not files[0].exists():
        raise DataValidationError(p, None, "no events file (.csv or .parquet)")
    frames = []
    for f in files:
        df = pd.read_parquet(f) if f.suffix == ".parquet" else pd.read_csv(f)
        for c in ("user_id", "item_id", "event_timestamp"):
            if c not in df.columns:
                raise DataValidationError(f, c, "missing column (events need user_id, item_id, event_timestamp)")
        for c in ("user_id", "item_id"):
            if df[c].isna().any() or not pd.api.types.is_integer_dtype(df[c]):
                raise DataValidationError(f, c, "must be integer ids (ecaug's ids, see datasets/<name>/*_map.parquet)")
        try:
            ts = pd.to_datetime(df["event_timestamp"], utc=True)
        except (ValueError, TypeError):
            raise DataValidationError(f, "event_timestamp", "unparseable timestamps") from None
        if ts.isna().any():
            raise DataValidationError(f, "event_timestamp", "missing timestamps")
        out = pd.DataFrame({"user_id": df["user_id"].astype(np.int64), "item_id": df["item_id"].astype(np.int64),
                            "event_timestamp": ts})
        if S.ATTRIBUTES in df.columns:
            out[S.ATTRIBUTES] = _attribute_lists(df[S.ATTRIBUTES], f)
        if "label" in df.columns:
            out = out[df["label"].to_numpy() > 0]
        frames.append(out)
    return pd.concat(frames, ignore_index=True)


def _event_keys(df: pd.DataFrame) -> pd.MultiIndex:
    """(user, item, time in ns) of each event: the identity of an event across files and units."""
    ts = pd.to_datetime(df["event_timestamp"], utc=True).dt.as_unit("ns").astype("int64")
    return pd.MultiIndex.from_arrays([df["user_id"].to_numpy(np.int64), df["item_id"].to_numpy(np.int64), ts.to_numpy()])


def check_events(new: pd.DataFrame, ti: pd.DataFrame, source: str | None, allow_new_users: bool = False,
                 skip_late: bool = False) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The events to append, and what was left out. Refused (one line: source, column, reason):
    an event dated after now + one day (it would hide every later event), an event at or before
    the store's last event that is not already in the store (unless ``skip_late``), an event of
    a user the store does not know (unless ``allow_new_users``). Events already in the store
    (appended by an earlier, maybe interrupted, refresh) are skipped: rerunning converges."""
    limit = pd.Timestamp.now(tz="UTC") + FUTURE_SLACK
    future = new["event_timestamp"] > limit
    if future.any():
        r = new[future].iloc[0]
        raise DataValidationError(source, "event_timestamp", f"{int(future.sum())} events dated in the future (first: user "
                                  f"{int(r.user_id)} at {r.event_timestamp}; now is {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC)")
    pos = ti[ti["label"] == 1]
    already = _event_keys(new).isin(_event_keys(pos))
    done, new = new[already], new[~already]
    last = ti["event_timestamp"].max()
    late = new["event_timestamp"] <= last
    if late.any() and not skip_late:
        r = new[late].iloc[0]
        raise DataValidationError(source, "event_timestamp", f"{int(late.sum())} events at or before the store's last event "
                                  f"({last}; first: user {int(r.user_id)} at {r.event_timestamp}); pass --skip-late to leave them out")
    new = new[~late]
    unknown = ~new["user_id"].isin(ti["user_id"].unique())
    if unknown.any() and not allow_new_users:
        raise DataValidationError(source, "user_id", f"{int(new.loc[unknown, 'user_id'].nunique())} users not in the store "
                                  f"(first: {int(new.loc[unknown, 'user_id'].iloc[0])}); pass --allow-new-users to add them as new users")
    info = {"skipped_late": int(late.sum()), "already_appended": int(len(done)),
            "first_already_appended": done["event_timestamp"].min().isoformat() if len(done) else None,
            "new_users": int(new.loc[unknown, "user_id"].nunique())}
    return new.sort_values(["event_timestamp"], kind="stable").reset_index(drop=True), info


def catalogue_with_new_items(items: pd.DataFrame, feast_dir: Path, new: pd.DataFrame, source: str | None,
                             items_path: Path) -> tuple[pd.DataFrame, list[int]]:
    """The catalogue the events may name (the ingested items + items an earlier append added, as
    the ``item_features`` source holds them) and the ids of the new items these events add.

    A new item is an id the catalogue does not hold whose events give its ``attributes``; refused
    (one line): an unknown item without attributes, new ids that do not continue the catalogue's
    ids (max + 1, max + 2, ...: models index items by id), attribute ids the catalogue never used."""
    cat = items[[S.ITEM_ID, S.ATTRIBUTES]]
    rows = feast_io.source_rows(feast_io.source_file(feast_dir, build.ITEM_FEATURES), [S.ITEM_ID, S.EVENT_TIMESTAMP, S.ATTRIBUTES])
    extra = rows[~rows[S.ITEM_ID].isin(cat[S.ITEM_ID])]
    if len(extra):  # items an earlier append added
        extra = extra.sort_values(S.EVENT_TIMESTAMP, kind="stable").groupby(S.ITEM_ID).tail(1)
        cat = pd.concat([cat, extra[[S.ITEM_ID, S.ATTRIBUTES]]], ignore_index=True)
    unknown = ~new[S.ITEM_ID].isin(cat[S.ITEM_ID])
    if not unknown.any():
        return cat, []
    given = new.loc[unknown]
    if S.ATTRIBUTES not in given.columns or given[S.ATTRIBUTES].isna().any():
        bad = given if S.ATTRIBUTES not in given.columns else given[given[S.ATTRIBUTES].isna()]
        raise DataValidationError(source, S.ITEM_ID, f"item {int(bad[S.ITEM_ID].iloc[0])} is not in the catalogue ({items_path}); "
                                  f"a new item needs its attribute ids in an '{S.ATTRIBUTES}' column")
    first = given.drop_duplicates(S.ITEM_ID).sort_values(S.ITEM_ID)
    ids = first[S.ITEM_ID].to_numpy(np.int64)
    top = int(cat[S.ITEM_ID].max()) if len(cat) else 0
    if not np.array_equal(ids, np.arange(top + 1, top + 1 + len(ids))):
        raise DataValidationError(source, S.ITEM_ID, f"new item ids {ids[:5].tolist()} must continue the catalogue's ids "
                                  f"({top + 1}, {top + 2}, ...)")
    known = {int(a) for x in cat[S.ATTRIBUTES] for a in x}
    for i, attrs in zip(ids, first[S.ATTRIBUTES]):
        odd = [a for a in attrs if a not in known]
        if odd:
            raise DataValidationError(source, S.ATTRIBUTES, f"item {int(i)}: attribute id {odd[0]} is not used by any catalogue item")
    add = pd.DataFrame({S.ITEM_ID: ids, S.ATTRIBUTES: [sorted(set(map(int, a))) for a in first[S.ATTRIBUTES]]})
    return pd.concat([cat, add], ignore_index=True), [int(i) for i in ids]


def append_events(new: pd.DataFrame, seed: int = 0, feast_dir: Path | None = None, source: str | None = None,
                  allow_new_users: bool = False, skip_late: bool = False) -> dict[str, Any]:
    """Append positive events after the store's last training event to the Feast sources and
    publish them as a new version. Only the touched users' feature rows are computed (from their
    own history) and only the touched items get new popularity rows; negatives are sampled for the
    new events at the ingest's ratio. What is refused or skipped: :func:`check_events`.
    Returns a summary."""
    t0 = time.perf_counter()
    out = checked_feast_dir(feast_dir)
    meta = build.read_feature_meta(out) or {}
    ti = store_events(out)
    last = ti["event_timestamp"].max()
    new = new.drop_duplicates(["user_id", "item_id", "event_timestamp"])
    new, info = check_events(new, ti, source, allow_new_users=allow_new_users, skip_late=skip_late)
    summary: dict[str, Any] = {"events": int(len(new)), **info, "version": None}
    if len(new) == 0:
        return summary
    bad = (new["user_id"] <= 0) | (new["user_id"] >= SYNTHETIC_USER_ID_BASE)
    if bad.any():
        raise DataValidationError(source, "user_id", f"id {int(new.loc[bad, 'user_id'].iloc[0])} outside the real key space [1, 2^40)")
    items_path = dataset_dir(meta.get("dataset") or "") / "items.parquet"
    if not meta.get("dataset") or not items_path.exists():
        raise DataValidationError(items_path, None, "the ingested dataset's item table is missing: run `ecaug ingest` first")
    items, added = catalogue_with_new_items(pd.read_parquet(items_path), out, new, source, items_path)
    new = new[["user_id", "item_id", "event_timestamp"]]
    attributes = build.item_attributes(items)

    # users: their whole positive history (old + new) through the feature builder; popularity
    # counts every user's positives (old + new), not only the touched users'
    pos = ti.loc[ti["label"] == 1, ["user_id", "item_id", "event_timestamp"]]
    allpos = pd.concat([pos, new], ignore_index=True)
    touched = allpos[allpos["user_id"].isin(new["user_id"].unique())]
    uf = build.build_user_features(touched, attributes, popularity_reference=allpos)
    old_last = feast_io.source_rows(feast_io.source_file(out, build.USER_FEATURES), ["user_id", "event_timestamp"])
    old_last = old_last[old_last["user_id"].isin(new["user_id"].unique())]
    old_last = old_last.groupby("user_id")["event_timestamp"].max()  # UTC (source_rows)
    cut = old_last.reindex(uf["user_id"].to_numpy()).to_numpy()
    keep = pd.isna(cut) | (uf["event_timestamp"].to_numpy() > cut)
    uf_new = uf[keep].reset_index(drop=True)

    # items: cumulative popularity continues from each item's last row
    itf_old = feast_io.source_rows(feast_io.source_file(out, build.ITEM_FEATURES), ["item_id", "event_timestamp", S.POPULARITY])
    base_pop = itf_old.sort_values("event_timestamp", kind="stable").groupby("item_id")[S.POPULARITY].last()
    g = new.groupby(["item_id", "event_timestamp"], sort=True).size().rename("n").reset_index()
    g[S.POPULARITY] = g.groupby("item_id")["n"].cumsum() + base_pop.reindex(g["item_id"]).fillna(0).to_numpy()
    g["event_timestamp"] = g["event_timestamp"] + build.SERVING_OFFSET
    g[S.ATTRIBUTES] = [list(map(int, attributes.get(int(i), []))) for i in g["item_id"]]
    g[S.N_ATTRIBUTES] = g[S.ATTRIBUTES].map(len).astype(np.int64)
    g[S.POPULARITY] = g[S.POPULARITY].astype(np.float32)
    itf_new = g[S.ITEM_SCHEMA.names]

    neg_ratio = int(meta.get("negatives_per_positive", 1))
    negs = build.sample_negatives(new, items["item_id"].to_numpy(np.int64), neg_ratio, seed).assign(label=0)
    ti_new = pd.concat([new.assign(label=1), negs], ignore_index=True)
    ti_new["label"] = ti_new["label"].astype(np.int64)

    parts = ((build.USER_FEATURES, uf_new, build.USER_SCHEMA), (build.ITEM_FEATURES, itf_new, build.ITEM_SCHEMA),
             (build.TRAIN_INTERACTIONS, ti_new, build.TRAIN_SCHEMA))
    appended = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "events": int(len(new)),
                "first": new["event_timestamp"].min().isoformat(), "last": new["event_timestamp"].max().isoformat(),
                "rows": {name: int(len(df)) for name, df, _ in parts}}
    new_meta = dict(meta)

    def write(folder: Path) -> None:
        rows = {}
        for name, df, schema in parts:
            old = pq.read_table(out / f"{name}.parquet").cast(schema)
            add = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
            tbl = pa.concat_tables([old, add])
            pq.write_table(tbl, folder / f"{name}.parquet")
            rows[name] = tbl.num_rows
        log_old = out / build.CURRENT / APPENDED_LOG
        log_df = new.assign(appended_at=appended["at"])
        if log_old.exists():  # every appended event stays on record, so a full rebuild can replay them
            log_df = pd.concat([pd.read_parquet(log_old), log_df], ignore_index=True)
        log_df.to_parquet(folder / APPENDED_LOG, index=False)
        new_meta.update(rows=rows, version=folder.name, written_at=appended["at"],
                        last_feature_time=max(pd.Timestamp(meta.get("last_feature_time", last)),
                                              uf_new["event_timestamp"].max(), itf_new["event_timestamp"].max()).isoformat(),
                        appends=list(meta.get("appends", [])) + [appended])
        (folder / build.FEATURE_META).write_text(json.dumps(new_meta, indent=2, default=str) + "\n", encoding="utf-8")

    version = build.publish_feature_set(out, write)
    summary.update(version=version.name, rows=appended["rows"], first=appended["first"], last=appended["last"],
                   users=int(new["user_id"].nunique()), new_items=added, seconds=round(time.perf_counter() - t0, 3))
    return summary
