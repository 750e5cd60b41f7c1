"""Feature views over the real data: parquet sources written by ``ecaug ingest`` under ``$ECAUG_HOME/feast``.

Point-in-time semantics (see ecaug_feast/features/build.py): a ``user_features`` row at time t
holds values computed from that user's *training* events strictly before t, plus one serving row
after the last training event; ``item_features`` rows are exact at every time.
"""

from datetime import timedelta

from entities import item, user
from feast import FeatureView, Field, FileSource
from feast.types import Array, Float32, Int64

from ecaug_feast.paths import feast_data_dir

_DATA = feast_data_dir()

user_features_source = FileSource(
    name="user_features_source",
    path=str(_DATA / "user_features.parquet"),
    timestamp_field="event_timestamp",
    description="Point-in-time user behaviour features from the training split.",
)
item_features_source = FileSource(
    name="item_features_source",
    path=str(_DATA / "item_features.parquet"),
    timestamp_field="event_timestamp",
    description="Item attributes and popularity as of time.",
)
train_interactions_source = FileSource(
    name="train_interactions",
    path=str(_DATA / "train_interactions.parquet"),
    timestamp_field="event_timestamp",
    description="Entity rows for training: observed events (label 1) and sampled negatives (label 0).",
)

# A value stays valid until the entity's next row (features change only when the user acts), so
# the TTL is "never" in practice. Not ttl=0: the stock `feast materialize-incremental` then starts
# one year back on a fresh registry and would miss the 2014/2016 data; 100 years reaches it.
NO_EXPIRY = timedelta(days=36500)

user_features = FeatureView(
    name="user_features",
    entities=[user],
    ttl=NO_EXPIRY,
    schema=[
        Field(name="n_interactions", dtype=Int64, description="training events before t"),
        Field(name="days_since_last", dtype=Float32, description="days since the previous event; -1 if none"),
        Field(name="recent_items", dtype=Array(Int64), description="earlier items, most recent first, <= 20"),
        Field(name="top_attributes", dtype=Array(Int64), description="<= 5 attribute ids by count"),
        Field(name="attr_diversity", dtype=Float32, description="entropy (nats) of attribute counts"),
        Field(name="mean_item_popularity", dtype=Float32, description="mean popularity of consumed items when consumed"),
    ],
    source=user_features_source,
    online=True,
    tags={"owner": "data", "kind": "real"},
)

item_features = FeatureView(
    name="item_features",
    entities=[item],
    ttl=NO_EXPIRY,
    schema=[
        Field(name="attributes", dtype=Array(Int64), description="brand/category attribute ids"),
        Field(name="popularity", dtype=Float32, description="training events of the item before t"),
        Field(name="n_attributes", dtype=Int64, description="number of attribute ids"),
    ],
    source=item_features_source,
    online=True,
    tags={"owner": "data", "kind": "real"},
)
