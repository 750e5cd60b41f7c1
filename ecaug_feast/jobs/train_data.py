"""Training data for the recommender, composed from the data layer: the job-side half of
``recommender.data`` (which reads Feast and never the feature builders, layer rule 3).

- :func:`load_real_from_feast` / :func:`train_data_from_store`: the examples and serving rows read
  through Feast (what ``ecaug train`` uses); the test-time rows (training + validation events as
  history) are built here with the feature builder, since Feast holds the training split only;
- :func:`build_in_memory`: the same tables from the feature builders + the as-of join in pandas,
  for ``--source memory`` (a parity test holds it equal to the Feast path).

Validation and test rows never enter the examples: everything starts from the *train* split.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ecaug_feast import feast_io, paths
from ecaug_feast import schema as S
from ecaug_feast.datasets.store import load_processed
from ecaug_feast.errors import EcaugError
from ecaug_feast.features.build import ITEM_BASE_OFFSET, build_item_features, build_user_features, item_attributes
from ecaug_feast.schema import ITEM_FEATURE_COLUMNS, USER_FEATURE_COLUMNS
from recommender.data import (
    EXAMPLE_COLUMNS,
    TrainData,
    asof_join,
    examples_from_feast,
    latest_item_rows,
    normalise_lists,
    timestamps_like,
)


def serving_rows(history: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """One ``user_features`` row per user, computed from all of ``history`` (the serving row)."""
    attributes = item_attributes(items)
    h = history.sort_values(["user_id", "event_timestamp"], kind="stable").reset_index(drop=True)
    uf = build_user_features(h, attributes)
    return uf.groupby("user_id", sort=True).tail(1).reset_index(drop=True)


def build_in_memory(train: pd.DataFrame, items: pd.DataFrame, valid: pd.DataFrame | None = None) -> TrainData:
    """Features exactly as ``ecaug_feast.features.build`` writes them for Feast, joined as of each
    training event, plus serving rows (after each user's last training event). With ``valid``,
    also the test-time rows (training + validation events as history)."""
    if len(train) == 0:
        raise EcaugError("no training interactions")
    train = train.sort_values(["user_id", "event_timestamp"], kind="stable").reset_index(drop=True)
    attributes = item_attributes(items)
    uf = build_user_features(train, attributes)
    itf = build_item_features(train, items, train["event_timestamp"].min() - ITEM_BASE_OFFSET)
    ent = train[["user_id", "item_id", "event_timestamp"]]
    ex = pd.concat(
        [
            ent.reset_index(drop=True),
            asof_join(ent, uf, "user_id", USER_FEATURE_COLUMNS),
            asof_join(ent, itf, "item_id", ITEM_FEATURE_COLUMNS),
        ],
        axis=1,
    )
    ex["is_synthetic"] = False
    user_serving = uf.sort_values(["user_id", "event_timestamp"], kind="stable").groupby("user_id", sort=True).tail(1).reset_index(drop=True)
    item_serving = latest_item_rows(itf, items)
    cols = ["user_id", "item_id", "event_timestamp"]
    user_test = serving_rows(pd.concat([train[cols], valid[cols]], ignore_index=True), items) if valid is not None else None
    return TrainData(
        ex[EXAMPLE_COLUMNS], user_serving, user_test, item_serving, items[["item_id", S.ATTRIBUTES]], train,
        {"source": "memory", "item_features": itf},
    )


def load_real_from_feast(dataset: str, store: Any = None, examples: bool = True) -> TrainData:
    """Real training data of an ingested dataset, features read through Feast (offline store).
    ``examples=False`` skips the point-in-time join of every training event (``TrainData.examples``
    left empty): the sequence model reads only the per-user rows."""
    data = load_processed(dataset)
    ti_path = feast_io.source_file(paths.feast_data_dir(), feast_io.TRAIN_SOURCE)
    if not ti_path.exists():
        raise EcaugError(f"{ti_path}: Feast sources not built; run `ecaug ingest` and `ecaug apply` first")
    ti = feast_io.source_rows(ti_path)
    item_rows = feast_io.source_rows(feast_io.source_file(paths.feast_data_dir(), feast_io.ITEM_VIEW))
    return train_data_from_store(store, ti[ti["label"] == 1], data.train, data.valid, data.items, item_rows,
                                 {"source": "feast", "dataset": dataset}, examples=examples)


def train_data_from_store(store: Any, positives: pd.DataFrame, train: pd.DataFrame, valid: pd.DataFrame | None,
                          items: pd.DataFrame, item_rows: pd.DataFrame, info: dict[str, Any], examples: bool = True) -> TrainData:
    """TrainData read through a Feast store: the examples by ``get_historical_features`` over the
    ``training`` service for ``positives`` (the label-1 ``train_interactions`` rows; skipped, left
    empty, with ``examples=False``), the serving rows as of each user's last training event + 1 ms;
    ``item_rows`` is the ``item_features`` source (latest row per item for serving, all rows for
    as-of joins of synthetic rows). The test-time rows (training + validation events as history)
    are built in memory: Feast holds features of the training split only. Types as
    :func:`build_in_memory` gives them."""
    train = train.sort_values(["user_id", "event_timestamp"], kind="stable").reset_index(drop=True)
    if examples:
        ex = examples_from_feast(positives, store=store)
        ex["event_timestamp"] = timestamps_like(ex["event_timestamp"], train["event_timestamp"].dtype)
    else:
        ex = pd.DataFrame({c: [] for c in EXAMPLE_COLUMNS})
    items = items[["item_id", S.ATTRIBUTES]]
    # serving rows: the latest feature rows, as validation/test/serving queries see them
    last_t = train.groupby("user_id")["event_timestamp"].max().reset_index()
    last_t["event_timestamp"] = last_t["event_timestamp"] + pd.Timedelta(milliseconds=1)
    us = feast_io.historical_features(last_t, features=S.refs(feast_io.USER_VIEW, USER_FEATURE_COLUMNS), store=store)
    us = normalise_lists(us)[["user_id", "event_timestamp", *USER_FEATURE_COLUMNS]]
    us["event_timestamp"] = timestamps_like(us["event_timestamp"], last_t["event_timestamp"].dtype)
    cols = ["user_id", "item_id", "event_timestamp"]
    ut = serving_rows(pd.concat([train[cols], valid[cols]], ignore_index=True), items) if valid is not None else None
    itf = normalise_lists(item_rows.copy())
    return TrainData(ex, us, ut, latest_item_rows(itf, items), items, train, {**info, "item_features": itf})
