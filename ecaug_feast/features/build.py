"""Point-in-time user/item features and training interaction rows, written as Feast parquet sources.

Only the *train* split feeds anything here; validation and test rows are never read.

``user_features`` (one row per user per distinct training event time ``t``, values from that user's
training events strictly before ``t``; plus one *serving* row at ``last training event + 1 ms`` with
values from all training events, which validation/test/serving queries pick up):

- ``n_interactions``: number of earlier events.
- ``days_since_last``: days from the previous event to the row time; ``-1.0`` when there is none.
- ``recent_items``: earlier items, most recent first, at most 50 (the ordered history of the sequence
  model; the bag model reads the newest 20).
- ``top_attributes``: up to 5 attribute ids by count over earlier items (ties: smaller id first).
- ``attr_diversity``: Shannon entropy (nats) of the attribute counts over earlier items.
- ``mean_item_popularity``: mean, over earlier events, of the consumed item's popularity at the
  time it was consumed (training events of that item strictly before).

``item_features`` (exact at every time): a row at ``first event - 1 day`` with popularity 0 for
every item, then for each distinct time ``t`` an item was consumed in training, a row at
``t + 1 ms`` with ``popularity`` = training events of the item at or before ``t`` (i.e. strictly
before the row time). A query at any time sees only earlier events. ``attributes`` and
``n_attributes`` are static.

``train_interactions`` (the entity rows for training): every training event with ``label`` 1, and
``neg_per_pos`` sampled negatives per event with ``label`` 0 at the same timestamp. Negatives are
drawn uniformly from the item catalogue, re-drawn while they hit an item the user has in the
*training* split (held-out items are not used to filter, which would leak them), seeded (default 0).

Published as one set: the three parquet files and ``feature_meta.json`` are written into a new
version folder ``<state>/feast/v-<time>-<pid>/``, then one symlink, ``<state>/feast/current``, is
swapped to it with a single rename. The paths readers and the Feast FileSources use,
``<state>/feast/<name>.parquet`` and ``<state>/feast/feature_meta.json``, are fixed links into
``current/``, so a reader sees the old set or the new set, never a mix; a failure (full disk,
kill -9) before the swap leaves the previous set as it was. The previous version is kept, older
ones are deleted after the swap. Writers take ``<state>/feast/.lock``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ecaug_feast import paths
from ecaug_feast import schema as S
from ecaug_feast.atomic import exclusive_lock, swap_symlink
from ecaug_feast.datasets.store import ProcessedDataset
from ecaug_feast.names import assert_strict_child

RECENT_ITEMS = 50  # the sequence model reads up to 50 (SASRec max_len); the bag model keeps the newest 20
TOP_ATTRIBUTES = 5
SERVING_OFFSET = pd.Timedelta(milliseconds=1)
ITEM_BASE_OFFSET = pd.Timedelta(days=1)
_DAY_NS = 86_400 * 10**9

USER_FEATURES = "user_features"
ITEM_FEATURES = "item_features"
TRAIN_INTERACTIONS = "train_interactions"
FEATURE_META = "feature_meta.json"
CURRENT = "current"
VERSION_PREFIX = "v-"

# Declared in ecaug_feast.schema (one place for Feast fields, Arrow types and column lists).
USER_SCHEMA = S.USER_SCHEMA
ITEM_SCHEMA = S.ITEM_SCHEMA
TRAIN_SCHEMA = S.TRAIN_SCHEMA


@dataclass
class FeatureTables:
    user_features: pd.DataFrame
    item_features: pd.DataFrame
    train_interactions: pd.DataFrame


def popularity_at(rows: pd.DataFrame, reference: pd.DataFrame) -> np.ndarray:
    """For each of ``rows``: events of ``reference`` with the same item strictly before its
    timestamp (``popularity_at(train, train)``: each training event's item popularity so far)."""
    def key(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return df["item_id"].to_numpy(np.int64), pd.to_datetime(df["event_timestamp"], utc=True).astype("datetime64[ns, UTC]").astype("int64").to_numpy()

    ri, rt = key(reference)
    qi, qt = key(rows)
    # one sort of both: at equal (item, time) a query row comes first, so it counts only strictly
    # earlier reference events; the count is the reference rows of its item ahead of it
    item = np.concatenate([ri, qi])
    t = np.concatenate([rt, qt])
    is_ref = np.concatenate([np.ones(len(ri), np.int64), np.zeros(len(qi), np.int64)])
    order = np.lexsort((is_ref, t, item))
    cum = np.cumsum(is_ref[order]) - is_ref[order]  # reference rows strictly ahead in the sort
    item_s = item[order]
    first = np.concatenate([[True], item_s[1:] != item_s[:-1]]) if len(item_s) else np.zeros(0, bool)
    start = np.maximum.accumulate(np.where(first, np.arange(len(item_s)), 0)) if len(item_s) else np.zeros(0, np.int64)
    count = cum - cum[start]
    out = np.empty(len(item), np.float64)
    out[order] = count
    return out[len(ri):]


def item_attributes(items: pd.DataFrame) -> dict[int, list[int]]:
    """Item id -> attribute ids, from an items table (``item_id``, ``attributes``): the form
    :func:`build_user_features` and the sequence generator's ``attr_coherence`` read."""
    return dict(zip(items[S.ITEM_ID].astype(int), items[S.ATTRIBUTES]))


def build_user_features(train: pd.DataFrame, attributes: dict[int, list[int]], progress: Callable[[int, int], None] | None = None,
                        popularity_reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows described in the module docstring. ``popularity_reference``: the events an item's
    popularity counts (default ``train`` itself); e.g. the real training events, for generated
    users' rows, whose own consumption must not count as if it were real."""
    train = train.sort_values(["user_id", "event_timestamp"], kind="stable").reset_index(drop=True)
    users = train["user_id"].to_numpy(np.int64)
    ts = train["event_timestamp"].to_numpy("datetime64[ns]").astype(np.int64)
    items = train["item_id"].to_numpy(np.int64).tolist()
    pop = popularity_at(train, train if popularity_reference is None else popularity_reference).tolist()
    bounds = np.flatnonzero(np.diff(users)) + 1
    starts = np.concatenate([[0], bounds]).tolist()
    ends = np.concatenate([bounds, [len(users)]]).tolist()
    ts_l = ts.tolist()
    off = int(SERVING_OFFSET.value)

    o_user: list[int] = []
    o_ts: list[int] = []
    o_n: list[int] = []
    o_days: list[float] = []
    o_recent: list[list[int]] = []
    o_top: list[list[int]] = []
    o_div: list[float] = []
    o_pop: list[float] = []

    for bi, (s, e) in enumerate(zip(starts, ends)):
        u = int(users[s])
        counts: dict[int, int] = {}
        top: list[int] = []  # up to TOP_ATTRIBUTES ids by (count desc, id asc), kept incrementally
        s_clogc = 0.0  # sum of c*log(c) over attribute counts, for incremental entropy
        n_attr = 0
        pop_sum = 0.0
        last_t = None
        k = s

        def emit(t: int, n: int) -> None:
            o_user.append(u)
            o_ts.append(t)
            o_n.append(n)
            o_days.append((t - last_t) / _DAY_NS if last_t is not None else -1.0)
            o_recent.append(items[max(s, s + n - RECENT_ITEMS) : s + n][::-1])
            o_top.append(list(top))
            o_div.append(max(0.0, math.log(n_attr) - s_clogc / n_attr) if n_attr else 0.0)  # clamp float noise
            o_pop.append(pop_sum / n if n else 0.0)

        while k < e:
            t = ts_l[k]
            emit(t, k - s)
            while k < e and ts_l[k] == t:  # absorb every event at this time
                for a in attributes.get(items[k], ()):
                    c = counts.get(a, 0)
                    s_clogc += (c + 1) * math.log(c + 1) - (c * math.log(c) if c else 0.0)
                    counts[a] = c + 1
                    n_attr += 1
                    # Counts only grow, so only the incremented attribute can enter the top list.
                    if a in top or len(top) < TOP_ATTRIBUTES or (c + 1, -a) > (counts[top[-1]], -top[-1]):
                        if a not in top:
                            top.append(a)
                        top.sort(key=lambda x: (-counts[x], x))
                        del top[TOP_ATTRIBUTES:]
                pop_sum += pop[k]
                k += 1
            last_t = t
        emit(last_t + off, e - s)  # serving row
        if progress is not None and bi % 2000 == 0:
            progress(s, len(users))  # (training rows done, total)
    if progress is not None:
        progress(len(users), len(users))

    return pd.DataFrame(
        {
            "user_id": np.asarray(o_user, dtype=np.int64),
            "event_timestamp": pd.to_datetime(np.asarray(o_ts, dtype=np.int64), utc=True),
            S.N_INTERACTIONS: np.asarray(o_n, dtype=np.int64),
            S.DAYS_SINCE_LAST: np.asarray(o_days, dtype=np.float32),
            S.RECENT_ITEMS: o_recent,
            S.TOP_ATTRIBUTES: o_top,
            S.ATTR_DIVERSITY: np.asarray(o_div, dtype=np.float32),
            S.MEAN_ITEM_POPULARITY: np.asarray(o_pop, dtype=np.float32),
        }
    )


def build_item_features(train: pd.DataFrame, items: pd.DataFrame, base_time: pd.Timestamp) -> pd.DataFrame:
    """Initial zero rows at ``base_time`` + a row after each distinct consumption time (exact popularity)."""
    g = (
        train.groupby(["item_id", "event_timestamp"], sort=True).size().rename("n").reset_index()
    )
    g[S.POPULARITY] = g.groupby("item_id")["n"].cumsum()
    g["event_timestamp"] = g["event_timestamp"] + SERVING_OFFSET
    base = pd.DataFrame(
        {"item_id": items["item_id"].to_numpy(np.int64), "event_timestamp": base_time, S.POPULARITY: 0}
    )
    out = pd.concat([base, g[["item_id", "event_timestamp", S.POPULARITY]]], ignore_index=True)
    out = out.sort_values(["item_id", "event_timestamp"], kind="stable").reset_index(drop=True)
    attrs = pd.Series(items[S.ATTRIBUTES].to_numpy(), index=items["item_id"].to_numpy(np.int64))
    a = attrs.reindex(out["item_id"].to_numpy())
    out[S.ATTRIBUTES] = [list(map(int, x)) for x in a.to_numpy()]
    out[S.N_ATTRIBUTES] = out[S.ATTRIBUTES].map(len).astype(np.int64)
    out[S.POPULARITY] = out[S.POPULARITY].astype(np.float32)
    return out[ITEM_SCHEMA.names]


def sample_negatives(train: pd.DataFrame, item_ids: np.ndarray, neg_per_pos: int, seed: int) -> pd.DataFrame:
    """Uniform negatives per training event, re-drawn while they hit the user's training items."""
    if neg_per_pos <= 0:
        return train.iloc[:0][["user_id", "item_id", "event_timestamp"]]
    rng = np.random.default_rng(seed)
    users = np.repeat(train["user_id"].to_numpy(np.int64), neg_per_pos)
    ts = np.repeat(train["event_timestamp"].to_numpy(), neg_per_pos)
    big = np.int64(int(item_ids.max()) + 1)
    known = np.unique(train["user_id"].to_numpy(np.int64) * big + train["item_id"].to_numpy(np.int64))
    neg = item_ids[rng.integers(0, len(item_ids), size=len(users))]
    for _ in range(100):  # each round re-draws only collisions; users with almost every item are rare
        bad = np.isin(users * big + neg, known)
        if not bad.any():
            break
        neg[bad] = item_ids[rng.integers(0, len(item_ids), size=int(bad.sum()))]
    else:
        keep = ~np.isin(users * big + neg, known)
        users, ts, neg = users[keep], ts[keep], neg[keep]
    return pd.DataFrame({"user_id": users, "item_id": neg, "event_timestamp": ts})


def build_tables(data: ProcessedDataset, neg_per_pos: int = 1, seed: int = 0, progress: Callable[[int, int], None] | None = None) -> FeatureTables:
    """Compute the three Feast sources from the train split of ``data``."""
    train = data.train
    attributes = item_attributes(data.items)
    uf = build_user_features(train, attributes, progress)
    base_time = data.interactions["event_timestamp"].min() - ITEM_BASE_OFFSET
    itf = build_item_features(train, data.items, base_time)
    pos = train[["user_id", "item_id", "event_timestamp"]].assign(label=1)
    neg = sample_negatives(train, data.items["item_id"].to_numpy(np.int64), neg_per_pos, seed).assign(label=0)
    ti = pd.concat([pos, neg], ignore_index=True)
    ti["label"] = ti["label"].astype(np.int64)
    ti = ti.sort_values(["user_id", "event_timestamp", "label"], ascending=[True, True, False], kind="stable").reset_index(drop=True)
    return FeatureTables(uf, itf, ti)


def _write_parquet(df: pd.DataFrame, schema: pa.Schema, path: Path) -> None:
    """Write ``df`` with ``schema`` to ``path`` (inside an unpublished version folder)."""
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    pq.write_table(table, path)


PUBLISHED = (f"{USER_FEATURES}.parquet", f"{ITEM_FEATURES}.parquet", f"{TRAIN_INTERACTIONS}.parquet", FEATURE_META)


def _adopt_legacy_files(out: Path) -> None:
    """Move a set written by older ecaug (plain files in ``out``) behind ``current`` without a
    moment where a reader could see a mix: hard-link the files into a version folder, point
    ``current`` there, then replace each plain file by its link (same inode, same content)."""
    plain = [n for n in PUBLISHED if (out / n).is_file() and not (out / n).is_symlink()]
    if not plain:
        return
    if not (out / CURRENT).is_symlink():
        legacy = out / f"{VERSION_PREFIX}legacy-{os.getpid()}"
        legacy.mkdir()
        for n in plain:
            os.link(out / n, legacy / n)
        swap_symlink(out / CURRENT, legacy.name)
    for n in plain:
        swap_symlink(out / n, f"{CURRENT}/{n}")


def _collect_garbage(out: Path, keep: set[str]) -> None:
    """Delete version folders other than ``keep`` and temp files an interrupted writer left."""
    for p in out.iterdir():
        if p.is_symlink():
            continue
        if p.is_dir() and p.name.startswith(VERSION_PREFIX) and p.name not in keep:
            shutil.rmtree(assert_strict_child(out, p), ignore_errors=True)
        elif p.is_file() and p.name.startswith(".") and ".tmp-" in p.name and p.name.split(".tmp-")[0].lstrip(".") in PUBLISHED:
            p.unlink(missing_ok=True)


def publish_feature_set(out: Path, write: Callable[[Path], None], before_switch: Callable[[], Any] | None = None) -> Path:
    """Publish one versioned set of Feast sources in ``out``: ``write(folder)`` fills a new version
    folder, ``before_switch()`` (if given) runs once it is complete, then ``out/current`` is swapped
    to it in one rename. Returns the version folder.

    On any failure the new folder is removed and ``current`` (the previous set) is untouched."""
    out.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out / ".lock"):
        _adopt_legacy_files(out)
        version = out / f"{VERSION_PREFIX}{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{os.getpid()}"
        version.mkdir()
        try:
            write(version)
            missing = [n for n in PUBLISHED if not (version / n).is_file()]
            if missing:
                raise RuntimeError(f"{version}: feature set incomplete (missing {', '.join(missing)})")
            for n in PUBLISHED:  # data on disk before the pointer names it
                fd = os.open(version / n, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            if before_switch is not None:
                before_switch()
            previous = os.readlink(out / CURRENT) if (out / CURRENT).is_symlink() else None
            swap_symlink(out / CURRENT, version.name)
        except BaseException:
            shutil.rmtree(version, ignore_errors=True)
            raise
        for n in PUBLISHED:  # the fixed paths readers use (made once; they never change)
            if not (out / n).is_symlink():
                swap_symlink(out / n, f"{CURRENT}/{n}")
        _collect_garbage(out, {version.name, Path(previous).name if previous else ""})
    return version


def write_features(data: ProcessedDataset, neg_per_pos: int = 1, seed: int = 0, out_dir: Path | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   before_switch: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Build ``user_features``/``item_features``/``train_interactions`` and publish them with
    ``feature_meta.json`` as one set (:func:`publish_feature_set`); returns a summary."""
    out = Path(out_dir) if out_dir else paths.feast_data_dir()
    tables = build_tables(data, neg_per_pos, seed, progress)
    parts = (
        (USER_FEATURES, tables.user_features, USER_SCHEMA),
        (ITEM_FEATURES, tables.item_features, ITEM_SCHEMA),
        (TRAIN_INTERACTIONS, tables.train_interactions, TRAIN_SCHEMA),
    )
    files = {name: str(out / f"{name}.parquet") for name, _, _ in parts}
    all_ts = pd.concat([tables.user_features["event_timestamp"], tables.item_features["event_timestamp"]])
    summary = {
        "dataset": data.name,
        "files": files,
        "rows": {
            USER_FEATURES: int(len(tables.user_features)),
            ITEM_FEATURES: int(len(tables.item_features)),
            TRAIN_INTERACTIONS: int(len(tables.train_interactions)),
        },
        "users": int(tables.user_features["user_id"].nunique()),
        "items": int(tables.item_features["item_id"].nunique()),
        "negatives_per_positive": neg_per_pos,
        "negative_seed": seed,
        # materialize window: every feature row lies in [first, last]
        "first_feature_time": all_ts.min().isoformat(),
        "last_feature_time": all_ts.max().isoformat(),
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }

    def write(folder: Path) -> None:
        for name, df, schema in parts:
            _write_parquet(df, schema, folder / f"{name}.parquet")
        summary["version"] = folder.name
        (folder / FEATURE_META).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    publish_feature_set(out, write, before_switch)
    return summary


def read_feature_meta(out_dir: Path | None = None) -> dict[str, Any] | None:
    """The summary of the last ``write_features`` (None if features were never built)."""
    p = (Path(out_dir) if out_dir else paths.feast_data_dir()) / FEATURE_META
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None
