"""Field lists shared by the real and synthetic views, so ``user_features_synth`` can never drift
from ``user_features`` (the recommender reads both with the same code)."""

from datetime import timedelta

from feast import Field
from feast.types import Array, Float32, Int64

# A value stays valid until the entity's next row (features change only when the user acts), so
# the TTL is "never" in practice. Not ttl=0: the stock `feast materialize-incremental` then starts
# one year back on a fresh registry and would miss the 2014/2016 data; 100 years reaches it.
NO_EXPIRY = timedelta(days=36500)

USER_FEATURE_FIELDS = [
    Field(name="n_interactions", dtype=Int64, description="training events before t"),
    Field(name="days_since_last", dtype=Float32, description="days since the previous event; -1 if none"),
    Field(name="recent_items", dtype=Array(Int64), description="earlier items, most recent first, <= 50 (the ordered history the sequence model reads)"),
    Field(name="top_attributes", dtype=Array(Int64), description="<= 5 attribute ids by count"),
    Field(name="attr_diversity", dtype=Float32, description="entropy (nats) of attribute counts"),
    Field(name="mean_item_popularity", dtype=Float32, description="mean popularity of consumed items when consumed"),
]
