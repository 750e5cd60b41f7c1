"""Synthetic feature views: the active synthetic run under ``$ECAUG_HOME/runs/active/``.

The example use of the plugin (docs/guide/plugin.md): ``user_features_synth`` is the synthetic twin of
``user_features``, declared with the one ``synthetic_twins`` call a shop puts in its own repo.
Same entity (``user``) as the real views; synthetic users have ids >= 2**40
(``ecaug_feast.ids.SYNTHETIC_USER_ID_BASE``), so Redis keys (entity key + project) never collide
with real users and materializing these views never rewrites a real user's hash.
``ecaug augment`` writes a run, points ``runs/active`` at it (only if its quality gate passed) and
materializes these two views; ``ecaug runs rollback`` re-points the link.

Importing this file writes nothing: the empty placeholder run that lets Feast read the sources
before the first run is written by ``ecaug apply`` / ``ecaug augment``
(``ecaug_feast.plugin.ensure_placeholders``).

Labels live in ``interactions_synth`` (a plain feature view with ``label``, ``confidence`` and
``labeler`` fields) rather than a Feast ``LabelView``: a LabelView is fed by ``push()`` and cannot
be materialized from a batch source, while runs are immutable parquet snapshots that must be
materialized, rolled back and joined point-in-time for training like any other view.

``item_features_synth`` (issue 34): per item, the vector an item generator made from its
attributes, for items the recommender never trained on (cold or new); its runs live in their own
folder (``$ECAUG_HOME/item_runs/``, :mod:`ecaug_feast.item_runs`) with their own ``active`` link,
so item runs and user runs are switched and rolled back independently. Keys are real item ids:
publishing or rolling back an item run removes only this view's fields from an item's hash.
"""

from entities import item, user
from feast import FeatureView, Field
from feast.types import Float32, Int64, String
from real_views import item_features, user_features
from schemas import ITEM_SYNTH_FIELDS, NO_EXPIRY

from ecaug_feast.paths import item_runs_dir, runs_dir
from ecaug_feast.plugin import LINEAGE_FIELDS, SynthTwinConfig, run_source, synthetic_twins

_RUNS = runs_dir()

user_features_synth, = synthetic_twins([user_features], entities=[user], config=SynthTwinConfig(runs_dir=str(_RUNS)))

interactions_synth_source = run_source(
    "interactions_synth_source", "interactions_synth.parquet", _RUNS,
    # exposed as synth_item_id: a feature named item_id would clash with the item entity's join
    # key when a training entity_df carries item_id (the parquet column stays item_id).
    field_mapping={"item_id": "synth_item_id"},
    description="Synthetic interactions: synthetic user, real item, label from the labeler (active run).",
    like=user_features.batch_source,  # a SparkSource under the Spark profile
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
        *LINEAGE_FIELDS,
    ],
    source=interactions_synth_source,
    online=True,
    tags={"owner": "synth", "kind": "synthetic"},
)

item_features_synth_source = run_source(
    "item_features_synth_source", "item_features_synth.parquet", item_runs_dir(),
    description="Generated item vectors of cold and new items (active item run).",
    like=item_features.batch_source,
)

item_features_synth = FeatureView(
    name="item_features_synth",
    entities=[item],
    ttl=NO_EXPIRY,
    schema=[*ITEM_SYNTH_FIELDS, *LINEAGE_FIELDS],
    source=item_features_synth_source,
    online=True,
    tags={"owner": "synth", "kind": "synthetic", "side": "item"},
)
