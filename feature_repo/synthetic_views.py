"""Synthetic feature views: the active synthetic run under ``$ECAUG_HOME/runs/active/``.

Same entity (``user``) as the real views; synthetic users have ids >= 2**40
(``ecaug_feast.ids.SYNTHETIC_USER_ID_BASE``), so Redis keys (entity key + project) never collide
with real users and materializing these views never rewrites a real user's hash.
``ecaug augment`` writes a run, points ``runs/active`` at it (only if its quality gate passed) and
materializes these two views; ``ecaug runs rollback`` re-points the link.

Labels live in ``interactions_synth`` (a plain feature view with ``label``, ``confidence`` and
``labeler`` fields) rather than a Feast ``LabelView``: a LabelView is fed by ``push()`` and cannot
be materialized from a batch source, while runs are immutable parquet snapshots that must be
materialized, rolled back and joined point-in-time for training like any other view.
"""

from entities import user
from feast import FeatureView, Field
from feast.types import Bool, Float32, Int64, String

from schemas import NO_EXPIRY, USER_FEATURE_FIELDS
from sources import parquet_source

from ecaug_feast.synth_store import INTER_FILE, USER_FILE, active_source, ensure_sources

ensure_sources()  # an empty placeholder run until the first gated run, so `feast apply` validates

_LINEAGE = [
    Field(name="is_synthetic", dtype=Bool),
    Field(name="run_id", dtype=String),
    Field(name="generator_version", dtype=String),
]

user_features_synth_source = parquet_source(
    name="user_features_synth_source",
    path=str(active_source(USER_FILE)),
    description="User-side features of synthetic training examples (active run).",
)
interactions_synth_source = parquet_source(
    name="interactions_synth_source",
    path=str(active_source(INTER_FILE)),
    # exposed as synth_item_id: a feature named item_id would clash with the item entity's join
    # key when a training entity_df carries item_id (the parquet column stays item_id).
    field_mapping={"item_id": "synth_item_id"},
    description="Synthetic interactions: synthetic user, real item, label from the labeler (active run).",
)

user_features_synth = FeatureView(
    name="user_features_synth",
    entities=[user],
    ttl=NO_EXPIRY,
    schema=[
        *USER_FEATURE_FIELDS,
        *_LINEAGE,
    ],
    source=user_features_synth_source,
    online=True,
    tags={"owner": "synth", "kind": "synthetic"},
)

interactions_synth = FeatureView(
    name="interactions_synth",
    entities=[user],
    ttl=NO_EXPIRY,
    schema=[
        Field(name="synth_item_id", dtype=Int64),
        Field(name="label", dtype=Int64),
        Field(name="confidence", dtype=Float32),
        Field(name="labeler", dtype=String),
        *_LINEAGE,
    ],
    source=interactions_synth_source,
    online=True,
    tags={"owner": "synth", "kind": "synthetic"},
)
