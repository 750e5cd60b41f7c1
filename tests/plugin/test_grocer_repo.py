"""Issue 31: the plugin on a grocer's repo ecaug has never seen, keyed by UUID strings (shoppers)
and Int32 numbers (products), with an ``Array(String)`` feature (the last items bought), a file
offline store and the session's real Redis (db 5: the grocer's keys are the only ones there).

- Fail fast: wrong names, a wrong key type, a missing source are refused in one line before any
  fitting (the GAN's ``fit`` is a spy that fails the test if reached).
- End to end: stock ``feast apply`` and ``feast materialize`` of the real views, a byte dump of the
  real Redis keys; ``ecaug augment --repo`` of the String-keyed view (synthetic keys
  ``ecaug:<run>:<n>``, lists drawn from the real marginals, never a copy) and of the Int32 view
  (keys in ``[2**30, 2**31)``); twins materialized; the real keys byte-identical; ``training_rows``
  mixes real and synthetic shoppers; ``ecaug runs list|show|rollback --repo`` on the grocer's runs
  folder, the last rollback leaving Redis exactly as before; a real key in the reserved prefix
  is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest

from _grocer import write_grocer_repo
from _shop import dump_keys, ecaug_cli, feast_cli

pytestmark = pytest.mark.slow

GROCER_DB = 5
ARGS = ["--rows", "200", "--steps", "300", "--json"]


@pytest.fixture(scope="module")
def grocer(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Path:
    return write_grocer_repo(tmp_path_factory.mktemp("grocer") / "feature_repo", redis_url, GROCER_DB)


def _augment(repo: Path, args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    """``ecaug augment --repo REPO --entity ARGS[0] --view ARGS[1] ARGS[2:]``."""
    return ecaug_cli(["augment", "--repo", str(repo), "--entity", args[0], "--view", args[1], *args[2:]], capsys, monkeypatch)


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_refusals_come_before_any_fit(grocer: Path, capsys, monkeypatch):
    """Every refusal is one line, exit 2, and the generator's fit never started."""
    from ecaug_feast.synth.gan import ConditionalGAN

    feast_cli(grocer, ["apply"], monkeypatch)
    fits: list[int] = []
    monkeypatch.setattr(ConditionalGAN, "fit", lambda self, *a, **k: fits.append(1) or pytest.fail("a fit started"))
    cases = [
        (["shopper", "nope"], "--view nope: no such feature view"),
        (["buyer", "shopper_behaviour"], "--entity buyer"),
        (["shopper", "shopper_behaviour", "--service", "nope"], "--service nope: no such feature service"),
        (["basket", "basket_totals", "--service", "ranking_inputs"], "--service ranking_inputs: does not serve view basket_totals"),
        (["basket", "basket_totals"], "join key 'basket_ref'"),  # String keys, a twin that declares Int64
    ]
    for args, want in cases:
        code, _, err = _augment(grocer, args, capsys, monkeypatch)
        assert code == 2 and want in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
    assert "String" in err and "Int64" in err and "value_type=ValueType.STRING" in err
    src = grocer / "data" / "products.parquet"
    os.rename(src, src.with_suffix(".away"))
    try:
        code, _, err = _augment(grocer, ["product", "product_stats"], capsys, monkeypatch)
    finally:
        os.rename(src.with_suffix(".away"), src)
    assert code == 2 and "product_stats" in err and "products.parquet" in err and "Traceback" not in err, err
    assert fits == []
    assert not any((grocer / "data" / "ecaug_runs").glob("2*"))  # no run was written


def test_unsupported_feature_types_refused():
    """Map and Struct features: one line naming view and field (checked on the declaration)."""
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Array, Float32, Map, String, Struct

    from ecaug_feast.errors import EcaugError
    from ecaug_feast.jobs.repo_keys import check_features

    ent = Entity(name="shopper", join_keys=["shopper_ref"], value_type=ValueType.STRING)
    src = FileSource(path="x.parquet", timestamp_field="ts")
    for name, dtype in (("prefs", Map), ("address", Struct({"city": String}))):
        view = FeatureView(name="shopper_more", entities=[ent], source=src,
                           schema=[Field(name="spend", dtype=Float32), Field(name=name, dtype=dtype)])
        with pytest.raises(EcaugError, match=f"view 'shopper_more', field '{name}'"):
            check_features(view)
    ok = FeatureView(name="ok", entities=[ent], source=src,
                     schema=[Field(name="spend", dtype=Float32), Field(name="items", dtype=Array(String))])
    assert check_features(ok) == (["spend"], ["items"])


