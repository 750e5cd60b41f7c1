"""Entities shared by every feature view (real and synthetic)."""

import os
from pathlib import Path

from feast import Entity, ValueType

from ecaug_feast.paths import repo_state_dir

# Every view reads its parquet sources from $ECAUG_HOME (ecaug_feast.paths). Feast runs these files
# with the repo as working directory, so the cwd default (./.ecaug) would point inside the repo:
# when ECAUG_HOME is unset, the state dir is the one this repo's registry lives in.
os.environ.setdefault("ECAUG_HOME", str(repo_state_dir(Path(__file__).resolve().parent)))

# Real users are 1..U; synthetic users live at ids >= 2**40 (ecaug_feast.ids), so one entity
# serves both key spaces without collisions in Redis.
user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64, description="A shopper (real or synthetic).")
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64, description="A catalogue item.")
