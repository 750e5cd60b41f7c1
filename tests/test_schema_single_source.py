"""The feature schema has one source: ``ecaug_feast/schema.py``.

Grep-level (via ``ast``): outside the schema module, no code in ``ecaug_feast/``, ``recommender/``
or ``feature_repo/`` spells a feature column name as a string literal, nor a ``view:feature``
reference; tests, docs and benchmarks are exempt. Two names also mean something else and are only
checked where they sit in a column list (a list/tuple/set/dict of two or more feature names):
``attributes`` is also the item column of every dataset (docs/CONTRACT.md section 1) and
``popularity`` is also the name of the popularity baseline of the study.

Plus: the Feast fields, the Arrow schemas and the column lists derived from the schema agree.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from ecaug_feast import schema as S

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("ecaug_feast", "recommender", "feature_repo")
ALLOWED = {Path("ecaug_feast/schema.py")}
# names that are also a dataset column / a study method: checked in column lists only
AMBIGUOUS = {S.ATTRIBUTES, S.POPULARITY}
FEATURE_NAMES = set(S.USER_FEATURE_COLUMNS) | set(S.ITEM_FEATURE_COLUMNS)
STRICT = FEATURE_NAMES - AMBIGUOUS
REF = re.compile(r"^\w+:(\w+)$")


def _literals(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node


def offences(root: Path = ROOT) -> list[str]:
    """``path:line: literal`` for every feature name spelled outside the schema module."""
    out = []
    for top in SCANNED:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root)
            if rel in ALLOWED:
                continue
            tree = ast.parse(path.read_text(), filename=str(rel))
            for node in _literals(tree):
                ref = REF.match(node.value)
                if node.value in STRICT or (ref and ref.group(1) in FEATURE_NAMES):
                    out.append(f"{rel}:{node.lineno}: {node.value!r}")
            for node in ast.walk(tree):  # column lists, ambiguous names included
                if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
                    elts = node.elts
                elif isinstance(node, ast.Dict):
                    elts = [k for k in node.keys if k is not None]
                else:
                    continue
                named = [e.value for e in elts if isinstance(e, ast.Constant) and e.value in FEATURE_NAMES]
                if len(named) >= 2 and set(named) & AMBIGUOUS:
                    out.append(f"{rel}:{node.lineno}: column list {named}")
    return out


def test_feature_names_are_spelled_only_in_the_schema_module():
    found = offences()
    assert not found, "feature column names outside ecaug_feast/schema.py (use the schema constants):\n" + "\n".join(found)


def test_the_check_sees_a_restated_list(tmp_path):
    """The scan itself works: a restated column list and a single literal are both found."""
    pkg = tmp_path / "recommender"
    pkg.mkdir()
    (pkg / "x.py").write_text('COLS = ["item_id", "attributes", "popularity"]\nA = df["n_interactions"]\nB = "item_features:popularity"\n')
    found = offences(tmp_path)
    assert any("column list" in f for f in found)
    assert any("'n_interactions'" in f for f in found)
    assert any("'item_features:popularity'" in f for f in found)


def test_import_is_cheap():
    """``import ecaug_feast.schema`` pulls in pyarrow, not Feast, pandas or torch."""
    code = "import sys, ecaug_feast.schema; print(sorted(m for m in ('feast', 'pandas', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


ARROW_OF_FEAST = {"Int64": pa.int64(), "Float32": pa.float32(), "Bool": pa.bool_(), "String": pa.string()}


def _arrow_of(dtype) -> pa.DataType:
    from feast.types import Array

    if isinstance(dtype, Array):
        return pa.list_(_arrow_of(dtype.base_type))
    return ARROW_OF_FEAST[str(dtype)]


@pytest.mark.parametrize(
    "fields, arrow, columns",
    [
        ("USER_FEATURE_FIELDS", S.USER_SCHEMA, S.USER_FEATURE_COLUMNS),
        ("ITEM_FEATURE_FIELDS", S.ITEM_SCHEMA, S.ITEM_FEATURE_COLUMNS),
    ],
)
def test_feast_fields_arrow_schema_and_columns_agree(fields, arrow, columns, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "feature_repo"))
    sys.modules.pop("schemas", None)
    import schemas  # feature_repo/schemas.py, as `feast apply` imports it

    feast_fields = getattr(schemas, fields)
    assert [f.name for f in feast_fields] == columns == arrow.names[2:]
    for f in feast_fields:
        assert _arrow_of(f.dtype) == arrow.field(f.name).type, f.name
    assert arrow.names[1] == S.EVENT_TIMESTAMP


def test_derived_lists_follow_the_declaration():
    assert S.USER_SCALAR_COLUMNS + S.USER_LIST_COLUMNS == sorted(S.USER_FEATURE_COLUMNS, key=lambda c: S.BY_NAME[c].is_list)
    assert S.USER_FLOAT_COLUMNS == [c for c in S.USER_SCALAR_COLUMNS if S.USER_SCHEMA.field(c).type == pa.float32()]
    assert S.USER_SYNTH_SCHEMA.names == S.USER_SCHEMA.names + S.LINEAGE_COLUMNS
    assert S.HEAVY_TAILED_COLUMNS <= set(S.USER_SCALAR_COLUMNS) | set(S.ITEM_SCALAR_COLUMNS)


def test_libraries_read_the_schema_lists():
    """The lists the libraries use are the schema's (same names, same order)."""
    from ecaug_feast import drift, synth_store
    from ecaug_feast.features import build
    from ecaug_feast.synth import examples
    from recommender import batching, data

    assert build.USER_SCHEMA.equals(S.USER_SCHEMA) and build.ITEM_SCHEMA.equals(S.ITEM_SCHEMA)
    assert data.USER_FEATURE_COLUMNS == examples.USER_FEATURE_COLUMNS == S.USER_FEATURE_COLUMNS
    assert data.ITEM_FEATURE_COLUMNS == S.ITEM_FEATURE_COLUMNS
    assert batching.USER_DENSE == examples.SCALAR_COLUMNS == S.USER_SCALAR_COLUMNS
    assert batching.ITEM_DENSE == S.ITEM_SCALAR_COLUMNS
    assert synth_store.LINEAGE_COLUMNS == S.LINEAGE_COLUMNS
    assert set(drift.CONTINUOUS) <= set(S.USER_SCALAR_COLUMNS)
    u, i = synth_store._empty_frames()
    assert list(u.columns) == S.USER_SYNTH_SCHEMA.names and list(i.columns) == S.INTERACTIONS_SYNTH_SCHEMA.names


def test_item_synth_fields_arrow_schema_and_columns_agree(monkeypatch):
    """``item_features_synth``: its Feast fields (+ lineage), its run file's Arrow schema and the
    column list are one declaration."""
    from ecaug_feast.plugin import LINEAGE_FIELDS

    monkeypatch.syspath_prepend(str(ROOT / "feature_repo"))
    sys.modules.pop("schemas", None)
    import schemas

    fields = [*schemas.ITEM_SYNTH_FIELDS, *LINEAGE_FIELDS]
    assert [f.name for f in fields] == S.ITEM_SYNTH_COLUMNS == S.ITEM_SYNTH_SCHEMA.names[2:]
    for f in fields:
        assert _arrow_of(f.dtype) == S.ITEM_SYNTH_SCHEMA.field(f.name).type, f.name
    assert S.ITEM_SYNTH_SCHEMA.field(S.ITEM_VECTOR).type == pa.list_(pa.float32())
