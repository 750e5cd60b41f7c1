"""Fault suite, tracebacks (issue 12 item 7): mistyped commands and options are usage errors
(exit 2, click's message, no traceback); a full disk, a corrupt stored file and a dataset too
small to train on are one line each."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pandas as pd
import pytest

from _ecaug_cli import run_inprocess, run_subprocess


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("ECAUG_HOME", str(h))
    return h


@pytest.mark.parametrize("args, says", [
    (["nosuch"], "No such command 'nosuch'"),
    (["train", "--modle", "x"], "No such option: --modle"),
    (["runs", "nosuch"], "No such command 'nosuch'"),
    (["ingest", "--negatives", "many"], "Invalid value for '--negatives'"),
])
def test_usage_errors_exit_2_without_traceback(args, says, capsys, monkeypatch):
    res = run_inprocess(args, capsys, monkeypatch)
    assert res.code == 2 and not res.traceback, res.err
    assert says in res.err and "Usage: ecaug" in res.err


def test_usage_error_as_a_real_process():
    res = run_subprocess(["nosuch"], timeout=120)
    assert res.code == 2 and not res.traceback and "No such command 'nosuch'" in res.err, res.err


def test_corrupt_run_manifest_is_one_line(home, capsys, monkeypatch):
    from ecaug_feast import paths

    run = paths.runs_dir() / "20240101-000000-abcd"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text('{"seq": 1, "gate": "pa', encoding="utf-8")  # cut mid-write
    res = run_inprocess(["runs", "show", run.name], capsys, monkeypatch)
    assert res.clean_error, res.err
    assert "manifest.json" in res.err and "corrupt" in res.err  # synth_store names it: "corrupt run manifest"


def test_corrupt_processed_parquet_is_one_line(home, capsys, monkeypatch):
    from ecaug_feast.datasets import load_dataset, subset_users
    from ecaug_feast.datasets.store import write_processed

    out = write_processed(subset_users(load_dataset("beauty"), 200))
    (out / "interactions.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    res = run_inprocess(["train", "--dataset", "beauty", "--source", "memory", "--epochs", "1"], capsys, monkeypatch)
    assert res.clean_error, res.err
    assert "interactions.parquet" in res.err


def test_disk_full_during_ingest_is_one_line_naming_the_path(home, capsys, monkeypatch):
    """ENOSPC raised by the writer (a stand-in for a full disk; the real-disk case is below)."""
    import errno

    import ecaug_feast.features.build as build

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(home / "feast" / ".user_features.parquet.tmp-1"))

    monkeypatch.setattr(build, "_write_parquet", full)
    res = run_inprocess(["ingest", "--dataset", "beauty", "--max-users", "200"], capsys, monkeypatch)
    assert res.clean_error, res.err
    assert "no space left on device" in res.err and ".user_features.parquet" in res.err


def _mount_tmpfs(where: Path, size: str) -> bool:
    if shutil.which("mount") is None:
        return False
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return proc.returncode == 0


@pytest.mark.slow
def test_real_full_disk_during_ingest(tmp_path):
    """A real 600 KB tmpfs as ECAUG_HOME (needs mount rights: root in a container)."""
    disk = tmp_path / f"full-{uuid.uuid4().hex[:6]}"
    if not _mount_tmpfs(disk, "600k"):
        pytest.skip("cannot mount a small tmpfs here (needs root); the ENOSPC path is covered above")
    try:
        res = run_subprocess(["ingest", "--dataset", "beauty", "--max-users", "3000"],
                             env={"ECAUG_HOME": str(disk / "home")}, timeout=300)
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    assert res.clean_error, res.err[-2000:]
    assert "no space left on device" in res.err and str(disk) in res.err


def test_tiny_dataset_training_is_one_line(home, capsys, monkeypatch, tmp_path):
    p = tmp_path / "tiny.csv"
    pd.DataFrame({"u": [1, 1, 1, 2, 2, 2, 3, 3, 3], "i": [10, 11, 12, 10, 13, 11, 12, 10, 11],
                  "t": pd.date_range("2024-01-01", periods=9, freq="D").strftime("%Y-%m-%d")}).to_csv(p, index=False)
    res = run_inprocess(["ingest", "--interactions", str(p), "--map", "user=u,item=i,timestamp=t", "--name", "tiny"], capsys, monkeypatch)
    assert res.code == 0, res.err
    res = run_inprocess(["train", "--dataset", "tiny", "--source", "memory", "--epochs", "1"], capsys, monkeypatch)
    assert res.clean_error, res.err
    assert "too small to train" in res.err and "'tiny'" in res.err
