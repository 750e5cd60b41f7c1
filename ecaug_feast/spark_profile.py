"""The Spark profile: Feast's Spark offline store + ``spark.engine`` materialization.

``render_spark_repo`` renders the same definitions as :func:`ecaug_feast.feast_io.render_repo`
with a ``feature_store.yaml`` whose offline store is ``spark`` and whose batch engine is
``spark.engine`` (the definitions then build ``SparkSource``s: ``feature_repo/sources.py``). It has
its own registry (``<state>/feast/registry_spark.db``) and project, so it never rewrites the
default repo's registry or its Redis keys. ``historical_feature_pages`` reads a point-in-time join
page by page where the store allows it. Needs ``pip install 'pyspark>=4.0,<4.4'`` and a JDK 17.

Spark's Python workers (``spark.engine`` writes to Redis from them) run ``$PYSPARK_PYTHON``,
default ``python3`` on PATH, which must have Feast: export ``PYSPARK_PYTHON`` to the interpreter
that runs ecaug (locally) or ship an executor image with ecaug installed (on a cluster).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import pandas as pd

from ecaug_feast.errors import EcaugError

if TYPE_CHECKING:
    from feast import FeatureStore

SPARK_PROJECT = "ecaug_spark"

# Small local sessions: 2 cores, no UI, UTC, Arrow transfers, few shuffle partitions (Spark's 200
# default costs seconds of task start-up per join on a laptop-sized table).
LOCAL_CONF = {
    "spark.ui.enabled": "false",
    "spark.eventLog.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.catalogImplementation": "in-memory",
    "spark.sql.shuffle.partitions": "4",
    "spark.driver.memory": "1g",
}


def render_spark_repo(target: str | Path, state_dir: str | Path | None = None, redis_url: str | None = None,
                      master: str = "local[2]", staging_location: str | Path | None = None,
                      conf: dict[str, str] | None = None) -> Path:
    """Render the Feast repo into ``target`` with the Spark offline store and ``spark.engine``.

    ``staging_location``: where the Spark store writes retrieval results as parquet parts
    (``to_remote_storage``), which :func:`historical_feature_pages` then reads one part at a time.
    """
    import yaml

    from ecaug_feast import feast_io

    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise EcaugError("the Spark profile needs pyspark: pip install 'pyspark>=4.0,<4.4' (and a JDK 17)") from exc
    repo = feast_io.render_repo(target, state_dir=state_dir, redis_url=redis_url)
    cfg = yaml.safe_load((repo / "feature_store.yaml").read_text(encoding="utf-8"))
    spark_conf = {"spark.master": master, **LOCAL_CONF, **(conf or {})}
    reg = Path(cfg["registry"]["path"])
    cfg["project"] = SPARK_PROJECT
    cfg["registry"]["path"] = str(reg.with_name("registry_spark.db"))
    cfg["offline_store"] = {"type": "spark", "spark_conf": spark_conf,
                            **({"staging_location": str(staging_location)} if staging_location else {})}
    cfg["batch_engine"] = {"type": "spark.engine", "spark_conf": spark_conf}
    head = "# Rendered by ecaug_feast.spark_profile.render_spark_repo: Spark offline store + spark.engine.\n"
    (repo / "feature_store.yaml").write_text(head + yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return repo


def historical_feature_pages(entity_df: pd.DataFrame, features: str | Sequence[str], store: "FeatureStore",
                             full_feature_names: bool = False, rows_per_page: int = 100_000) -> Iterator[pd.DataFrame]:
    """The point-in-time join of ``entity_df`` as pages of at most ``rows_per_page`` rows.

    Spark store with a ``staging_location``: the job's result (``to_spark_df``) is written there as
    parquet parts of at most ``rows_per_page`` rows (Spark's ``maxRecordsPerFile``) and the pages
    are the parts, read one at a time: neither the driver nor this process holds the whole result.
    Any other store: one page (``to_df``). Each page is in input order, the pages in none; the
    column ``entity_row`` (the row's position in ``entity_df``) restores the order.
    """
    import glob
    import os
    import shutil
    import uuid

    import pyarrow.parquet as pq

    from ecaug_feast.feast_io import historical_job

    job = historical_job(entity_df, features, store, full_feature_names, "entity_row")
    staging = getattr(store.config.offline_store, "staging_location", None)
    if not (staging and hasattr(job, "to_spark_df")):
        yield job.to_df().sort_values("entity_row").reset_index(drop=True)
        return
    if "://" in staging:  # s3/gs/hdfs: Feast's own export (one part per Spark partition)
        parts = sorted(p for p in job.to_remote_storage() if p.endswith(".parquet"))
        out = None
    else:
        out = os.path.join(os.path.abspath(staging), f"pages-{uuid.uuid4().hex}")
        job.to_spark_df().write.option("maxRecordsPerFile", int(rows_per_page)).parquet(out)
        parts = sorted(glob.glob(os.path.join(out, "*.parquet")))
    try:
        for part in parts:
            page = pq.read_table(part).to_pandas()
            if len(page):
                yield page.sort_values("entity_row").reset_index(drop=True)
    finally:
        if out is not None:
            shutil.rmtree(out, ignore_errors=True)  # the pages were handed over; the parts go
