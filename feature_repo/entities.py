"""Entities shared by every feature view (real and synthetic)."""

from feast import Entity, ValueType

# Real users are 1..U; synthetic users live at ids >= 2**40 (ecaug_feast.ids), so one entity
# serves both key spaces without collisions in Redis.
user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64, description="A shopper (real or synthetic).")
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64, description="A catalogue item.")
