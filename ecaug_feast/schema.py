"""The feature schema, declared once.

Every feature column of the Feast views ``user_features`` / ``item_features`` (and the synthetic
twin ``user_features_synth``, the item side's ``item_features_synth``) is declared here a single
time: name, Arrow type, description, role (user / item / interaction / lineage / item_synth) and
whether it is a list. Everything else is derived:

- the Feast ``Field`` lists of ``feature_repo/`` (:func:`feast_fields`; Feast types are mapped from
  the Arrow types, imported only when asked for, so importing this module stays cheap),
- the Arrow schemas of the parquet sources (:data:`USER_SCHEMA`, :data:`ITEM_SCHEMA`,
  :data:`TRAIN_SCHEMA`, and the synthetic run files :data:`USER_SYNTH_SCHEMA`,
  :data:`INTERACTIONS_SYNTH_SCHEMA`, :data:`ITEM_SYNTH_SCHEMA`),
- the column lists the libraries read (:data:`USER_FEATURE_COLUMNS`, :data:`USER_SCALAR_COLUMNS`,
  :data:`ITEM_FEATURE_COLUMNS`, :data:`LINEAGE_COLUMNS`, ...).

Code elsewhere names a feature through the constants below (``schema.RECENT_ITEMS``), never as a
string literal: ``tests/test_schema_single_source.py`` checks that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import pyarrow as pa

USER, ITEM, INTERACTION, LINEAGE = "user", "item", "interaction", "lineage"

# Keys and the event time of every source (entity join keys, not features).
USER_ID = "user_id"
ITEM_ID = "item_id"
EVENT_TIMESTAMP = "event_timestamp"
LABEL = "label"

# Feature names (the Feast feature names and the parquet column names).
N_INTERACTIONS = "n_interactions"
DAYS_SINCE_LAST = "days_since_last"
RECENT_ITEMS = "recent_items"
TOP_ATTRIBUTES = "top_attributes"
ATTR_DIVERSITY = "attr_diversity"
MEAN_ITEM_POPULARITY = "mean_item_popularity"
ATTRIBUTES = "attributes"
POPULARITY = "popularity"
N_ATTRIBUTES = "n_attributes"

# Synthetic runs: lineage of each row and the labeler's output.
IS_SYNTHETIC = "is_synthetic"
RUN_ID = "run_id"
GENERATOR_VERSION = "generator_version"
CONFIDENCE = "confidence"
LABELER = "labeler"

# The item side's synthetic view (item_features_synth, issue 34): a generated vector per item.
ITEM_VECTOR = "item_vector"
MODEL_VERSION = "model_version"
ITEM_SYNTH = "item_synth"  # role of its own columns

TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
_IDS = pa.list_(pa.int64())


@dataclass(frozen=True)
class Feature:
    """One column, declared once."""

    name: str
    arrow: pa.DataType
    description: str
    role: str  # USER | ITEM | INTERACTION | LINEAGE
    heavy_tailed: bool = False  # a count: models read it through log1p

    @property
    def is_list(self) -> bool:
        return pa.types.is_list(self.arrow)

    @property
    def is_float(self) -> bool:
        return pa.types.is_floating(self.arrow)

    @property
    def feast_dtype(self) -> Any:
        """The Feast type (``feast.types``), imported on first use."""
        return feast_type(self.arrow)


USER_FEATURES: tuple[Feature, ...] = (
    Feature(N_INTERACTIONS, pa.int64(), "training events before t", USER, heavy_tailed=True),
    Feature(DAYS_SINCE_LAST, pa.float32(), "days since the previous event; -1 if none", USER, heavy_tailed=True),
    Feature(RECENT_ITEMS, _IDS, "earlier items, most recent first, <= 50 (the ordered history the sequence model reads)", USER),
    Feature(TOP_ATTRIBUTES, _IDS, "<= 5 attribute ids by count", USER),
    Feature(ATTR_DIVERSITY, pa.float32(), "entropy (nats) of attribute counts", USER),
    Feature(MEAN_ITEM_POPULARITY, pa.float32(), "mean popularity of consumed items when consumed", USER, heavy_tailed=True),
)
ITEM_FEATURES: tuple[Feature, ...] = (
    Feature(ATTRIBUTES, _IDS, "brand/category attribute ids", ITEM),
    Feature(POPULARITY, pa.float32(), "training events of the item before t", ITEM, heavy_tailed=True),
    Feature(N_ATTRIBUTES, pa.int64(), "number of attribute ids", ITEM),
)
LINEAGE_FEATURES: tuple[Feature, ...] = (
    Feature(IS_SYNTHETIC, pa.bool_(), "always true in a synthetic run", LINEAGE),
    Feature(RUN_ID, pa.string(), "the synthetic run that wrote the row", LINEAGE),
    Feature(GENERATOR_VERSION, pa.string(), "generator that produced the row", LINEAGE),
)
INTERACTION_SYNTH_FEATURES: tuple[Feature, ...] = (
    Feature(LABEL, pa.int64(), "1 = positive, 0 = negative", INTERACTION),
    Feature(CONFIDENCE, pa.float32(), "the labeler's confidence in the label", INTERACTION),
    Feature(LABELER, pa.string(), "name/version of the labeler", INTERACTION),
)
# item_features_synth: the vector a generator made from the item's attributes, in the space of
# one checkpoint (model_version: serving uses a row only with that checkpoint), + the attributes
# it was made from; lineage columns as the user twins.
ITEM_SYNTH_FEATURES: tuple[Feature, ...] = (
    Feature(ITEM_VECTOR, pa.list_(pa.float32()), "generated item vector in the recommender's item space", ITEM_SYNTH),
    Feature(MODEL_VERSION, pa.string(), "checkpoint whose item space the vector lies in (<name>@<weights hash>)", ITEM_SYNTH),
    Feature(ATTRIBUTES, _IDS, "the attribute ids the vector was generated from", ITEM_SYNTH),
)
FEATURES: tuple[Feature, ...] = USER_FEATURES + ITEM_FEATURES
BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES + LINEAGE_FEATURES + INTERACTION_SYNTH_FEATURES
                               + ITEM_SYNTH_FEATURES[:2]}


def names(features: Iterable[Feature]) -> list[str]:
    return [f.name for f in features]


# ----------------------------------------------------------------------------- column lists
USER_FEATURE_COLUMNS: list[str] = names(USER_FEATURES)
USER_SCALAR_COLUMNS: list[str] = names(f for f in USER_FEATURES if not f.is_list)
USER_LIST_COLUMNS: list[str] = names(f for f in USER_FEATURES if f.is_list)
USER_FLOAT_COLUMNS: list[str] = names(f for f in USER_FEATURES if f.is_float)
ITEM_FEATURE_COLUMNS: list[str] = names(ITEM_FEATURES)
ITEM_SCALAR_COLUMNS: list[str] = names(f for f in ITEM_FEATURES if not f.is_list)
ITEM_LIST_COLUMNS: list[str] = names(f for f in ITEM_FEATURES if f.is_list)
LIST_COLUMNS: list[str] = USER_LIST_COLUMNS + ITEM_LIST_COLUMNS
HEAVY_TAILED_COLUMNS: frozenset[str] = frozenset(f.name for f in FEATURES if f.heavy_tailed)
LINEAGE_COLUMNS: list[str] = names(LINEAGE_FEATURES)
ITEM_SYNTH_COLUMNS: list[str] = names(ITEM_SYNTH_FEATURES) + LINEAGE_COLUMNS


def refs(view: str, columns: Iterable[str]) -> list[str]:
    """Feast feature references ``view:column``."""
    return [f"{view}:{c}" for c in columns]


# ----------------------------------------------------------------------------- Arrow schemas
def arrow_schema(keys: Iterable[tuple[str, pa.DataType]], features: Iterable[Feature]) -> pa.Schema:
    return pa.schema([*keys, *((f.name, f.arrow) for f in features)])


USER_SCHEMA = arrow_schema([(USER_ID, pa.int64()), (EVENT_TIMESTAMP, TIMESTAMP_TYPE)], USER_FEATURES)
ITEM_SCHEMA = arrow_schema([(ITEM_ID, pa.int64()), (EVENT_TIMESTAMP, TIMESTAMP_TYPE)], ITEM_FEATURES)
TRAIN_SCHEMA = pa.schema([(USER_ID, pa.int64()), (ITEM_ID, pa.int64()), (EVENT_TIMESTAMP, TIMESTAMP_TYPE), (LABEL, pa.int64())])
USER_SYNTH_SCHEMA = arrow_schema([(USER_ID, pa.int64()), (EVENT_TIMESTAMP, TIMESTAMP_TYPE)], USER_FEATURES + LINEAGE_FEATURES)
INTERACTIONS_SYNTH_SCHEMA = arrow_schema(
    [(USER_ID, pa.int64()), (ITEM_ID, pa.int64()), (EVENT_TIMESTAMP, TIMESTAMP_TYPE)],
    INTERACTION_SYNTH_FEATURES + LINEAGE_FEATURES,
)
ITEM_SYNTH_SCHEMA = arrow_schema([(ITEM_ID, pa.int64()), (EVENT_TIMESTAMP, TIMESTAMP_TYPE)], ITEM_SYNTH_FEATURES + LINEAGE_FEATURES)


# ----------------------------------------------------------------------------- Feast
def feast_type(arrow: pa.DataType) -> Any:
    """Arrow type -> ``feast.types`` type (the few types the views use)."""
    from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String

    scalar = {pa.int64(): Int64, pa.int32(): Int32, pa.float32(): Float32, pa.float64(): Float64,
              pa.bool_(): Bool, pa.string(): String}
    if pa.types.is_list(arrow) and arrow.value_type in scalar:
        return Array(scalar[arrow.value_type])
    if arrow in scalar:
        return scalar[arrow]
    raise TypeError(f"no Feast type for Arrow type {arrow}")


def feast_fields(features: Iterable[Feature]) -> list[Any]:
    """Feast ``Field`` objects of ``features``, in order."""
    from feast import Field

    return [Field(name=f.name, dtype=f.feast_dtype, description=f.description) for f in features]
