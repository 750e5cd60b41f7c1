"""Batch sources for the feature views, chosen by this repo's ``feature_store.yaml``.

The default profile (duckdb offline store) reads ``FileSource``; Feast's Spark offline store and
``spark.engine`` accept only ``SparkSource``. The views are the same under both: only the source
class changes, so ``parquet_source`` looks at the offline store type of the yaml next to this file
(rendered by ``ecaug_feast.feast_io.render_repo`` or ``ecaug_feast.spark_profile.render_spark_repo``).
"""

from pathlib import Path
from typing import Dict, Optional

import yaml


def offline_store_type(repo_dir: Path = Path(__file__).resolve().parent) -> str:
    """``offline_store.type`` of the repo's feature_store.yaml (``duckdb`` when absent)."""
    f = repo_dir / "feature_store.yaml"
    cfg = (yaml.safe_load(f.read_text(encoding="utf-8")) if f.exists() else None) or {}
    store = cfg.get("offline_store") or {}
    return str(store.get("type", "duckdb") if isinstance(store, dict) else store)


def parquet_source(name: str, path: str, description: str, field_mapping: Optional[Dict[str, str]] = None):
    """A parquet source with an ``event_timestamp`` column: SparkSource under the Spark store,
    else FileSource (pyspark is imported only in the first case)."""
    if offline_store_type() == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

        return SparkSource(name=name, path=path, file_format="parquet", timestamp_field="event_timestamp",
                           field_mapping=field_mapping, description=description)
    from feast import FileSource

    return FileSource(name=name, path=path, timestamp_field="event_timestamp", field_mapping=field_mapping,
                      description=description)
