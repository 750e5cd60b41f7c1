"""Feature views over the real data: parquet sources written by ``ecaug ingest`` under ``$ECAUG_HOME/feast``.

Point-in-time semantics (see ecaug_feast/features/build.py): a ``user_features`` row at time t
holds values computed from that user's *training* events strictly before t, plus one serving row
after the last training event; ``item_features`` rows are exact at every time.
"""

from entities import item, user
from feast import FeatureView

from schemas import ITEM_FEATURE_FIELDS, NO_EXPIRY, USER_FEATURE_FIELDS
from sources import parquet_source

from ecaug_feast.paths import feast_data_dir

_DATA = feast_data_dir()

user_features_source = parquet_source(
    name="user_features_source",
    path=str(_DATA / "user_features.parquet"),
    description="Point-in-time user behaviour features from the training split.",
)
item_features_source = parquet_source(
    name="item_features_source",
    path=str(_DATA / "item_features.parquet"),
    description="Item attributes and popularity as of time.",
)
train_interactions_source = parquet_source(
    name="train_interactions",
    path=str(_DATA / "train_interactions.parquet"),
    description="Entity rows for training: observed events (label 1) and sampled negatives (label 0).",
)


user_features = FeatureView(
    name="user_features",
    entities=[user],
    ttl=NO_EXPIRY,
    schema=[
        *USER_FEATURE_FIELDS,
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
        *ITEM_FEATURE_FIELDS,
    ],
    source=item_features_source,
    online=True,
    tags={"owner": "data", "kind": "real"},
)
