"""The built wheel, installed into a fresh virtualenv offline, works from an ordinary folder.

No network: the fresh venv gets the wheel with ``pip install --no-deps --no-index`` and sees the
already installed third-party packages (torch, torchrec, feast, ...) through a ``.pth`` file that
lists the test runner's site-packages folders. Those folders' own ``.pth`` files (the checkout's
editable install) are not processed there, so ``ecaug_feast`` comes from the wheel alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "ecaug_feast", "recommender", "feature_repo")
# ECAUG_* set by the test session (tests/conftest.py) must not reach the installed ecaug: the
# point is the defaults.
ENV = {k: v for k, v in os.environ.items() if not k.startswith("ECAUG_")}


def _run(cmd: list[str | Path], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def _runner_site_dirs() -> list[Path]:
    return [Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel`` of this checkout (no build isolation: the runner's setuptools, no download),
    built from a copy of the sources so setuptools' build/ and egg-info stay out of the checkout."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    r = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, src], src)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = out.glob("ecaug_feast-*.whl")
    return whl


def _fresh_venv(where: Path, wheel: Path, hide: tuple[str, ...] = ()) -> Path:
    """A new venv with the wheel installed; third-party packages visible except those in ``hide``
    (top-level names; their ``*.dist-info`` is hidden too)."""
    venv.EnvBuilder(with_pip=True).create(where)
    py = where / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], where).stdout.strip())
    dirs = _runner_site_dirs()
    if hide:  # a folder of links to everything but the hidden packages, per runner site dir
        shadows = []
        for i, d in enumerate(dirs):
            shadow = where / f"deps{i}"
            shadow.mkdir()
            for entry in d.iterdir():
                top = entry.name.split("-")[0].split(".")[0]
                if top not in hide:
                    (shadow / entry.name).symlink_to(entry)
            shadows.append(shadow)
        dirs = shadows
    (site / "_runner_deps.pth").write_text("".join(f"{d}\n" for d in dirs), encoding="utf-8")
    r = _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], where)
    assert r.returncode == 0, r.stderr[-3000:]
    return where


def _files(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*") if p.is_file()}


def _json_line(r: subprocess.CompletedProcess) -> dict:
    assert r.stdout.strip(), r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_wheel_in_fresh_venv_runs_from_an_empty_folder(wheel: Path, tmp_path: Path):
    env_dir = _fresh_venv(tmp_path / "venv", wheel)
    ecaug = env_dir / "bin" / "ecaug"
    site = next((env_dir / "lib").glob("python*/site-packages"))
    assert (site / "ecaug_feast" / "feature_repo" / "feature_store.yaml").exists()  # Feast repo shipped
    assert (site / "ecaug_feast" / "constraints.txt").exists()
    before = _files(site)
    work = tmp_path / "work"
    work.mkdir()

    r = _run([ecaug, "--version"], work)
    assert r.returncode == 0 and r.stdout.strip().startswith("ecaug-feast "), r.stderr
    doc = _run([ecaug, "doctor", "--json"], work)
    rep = _json_line(doc)
    assert doc.returncode == 0 and rep["ok"], rep
    checks = {c["name"]: c for c in rep["checks"]}
    assert checks["import torchrec"]["status"] == "ok"
    assert checks["ecaug-feast"]["detail"] == str(site / "ecaug_feast")  # the wheel, not the checkout
    assert checks["state dir"]["detail"].startswith(str(work / ".ecaug"))
    try:
        ing = _json_line(_run([ecaug, "ingest", "--dataset", "beauty", "--max-users", "300", "--json"], work))
        assert ing["features"]["users"] == 300
        assert ing["version"] == rep["version"]
        app = _run([ecaug, "apply", "--json"], work)
        assert app.returncode == 0, app.stderr[-3000:]
        tr = _run([ecaug, "train", "--epochs", "1", "--json"], work)
        assert tr.returncode == 0, tr.stderr[-3000:]
        out = _json_line(tr)
        assert out["epochs"] == 1 and Path(out["checkpoint"]).is_relative_to(work / ".ecaug")
    finally:
        _run([ecaug, "redis", "stop"], work)  # apply/train started the embedded Redis for ./.ecaug

    state = work / ".ecaug"
    for sub in ("datasets/beauty", "feast/registry.db", "feature_repo/feature_store.yaml", "models/real/model.pt"):
        assert (state / sub).exists(), sub
    after = _files(site)
    assert after == before, sorted(set(after) ^ set(before))[:20] or "files changed under site-packages"
    assert not list(site.rglob(".ecaug"))


def test_doctor_reports_missing_torchrec_with_the_fix(wheel: Path, tmp_path: Path):
    env_dir = _fresh_venv(tmp_path / "venv", wheel, hide=("torchrec",))
    py, ecaug = env_dir / "bin" / "python", env_dir / "bin" / "ecaug"
    assert _run([py, "-c", "import torchrec"], tmp_path).returncode != 0  # really hidden
    assert _run([py, "-c", "import torch, fbgemm_gpu, feast"], tmp_path).returncode == 0  # the rest is there

    r = _run([ecaug, "doctor", "--json"], tmp_path)
    assert r.returncode == 1
    rep = _json_line(r)
    assert not rep["ok"]
    (tr,) = [c for c in rep["checks"] if c["name"] == "torchrec"]
    assert tr["status"] == "fail"
    fix = f"{py} -m pip install --no-deps torchrec==1.8.0"
    assert tr["fix"] == [fix] and fix in rep["fixes"]

    human = _run([ecaug, "doctor"], tmp_path)
    assert human.returncode == 1 and fix in human.stdout and "To fix, run:" in human.stdout


def test_core_install_without_torch_helps_and_doctors(wheel: Path, tmp_path: Path):
    """A core install (no train/serve extras): --help works (no torch at import), doctor warns
    with the install commands and exits 0."""
    hidden = ("torch", "torchgen", "functorch", "torchrec", "fbgemm_gpu", "fbgemm_gpu_cpu", "faiss", "faiss_cpu",
              "fastapi", "uvicorn", "triton")
    env_dir = _fresh_venv(tmp_path / "venv", wheel, hide=hidden)
    py, ecaug = env_dir / "bin" / "python", env_dir / "bin" / "ecaug"
    assert _run([py, "-c", "import torch"], tmp_path).returncode != 0
    h = _run([ecaug, "--help"], tmp_path)
    assert h.returncode == 0 and "doctor" in h.stdout and "ECAUG_HOME" in h.stdout, h.stderr[-2000:]
    r = _run([ecaug, "doctor", "--json"], tmp_path)
    rep = _json_line(r)
    assert r.returncode == 0 and rep["ok"], rep
    checks = {c["name"]: c for c in rep["checks"]}
    assert checks["training stack"]["status"] == "warn" and checks["serving stack"]["status"] == "warn"
    from ecaug_feast.doctor import gpu_present

    cpu_fix = any("--index-url https://download.pytorch.org/whl/cpu" in f for f in rep["fixes"])
    assert cpu_fix != gpu_present()  # the CPU build unless an NVIDIA GPU is there
    assert not (tmp_path / ".ecaug").exists()  # doctor and --help write no state
