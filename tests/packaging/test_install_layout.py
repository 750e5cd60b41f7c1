"""Where state goes, which Feast repo is used, the pins and extras, ``--version``, ``ecaug doctor``."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ecaug_feast import doctor, paths, version
from ecaug_feast.cli.main import app

ROOT = Path(__file__).resolve().parents[2]


def test_state_dir_defaults_to_cwd_and_is_not_created(tmp_path, monkeypatch):
    monkeypatch.delenv("ECAUG_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert paths.state_dir() == tmp_path / ".ecaug"
    assert paths.models_dir() == tmp_path / ".ecaug" / "models"
    assert not (tmp_path / ".ecaug").exists()  # reading a path creates nothing
    monkeypatch.setenv("ECAUG_HOME", str(tmp_path / "elsewhere"))
    assert paths.state_dir() == tmp_path / "elsewhere"
    assert not (tmp_path / "elsewhere").exists()


def test_feature_repo_default_and_override(tmp_path, monkeypatch):
    monkeypatch.delenv("ECAUG_FEATURE_REPO", raising=False)
    assert paths.feature_repo_dir() == ROOT / "feature_repo"  # a checkout: the top-level repo
    monkeypatch.setenv("ECAUG_FEATURE_REPO", str(tmp_path))
    assert paths.feature_repo_dir() == tmp_path


def test_repo_state_dir_follows_the_registry(tmp_path):
    assert paths.repo_state_dir(ROOT / "feature_repo") == ROOT / ".ecaug"  # ../.ecaug/feast/registry.db
    repo = tmp_path / "r"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(f"registry:\n  path: {tmp_path / 'st' / 'feast' / 'registry.db'}\n")
    assert paths.repo_state_dir(repo) == tmp_path / "st"


def test_definitions_read_the_repos_state_when_ecaug_home_is_unset(tmp_path, monkeypatch):
    """Feast imports the definitions with the repo as cwd: ./.ecaug would point inside the repo."""
    state = tmp_path / "state"
    repo = state / "feature_repo"
    repo.mkdir(parents=True)
    for p in (ROOT / "feature_repo").glob("*.py"):
        shutil.copy2(p, repo / p.name)
    (repo / "feature_store.yaml").write_text(f"registry:\n  path: {state / 'feast' / 'registry.db'}\n")
    monkeypatch.delenv("ECAUG_HOME", raising=False)
    monkeypatch.chdir(repo)
    monkeypatch.syspath_prepend(str(repo))
    names = [p.stem for p in repo.glob("*.py")]
    for n in names:
        monkeypatch.delitem(sys.modules, n, raising=False)
    try:
        import real_views  # noqa: PLC0415 - the definition module under test

        assert Path(real_views._DATA) == state / "feast"
        assert Path(real_views.user_features_source.path).parent == state / "feast"
    finally:
        for n in names:
            sys.modules.pop(n, None)


def _pins(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = re.match(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)", line.strip())
        if m:
            out[doctor._norm(m.group(1))] = m.group(2)
    return out


def test_shipped_constraints_match_the_pinned_requirements():
    shipped = doctor.pins()
    for req in ("requirements.txt", "requirements-torchrec.txt", "requirements-bench.txt"):
        for name, ver in _pins((ROOT / req).read_text()).items():
            assert shipped.get(name) == ver, f"{req}: {name}=={ver}, constraints.txt has {shipped.get(name)}"
    # the pinned trio pairs by the doctor's table
    assert doctor.FBGEMM_TORCH[doctor.minor(shipped["fbgemm-gpu-cpu"])] == doctor.minor(shipped["torch"])
    assert doctor.minor(shipped["torchrec"]) == doctor.minor(shipped["fbgemm-gpu-cpu"])


def test_extras_pin_the_paired_trio_and_leave_torchrec_out():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(meta["dependencies"])
    assert "torch" not in core and "faiss" not in core and "fastapi" not in core  # core imports no torch
    extras = meta["optional-dependencies"]
    shipped = doctor.pins()
    for name, fbgemm in (("train", "fbgemm-gpu-cpu"), ("train-cuda", "fbgemm-gpu")):
        reqs = _pins("\n".join(extras[name]))
        assert reqs["torch"] == shipped["torch"] and reqs[fbgemm] == shipped["fbgemm-gpu-cpu"]
        assert not any(r.startswith("torchrec") for r in extras[name])  # its metadata pulls fbgemm-gpu
        other = {"fbgemm-gpu-cpu", "fbgemm-gpu"} - {fbgemm}
        assert not other & set(reqs)  # never both fbgemm builds
    assert {"fastapi", "uvicorn", "faiss-cpu"} <= {re.split(r"[<>=\[]", r)[0] for r in extras["serve"]}


def test_version_flag_and_json_summaries_carry_the_version():
    runner = CliRunner()
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"ecaug-feast {version()}"
    for args in (["runs", "list", "--json"], ["redis", "status", "--json"]):  # status exits 1 when stopped
        r = runner.invoke(app, args)
        assert json.loads(r.output.strip().splitlines()[-1])["version"] == version(), r.output
    assert "ECAUG_HOME" in runner.invoke(app, ["--help"]).output


# --- doctor logic for pairings this machine cannot install (only torch 2.13 is here): the
# installed versions are faked through doctor.dist_version, everything else is real.

def _fake_versions(monkeypatch, **versions: str | None) -> None:
    real = doctor.dist_version
    table = {k.replace("_", "-"): v for k, v in versions.items()}
    monkeypatch.setattr(doctor, "dist_version", lambda n: table[n] if n in table else real(n))
    monkeypatch.setattr(doctor, "torch_cuda_build", lambda: None)


def _by_name(checks):
    return {c.name: c for c in checks}


def test_doctor_flags_fbgemm_built_for_another_torch(monkeypatch):
    _fake_versions(monkeypatch, torch="2.12.1", fbgemm_gpu_cpu="1.8.0", fbgemm_gpu=None, torchrec="1.8.0")
    c = _by_name(doctor._train_checks(doctor.Fixes(doctor.pins(), gpu=False), gpu=False, import_check=False))
    assert c["fbgemm"].status == doctor.FAIL and "torch 2.13" in c["fbgemm"].detail
    assert c["fbgemm"].fix == [f"{sys.executable} -m pip install --no-deps fbgemm-gpu-cpu==1.7.0",
                               f"{sys.executable} -m pip install --no-deps torchrec==1.7.0"]
    assert c["torch"].status == doctor.WARN  # runs, but not the tested set


def test_doctor_flags_torchrec_of_another_release(monkeypatch):
    _fake_versions(monkeypatch, torch="2.13.0", fbgemm_gpu_cpu="1.8.0", fbgemm_gpu=None, torchrec="1.7.0")
    c = _by_name(doctor._train_checks(doctor.Fixes(doctor.pins(), gpu=False), gpu=False, import_check=False))
    assert c["torchrec"].status == doctor.FAIL
    assert c["torchrec"].fix == [f"{sys.executable} -m pip install --no-deps torchrec==1.8.0"]


def test_doctor_flags_both_fbgemm_builds(monkeypatch):
    _fake_versions(monkeypatch, torch="2.13.0", fbgemm_gpu_cpu="1.8.0", fbgemm_gpu="1.8.0", torchrec="1.8.0")
    c = _by_name(doctor._train_checks(doctor.Fixes(doctor.pins(), gpu=False), gpu=False, import_check=False))
    assert c["fbgemm"].status == doctor.FAIL
    assert c["fbgemm"].fix[0].endswith("pip uninstall -y fbgemm-gpu")


def test_doctor_core_only_install_is_not_broken(monkeypatch):
    """No torch stack at all is a core install (warn + the install commands), not a failure."""
    _fake_versions(monkeypatch, torch=None, fbgemm_gpu_cpu=None, fbgemm_gpu=None, torchrec=None)
    (c,) = doctor._train_checks(doctor.Fixes(doctor.pins(), gpu=False), gpu=False, import_check=False)
    assert c.status == doctor.WARN
    assert c.fix[0].endswith(f"torch=={doctor.pins()['torch']} --index-url {doctor.CPU_INDEX}")  # CPU build
    assert c.fix[-1].endswith("--no-deps torchrec==1.8.0")


def test_doctor_cuda_torch_without_gpu_warns(monkeypatch):
    _fake_versions(monkeypatch, torch="2.13.0", fbgemm_gpu_cpu="1.8.0", fbgemm_gpu=None, torchrec="1.8.0")
    monkeypatch.setattr(doctor, "torch_cuda_build", lambda: "12.8")
    c = _by_name(doctor._train_checks(doctor.Fixes(doctor.pins(), gpu=False), gpu=False, import_check=False))
    assert c["torch"].status == doctor.WARN and "without an NVIDIA GPU" in c["torch"].detail
    assert "--index-url https://download.pytorch.org/whl/cpu" in c["torch"].fix[0]


def test_doctor_reads_this_torch_build_without_importing_it():
    if doctor.dist_version("torch") is None:
        pytest.skip("torch not installed")
    assert ("+cpu" in doctor.dist_version("torch")) == (doctor.torch_cuda_build() is None)
