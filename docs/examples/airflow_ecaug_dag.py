"""Airflow DAG: the Feast habit (materialize-incremental on a schedule) plus ecaug's drift watch.

Copy into your Airflow ``dags/`` folder on workers where ecaug is installed and ``ECAUG_HOME``
points at the shared state volume. Daily: new events dropped into ``$ECAUG_HOME/inbox/`` by the
shop's export are appended (incrementally) and materialized; the drift check runs; when a
threshold is crossed, ``ecaug refresh`` re-expands (warm start, gate, quick study, activation only
if both pass). ``ecaug drift`` exits 3 on drift, so the branch reads its exit code.

Not tested against a live Airflow here (apache-airflow pulls apache-airflow-core and the task SDK,
far heavier than the rest of ecaug's install); ``tests/drift/test_scheduling.py`` parses this file.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.providers.standard.operators.bash import BashOperator

ENV = {"ECAUG_HOME": "/data/ecaug", "ECAUG_REDIS_URL": "redis://redis:6379/0"}

with DAG(
    dag_id="ecaug_drift_refresh",
    schedule="0 3 * * *",  # daily at 03:00, after the shop's nightly export
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=10)},
    tags=["ecaug", "feast"],
) as dag:
    # exit 0 = no drift, 3 = drift: both are results, not failures, so the refresh decides itself
    drift = BashOperator(
        task_id="drift_check",
        bash_command="ecaug drift --json; rc=$?; [ $rc -eq 0 ] || [ $rc -eq 3 ]",
        env=ENV,
        append_env=True,
    )
    # appends the inbox's events, re-checks drift, refits only when a threshold is crossed
    refresh = BashOperator(
        task_id="refresh",
        bash_command="ecaug refresh --events $ECAUG_HOME/inbox --json",
        env=ENV,
        append_env=True,
        execution_timeout=timedelta(hours=2),
    )
    drift >> refresh