def test_grocer_string_and_int32_keys_end_to_end(grocer: Path, redis_url: str, capsys, monkeypatch):
    import redis
    from feast import FeatureStore

    from ecaug_feast import plugin
    from ecaug_feast.ids import SYNTHETIC_INT32_BASE

    client = redis.Redis(host=urlparse(redis_url).hostname, port=urlparse(redis_url).port, db=GROCER_DB)
    client.flushdb()
    feast_cli(grocer, ["apply"], monkeypatch)
    feast_cli(grocer, ["materialize", "2025-01-01T00:00:00", "2025-07-01T00:00:00", "--views", "shopper_behaviour",
                       "--views", "product_stats"], monkeypatch)
    before = dump_keys(client)
    assert len(before) == 200 + 300
    real = pd.read_parquet(grocer / "data" / "shoppers.parquet")

    # 1. String (UUID) keys with a list feature
    code, out, err = _augment(grocer, ["shopper", "shopper_behaviour", "--service", "ranking_inputs", "--max-c2st", "0.9",
                                        *ARGS], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    res = _last_json(out)
    assert res["gate"] == "pass" and res["activated"] is True, res
    n, run1 = res["rows_accepted"], res["run_id"]
    assert n > 0 and res["materialized"] == {"shopper_behaviour_synth": n}
    synth = pd.read_parquet(Path(res["run_dir"]) / "shopper_behaviour_synth.parquet")
    assert synth["shopper_ref"].tolist() == [f"ecaug:{run1}:{i}" for i in range(n)]
    items = {i for x in real["last_items_bought"] for i in x}
    lists = [list(x) for x in synth["last_items_bought"]]
    assert all(set(x) <= items and len(x) == len(set(x)) for x in lists) and any(len(x) > 1 for x in lists)
    copies = {tuple(x) for x in real["last_items_bought"] if len(x) > 1}
    assert not any(tuple(x) in copies for x in lists)
    assert res["list_features"]["last_items_bought"]["distinct_items"] == len(items)
    after1 = dump_keys(client)
    assert {k: after1[k] for k in before} == before and len(after1) == len(before) + n
    store = FeatureStore(repo_path=str(grocer))
    got = store.get_online_features(
        features=["shopper_behaviour_synth:last_items_bought", "shopper_behaviour_synth:run_id"],
        entity_rows=[{"shopper_ref": k} for k in synth["shopper_ref"][:3]]).to_dict()
    assert got["run_id"] == [run1] * 3 and got["last_items_bought"] == lists[:3]

    # 2. training rows mix real and synthetic shoppers (string keys) through Feast
    ent = real.sample(100, random_state=0)[["shopper_ref", "seen_at"]].rename(columns={"seen_at": "event_timestamp"})
    mixed = plugin.training_rows(store, ent.reset_index(drop=True), ["shopper_behaviour:basket_value",
                                 "shopper_behaviour:last_items_bought"], mix_ratio=0.5, run_id=run1)
    syn = mixed[mixed["is_synthetic"]]
    assert len(syn) == 50 and syn["shopper_ref"].str.startswith(f"ecaug:{run1}:").all()
    assert syn["last_items_bought"].map(len).gt(0).any()

    # 3. Int32 keys, in the same runs folder (the shopper twin's file is carried, its keys untouched)
    code, out, err = _augment(grocer, ["product", "product_stats", "--max-c2st", "0.9", *ARGS], capsys, monkeypatch)
    assert code == 0, (out[-2000:], err[-2000:])
    res2 = _last_json(out)
    assert res2["gate"] == "pass" and res2["previous_run"] == run1 and res2["removed_keys"] == 0, res2
    m, run2 = res2["rows_accepted"], res2["run_id"]
    assert res2["materialized"] == {"product_stats_synth": m}
    prods = pd.read_parquet(Path(res2["run_dir"]) / "product_stats_synth.parquet")
    assert str(prods["product_no"].dtype) == "int32"
    assert prods["product_no"].min() >= SYNTHETIC_INT32_BASE and prods["product_no"].max() < 2**31
    after2 = dump_keys(client)
    assert {k: after2[k] for k in after1} == after1 and len(after2) == len(after1) + m
    got = store.get_online_features(features=["product_stats_synth:price"],
                                    entity_rows=[{"product_no": int(prods["product_no"].iloc[0])}]).to_dict()
    assert got["price"][0] is not None

    # 4. runs list / show / rollback on the grocer's runs folder
    code, out, _ = ecaug_cli(["runs", "list", "--repo", str(grocer), "--json"], capsys, monkeypatch)
    listed = _last_json(out)
    assert code == 0 and [r["run_id"] for r in listed["runs"]] == [run1, run2] and listed["active"] == run2
    code, out, _ = ecaug_cli(["runs", "show", run1, "--repo", str(grocer), "--json"], capsys, monkeypatch)
    assert code == 0 and _last_json(out)["lineage"]["view"] == "shopper_behaviour"
    code, out, err = ecaug_cli(["runs", "rollback", "--repo", str(grocer), "--json"], capsys, monkeypatch)
    assert code == 0, err
    back = _last_json(out)
    assert back["active"] == run1 and back["removed_keys"] == m and back["materialized"] == {}
    assert dump_keys(client) == after1
    code, out, err = ecaug_cli(["runs", "rollback", "--repo", str(grocer), "--json"], capsys, monkeypatch)
    assert code == 0 and _last_json(out)["active"] is None and _last_json(out)["removed_keys"] == n, err
    assert dump_keys(client) == before  # every synthetic key gone, the real ones byte-identical
    code, _, err = ecaug_cli(["runs", "rollback", "--repo", str(grocer)], capsys, monkeypatch)
    assert code == 2 and "nothing to roll back" in err

    # 5. a real key inside the reserved prefix: refused before fitting, in one line
    clash = real.iloc[:1].assign(shopper_ref="ecaug:legacy-import:1")
    pd.concat([real, clash]).to_parquet(grocer / "data" / "shoppers.parquet")
    code, _, err = _augment(grocer, ["shopper", "shopper_behaviour", *ARGS], capsys, monkeypatch)
    assert code == 2 and "'ecaug:legacy-import:1'" in err and "reserved" in err and "key_prefix" in err, err
    assert dump_keys(client) == before
