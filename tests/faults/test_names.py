"""Fault suite: names and run ids that become paths (issue 12, item 1).

``ecaug train --name ..`` once deleted the whole ``$ECAUG_HOME`` and exited 0; ``--name .``
deleted every checkpoint; ``runs rollback --to /abs/dir`` pointed ``active`` at any folder. Now
every such name is checked as one path component, refused with one line and exit 2, and nothing
is deleted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ecaug_feast.errors import EcaugError
from ecaug_feast.names import BadNameError, assert_strict_child, check_name, owned_child

BAD = ["..", ".", "", "/tmp/x", "a/b", "../models", "a/../..", ".hidden", "_empty", "-rf", "x" * 129, "a b", "a\nb", "tab\t"]


def ecaug(args: list[str], home: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ECAUG_REDIS_URL"}
    env["ECAUG_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (to prove nothing was touched)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def one_line_error(r: subprocess.CompletedProcess, needle: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    errs = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errs) == 1 and needle in errs[0], r.stderr


@pytest.mark.parametrize("name", BAD)
def test_bad_names_are_refused(name):
    with pytest.raises(BadNameError) as exc:
        check_name(name, "--name")
    assert exc.value.exit_code == 2 and "\n" not in str(exc.value).replace(repr(name), "")


@pytest.mark.parametrize("name", ["real", "real-ft-full", "beauty", "20261128-101112-ab12", "v1.2_x", "A" * 128])
def test_good_names_pass(name):
    assert check_name(name) == name


def test_owned_child_refuses_a_symlink_out(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "escape").symlink_to(tmp_path)
    with pytest.raises(BadNameError, match="outside"):
        owned_child(tmp_path / "models", "escape")
    with pytest.raises(BadNameError):
        assert_strict_child(tmp_path / "models", tmp_path / "models")
    assert owned_child(tmp_path / "models", "ok") == tmp_path / "models" / "ok"


def _tiny_checkpoint_args():
    from recommender.batching import ItemCatalog
    from recommender.model import ModelConfig, TwoTower

    cat = ItemCatalog.from_frame(pd.DataFrame({"item_id": [1, 2, 3], "attributes": [[1], [2], [1, 2]]}))
    cfg = ModelConfig(num_items=cat.num_items, num_attributes=cat.num_attributes, embedding_dim=8, hidden_dim=16,
                      out_dim=8, user_buckets=64)
    return TwoTower(cfg).state_dict(), cfg, cat


@pytest.mark.slow
def test_save_checkpoint_never_replaces_the_state_or_the_models_folder(tmp_path, monkeypatch):
    from recommender.checkpoint import CheckpointError, load_checkpoint, named_dir, save_checkpoint

    home = tmp_path / "home"
    monkeypatch.setenv("ECAUG_HOME", str(home))
    state, cfg, cat = _tiny_checkpoint_args()
    models = home / "models"
    save_checkpoint(models / "real", state, cfg, cat)
    (home / "datasets" / "beauty").mkdir(parents=True)
    (home / "datasets" / "beauty" / "meta.json").write_text("{}")
    before = tree(home)

    for target in (models / "..", models / "."):  # what `--name ..` / `--name .` produced
        with pytest.raises((BadNameError, CheckpointError)):
            save_checkpoint(target, state, cfg, cat)
    for bad in ("..", ".", "/abs", "a/b"):
        with pytest.raises(BadNameError):
            named_dir(bad)
    assert tree(home) == before  # nothing deleted, nothing written
    assert load_checkpoint(models / "real")[1]["format"] == "ecaug-two-tower"
    # a real checkpoint is still replaced atomically, as before
    save_checkpoint(named_dir("real"), state, cfg, cat, note="second")
    assert json.loads((models / "real" / "config.json").read_text())["note"] == "second"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["..", ".", "/tmp"])
def test_train_with_bad_name_exits_2_and_deletes_nothing(tmp_path, name):
    home = tmp_path / "home"
    (home / "models" / "real").mkdir(parents=True)
    (home / "models" / "real" / "config.json").write_text('{"keep": true}')
    (home / "datasets").mkdir()
    before = tree(home)
    r = ecaug(["train", "--dataset", "beauty", "--epochs", "1", "--name", name], home)
    one_line_error(r, "checkpoint name")
    assert tree(home) == before


def test_ingest_own_data_with_bad_name(tmp_path):
    home = tmp_path / "home"
    (home / "datasets" / "shop").mkdir(parents=True)
    (home / "datasets" / "shop" / "meta.json").write_text('{"keep": true}')
    before = tree(home)
    csv = tmp_path / "o.csv"
    csv.write_text("u,i,t\n1,2,2024-01-01\n1,3,2024-01-02\n2,3,2024-01-03\n")
    for name in (".", ".."):
        r = ecaug(["ingest", "--interactions", str(csv), "--map", "user=u,item=i,timestamp=t", "--name", name], home)
        one_line_error(r, "--name")
    assert tree(home) == before


def test_dataset_store_refuses_bad_names(tmp_path, monkeypatch):
    from ecaug_feast.datasets.store import dataset_dir, load_processed

    monkeypatch.setenv("ECAUG_HOME", str(tmp_path))
    for bad in ("..", ".", "/etc", "a/b"):
        with pytest.raises(BadNameError):
            dataset_dir(bad)
        with pytest.raises(EcaugError):
            load_processed(bad)


def test_run_ids_are_names(tmp_path, monkeypatch):
    from ecaug_feast import synth_store

    monkeypatch.setenv("ECAUG_HOME", str(tmp_path / "home"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "manifest.json").write_text(json.dumps({"gate": "pass"}))
    synth_store.ensure_sources()
    for bad in (str(elsewhere), "../elsewhere", "..", "_empty", ".lock"):
        with pytest.raises(EcaugError):
            synth_store.load_run(bad)
        with pytest.raises(EcaugError):
            synth_store.rollback(to=bad)
    assert synth_store.active_run() is None
    assert os.readlink(synth_store.runs_root() / synth_store.ACTIVE) == synth_store.EMPTY


@pytest.mark.parametrize("args", [["runs", "rollback", "--to", "/tmp"], ["runs", "rollback", "--to", ".."],
                                  ["runs", "show", "../x"]])
def test_runs_cli_bad_ids(tmp_path, args):
    home = tmp_path / "home"
    r = ecaug(args, home)
    one_line_error(r, "not a valid name")
    assert not (home / "runs" / "active").exists() or os.readlink(home / "runs" / "active") == "_empty"


def test_mapping_file_name_is_checked(tmp_path):
    """A mapping file's ``name: ..`` is refused like ``--name ..`` (the store checks every name)."""
    import yaml

    home = tmp_path / "home"
    (home / "datasets" / "shop").mkdir(parents=True)
    (home / "datasets" / "shop" / "meta.json").write_text('{"keep": true}')
    before = tree(home)
    (tmp_path / "o.csv").write_text("u,i,t\n1,2,2024-01-01\n1,3,2024-01-02\n2,3,2024-01-03\n")
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"name": "..", "interactions": "o.csv",
                                                   "columns": {"user": "u", "item": "i", "timestamp": "t"}}))
    r = ecaug(["ingest", "--mapping", str(tmp_path / "m.yaml")], home)
    one_line_error(r, "dataset name")
    assert tree(home) == before
