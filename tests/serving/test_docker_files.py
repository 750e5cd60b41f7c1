"""docker/: the compose file validates (where a compose client exists) and wires the parts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def _compose_cmd() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_services_and_dependencies():
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert {"redis", "feature-server", "api", "ingest", "augment", "train"} <= set(services)
    api = services["api"]
    assert api["environment"]["ECAUG_REDIS_URL"] == "redis://redis:6379/0"
    assert api["depends_on"]["train"]["condition"] == "service_completed_successfully"
    assert services["train"]["depends_on"]["ingest"]["condition"] == "service_completed_successfully"
    assert "feast" in services["feature-server"]["entrypoint"] and "serve" in services["feature-server"]["entrypoint"]
    for name in ("api", "feature-server"):  # never published beyond loopback
        assert all(str(p).startswith("127.0.0.1:") for p in services[name]["ports"])


def test_dockerfile_installs_cpu_torch_and_pinned_requirements():
    text = DOCKERFILE.read_text()
    assert "requirements.txt" in text and "--no-deps -r requirements-torchrec.txt" in text
    assert "whl/cpu" in text  # CPU wheel index, so no CUDA torch
    req = (ROOT / "requirements.txt").read_text()
    torch_pin = next(line for line in req.splitlines() if line.startswith("torch=="))
    assert f'"{torch_pin}"' in text  # same torch version as the venv


@pytest.mark.skipif(_compose_cmd() is None, reason="no docker compose client on this machine")
def test_compose_config_validates():
    cmd = _compose_cmd() + ["-f", str(COMPOSE), "config", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
