"""Field lists shared by the real and synthetic views, so ``user_features_synth`` can never drift
from ``user_features`` (the recommender reads both with the same code). The fields themselves are
declared once, in :mod:`ecaug_feast.schema`."""

from datetime import timedelta

from ecaug_feast import schema

# A value stays valid until the entity's next row (features change only when the user acts), so
# the TTL is "never" in practice. Not ttl=0: the stock `feast materialize-incremental` then starts
# one year back on a fresh registry and would miss the 2014/2016 data; 100 years reaches it.
NO_EXPIRY = timedelta(days=36500)

USER_FEATURE_FIELDS = schema.feast_fields(schema.USER_FEATURES)
ITEM_FEATURE_FIELDS = schema.feast_fields(schema.ITEM_FEATURES)
LINEAGE_FIELDS = schema.feast_fields(schema.LINEAGE_FEATURES)
ITEM_SYNTH_FIELDS = schema.feast_fields(schema.ITEM_SYNTH_FEATURES)
