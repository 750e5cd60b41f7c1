"""``feast_io.source_rows`` (the one reader of a Feast file source that skips the store) against
Feast's own offline store: ``feast apply`` on a rendered repo over a small Beauty ingest, then
every source read both ways, before and after ``ecaug refresh``'s append. Same rows, keys,
timestamps and values (list features element by element), not only counts."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ecaug_feast import feast_io
from ecaug_feast import schema as S

pytestmark = pytest.mark.slow

USERS = 200
SOURCES = (feast_io.USER_VIEW, feast_io.ITEM_VIEW, feast_io.TRAIN_SOURCE)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A private state dir: Beauty's first ``USERS`` users ingested, ecaug's repo rendered (no
    Redis: offline reads only) and applied."""
    from ecaug_feast.datasets import load_dataset, subset_users
    from ecaug_feast.features.ingest import ingest_dataset
    from ecaug_feast.redis_server import NOT_RUNNING_URL

    home = tmp_path_factory.mktemp("source_rows_home")
    old = os.environ.get("ECAUG_HOME")
    os.environ["ECAUG_HOME"] = str(home)
    try:
        ingest_dataset(subset_users(load_dataset("beauty"), USERS))
        repo_dir = feast_io.render_repo(home / "feature_repo", state_dir=home, redis_url=NOT_RUNNING_URL)
        feast_io.apply(repo_dir)
        yield SimpleNamespace(home=home, store=feast_io.get_store(repo_dir))
    finally:
        if old is None:
            os.environ.pop("ECAUG_HOME", None)
        else:
            os.environ["ECAUG_HOME"] = old


def _registered(store, name: str) -> tuple[object, list[str], list[str]]:
    """(data source, join keys, feature columns) of a source as the registry holds it."""
    if name == feast_io.TRAIN_SOURCE:  # entity rows of the training service: no view of its own
        return store.get_data_source(name), [S.USER_ID, S.ITEM_ID], [S.LABEL]
    view = store.get_feature_view(name)
    return view.batch_source, [c.name for c in view.entity_columns], [f.name for f in view.features]


def _offline(store, name: str) -> tuple[pd.DataFrame, Path, list[str]]:
    """Every row of source ``name`` from the offline store's own reader (no time window)."""
    src, keys, feats = _registered(store, name)
    assert not src.field_mapping, f"{name}: the reader assumes ecaug's sources map no fields"
    job = store._get_provider().offline_store.pull_all_from_table_or_query(
        config=store.config, data_source=src, join_key_columns=keys, feature_name_columns=feats,
        timestamp_field=src.timestamp_field, created_timestamp_column=None, start_date=None, end_date=None)
    return job.to_df(), Path(src.path), keys + feats + [src.timestamp_field]


def _canonical(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """``cols`` in that order, list values as tuples (comparable), rows sorted by every column."""
    out = df[cols].copy()
    for c in cols:
        if out[c].dtype == object:
            out[c] = [None if v is None else tuple(np.asarray(v).tolist()) for v in out[c]]
    return out.sort_values(cols, kind="stable").reset_index(drop=True)


def _assert_parity(store, name: str) -> pd.DataFrame:
    offline, path, cols = _offline(store, name)
    ours = feast_io.source_rows(path, cols)
    assert list(ours.columns) == cols
    assert len(ours) == len(offline) > 0
    pd.testing.assert_frame_equal(_canonical(ours, cols), _canonical(offline, cols), check_dtype=True, check_exact=True)
    return ours


def _new_events(store, users: int = 5) -> pd.DataFrame:
    """Positive events after the store's last one, for users it knows, of items it knows."""
    ti = feast_io.source_rows(feast_io.source_file(Path(os.environ["ECAUG_HOME"]) / "feast", feast_io.TRAIN_SOURCE))
    last = ti[S.EVENT_TIMESTAMP].max()
    uids = np.sort(ti[S.USER_ID].unique())[:users]
    items = np.sort(ti[S.ITEM_ID].unique())[:users]
    return pd.DataFrame({S.USER_ID: uids.astype(np.int64), S.ITEM_ID: items.astype(np.int64),
                         S.EVENT_TIMESTAMP: [last + pd.Timedelta(hours=1 + k) for k in range(users)]})


def test_reader_returns_the_offline_stores_rows_before_and_after_an_append(repo):
    from ecaug_feast.features.append import APPENDED_LOG, append_events
    from ecaug_feast.features.build import CURRENT

    before = {name: _assert_parity(repo.store, name) for name in SOURCES}

    new = _new_events(repo.store)
    summary = append_events(new, feast_dir=repo.home / "feast", source="test")
    assert summary["events"] == len(new)
    after = {name: _assert_parity(repo.store, name) for name in SOURCES}
    assert len(after[feast_io.TRAIN_SOURCE]) > len(before[feast_io.TRAIN_SOURCE])
    assert len(after[feast_io.USER_VIEW]) > len(before[feast_io.USER_VIEW])

    # the appended-events log is a record, not a source to merge: every event it holds is a
    # label-1 row of train_interactions, as the offline store reads it (and so the reader)
    logged = pd.read_parquet(repo.home / "feast" / CURRENT / APPENDED_LOG)
    assert len(logged) == len(new)
    key = [S.USER_ID, S.ITEM_ID, S.EVENT_TIMESTAMP]
    pos = after[feast_io.TRAIN_SOURCE]
    pos = pos[pos[S.LABEL] == 1]
    logged = logged.assign(**{S.EVENT_TIMESTAMP: pd.to_datetime(logged[S.EVENT_TIMESTAMP], utc=True)})
    found = logged[key].merge(pos[key].assign(found=True), on=key, how="left")
    assert found["found"].notna().all(), found[found["found"].isna()]


def test_item_catalog_is_the_latest_row_of_each_item_as_the_offline_store_reads_it(repo):
    offline, _, _ = _offline(repo.store, feast_io.ITEM_VIEW)
    latest = offline.sort_values([S.ITEM_ID, S.EVENT_TIMESTAMP], kind="stable").groupby(S.ITEM_ID).tail(1)
    cat, path = feast_io.item_catalog(repo.store)
    assert path == Path(repo.store.get_feature_view(feast_io.ITEM_VIEW).batch_source.path)
    assert cat[S.ITEM_ID].tolist() == sorted(latest[S.ITEM_ID].tolist())
    want = {int(i): [int(a) for a in attrs] for i, attrs in zip(latest[S.ITEM_ID], latest[S.ATTRIBUTES])}
    assert {int(i): a for i, a in zip(cat[S.ITEM_ID], cat[S.ATTRIBUTES])} == want
