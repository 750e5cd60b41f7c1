"""Module layers (docs/CONTRACT.md sections 6 and 7) and no side effects at import.

The layers are import-linter contracts in ``pyproject.toml``: libraries and adapters never import
jobs, entry points or the serving app; jobs never import entry points; entry points reach the
recommender only through jobs; and the rules of issue 29 (one contract each). Every import counts,
also the lazy ones inside functions: each contract is shown catching one planted import.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold(capsys):
    lint = pytest.importorskip("importlinter.cli", reason="import-linter is in the test extra")
    rc = lint.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "BROKEN" not in out and "0 broken" in out


def _lint_copy_with(tmp_path: Path, module: str, planted: str) -> subprocess.CompletedProcess:
    """Run the contracts on a copy of the tree where ``module`` (a file under the root) ends with a
    function holding the ``planted`` (lazy) import; the copy comes first on sys.path."""
    import shutil

    for pkg in ("ecaug_feast", "recommender"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "bundled"))
    lib = tmp_path / module
    lib.write_text(lib.read_text() + f"\n\ndef _bad():\n    {planted}  # noqa\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    code = ("import sys\nfrom importlinter.cli import lint_imports\n"
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


# (rule, file the import is planted in, the planted import, the edge the report must name)
PLANTED = [
    ("library imports a job", "ecaug_feast/quality/gates.py",
     "from ecaug_feast.jobs.augment import augment_run",
     "ecaug_feast.quality.gates -> ecaug_feast.jobs.augment"),
    ("rule 1: the study imports synth internals", "ecaug_feast/study/report.py",
     "from ecaug_feast.synth.seq_ops import SeqOps",
     "ecaug_feast.study.report -> ecaug_feast.synth.seq_ops"),
    ("rule 2: a labeler imports quality", "ecaug_feast/label/seq_labeler.py",
     "from ecaug_feast.quality.metrics import c2st_auc",
     "ecaug_feast.label.seq_labeler -> ecaug_feast.quality.metrics"),
    ("rule 3: training imports the feature builders", "recommender/seq_train.py",
     "from ecaug_feast.features.build import build_user_features",
     "recommender.seq_train -> ecaug_feast.features.build"),
    ("rule 4: datasets import features", "ecaug_feast/datasets/store.py",
     "from ecaug_feast.features.build import build_tables",
     "ecaug_feast.datasets.store -> ecaug_feast.features.build"),
    ("rule 6: Feast declarations import the generator", "ecaug_feast/plugin.py",
     "from ecaug_feast.synth.gan import ConditionalGAN",
     "ecaug_feast.plugin -> ecaug_feast.synth.gan"),
    ("rule 6: Feast declarations import the runs engine", "ecaug_feast/plugin.py",
     "from ecaug_feast.synth_store import active_run",
     "ecaug_feast.plugin -> ecaug_feast.synth_store"),
    ("the feast_io -> plugin -> synth_store -> feast_io loop", "ecaug_feast/feast_io.py",
     "from ecaug_feast.synth_store import active_run",
     "ecaug_feast.feast_io -> ecaug_feast.synth_store"),
    ("rule 5: serving reads the processed dataset", "recommender/serving/wiring.py",
     "from ecaug_feast.datasets.store import load_processed",
     "recommender.serving.wiring -> ecaug_feast.datasets.store"),
]


@pytest.mark.parametrize("rule,module,planted,edge", PLANTED, ids=[p[0] for p in PLANTED])
def test_the_contracts_catch_a_planted_import(tmp_path, rule, module, planted, edge):
    """The same contracts on a copy of the tree with one bad (lazy) import planted: reported broken."""
    pytest.importorskip("importlinter.cli", reason="import-linter is in the test extra")
    proc = _lint_copy_with(tmp_path, module, planted)
    assert proc.returncode != 0, proc.stdout
    assert edge in proc.stdout, proc.stdout[-3000:]


# feature_repo/ is not a package (Feast imports its files by name): its imports are read from the
# source. Rule 6: the definitions import only ecaug's declarations, paths and schema, never an engine.
FEATURE_REPO_MAY_IMPORT = {"ecaug_feast.plugin", "ecaug_feast.paths", "ecaug_feast.schema"}


def _ecaug_imports(source: str) -> set[str]:
    """Every ``ecaug_feast`` module a file imports (also inside functions)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "ecaug_feast"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ecaug_feast":
            out |= {f"ecaug_feast.{a.name}" for a in node.names} if node.module == "ecaug_feast" else {node.module}
    return out


def test_feature_repo_imports_only_declarations():
    files = sorted((ROOT / "feature_repo").glob("*.py"))
    assert files
    for f in files:
        bad = _ecaug_imports(f.read_text(encoding="utf-8")) - FEATURE_REPO_MAY_IMPORT
        assert not bad, f"feature_repo/{f.name} imports {sorted(bad)}"


def test_the_feature_repo_check_catches_a_planted_import():
    src = (ROOT / "feature_repo" / "synthetic_views.py").read_text(encoding="utf-8")
    planted = src + "\n\ndef _bad():\n    from ecaug_feast.synth.gan import ConditionalGAN  # noqa\n    from ecaug_feast import synth_store  # noqa\n"
    assert _ecaug_imports(planted) - FEATURE_REPO_MAY_IMPORT == {"ecaug_feast.synth.gan", "ecaug_feast.synth_store"}


_IMPORT_ALL = r"""
import importlib, json, os, pkgutil, sys
import ecaug_feast, recommender
names = []
for pkg in (ecaug_feast, recommender):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if m.name.startswith("ecaug_feast.feature_repo"):
            continue  # the Feast repo's definitions (checked with feature_repo/)
        importlib.import_module(m.name)
        names.append(m.name)
children = []
for task in os.listdir("/proc/self/task"):
    with open(f"/proc/self/task/{task}/children") as f:
        children += f.read().split()
print(json.dumps({"modules": names, "children": children}))
"""


def test_importing_every_module_writes_nothing_and_starts_nothing(tmp_path):
    """Import all of ``ecaug_feast`` and ``recommender`` with a state dir that does not exist and
    an empty working folder: afterwards both are untouched and no process was started."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ECAUG_REDIS_URL",)}
    env["ECAUG_HOME"] = str(home)
    proc = subprocess.run([sys.executable, "-c", _IMPORT_ALL], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "ecaug_feast.jobs.workspace" in res["modules"] and "recommender.seq_model" in res["modules"]
    assert res["children"] == []
    assert not home.exists()
    assert sorted(p.name for p in cwd.iterdir()) == []
