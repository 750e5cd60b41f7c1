"""Scheduling files: the Airflow DAG parses and runs real ecaug commands; the compose refresh service."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_airflow_dag_parses_and_calls_existing_commands():
    """apache-airflow is not installed (too heavy, see docs/guide/scheduling.md): parse, don't import."""
    src = (ROOT / "docs" / "examples" / "airflow_ecaug_dag.py").read_text()
    tree = ast.parse(src)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    dag = [c for c in calls if getattr(c.func, "id", None) == "DAG"]
    assert dag and any(k.arg == "schedule" for k in dag[0].keywords)
    cmds = [k.value.value for c in calls if getattr(c.func, "id", None) == "BashOperator"
            for k in c.keywords if k.arg == "bash_command"]
    assert any(c.startswith("ecaug drift") for c in cmds) and any(c.startswith("ecaug refresh") for c in cmds)
    from ecaug_feast.cli.main import app

    names = {c.name for c in app.registered_commands}
    assert {"drift", "refresh"} <= names


def test_compose_refresh_service():
    spec = yaml.safe_load((ROOT / "docker" / "docker-compose.yml").read_text())
    svc = spec["services"]["refresh"]
    assert svc["command"][0] == "refresh" and svc["profiles"] == ["refresh"]
    assert svc["environment"]["ECAUG_HOME"] == "/data"


def test_scheduling_doc_has_cron_and_cronjob():
    text = (ROOT / "docs" / "guide" / "scheduling.md").read_text()
    assert "kind: CronJob" in text and "ecaug refresh" in text and "0 3 * * *" in text
