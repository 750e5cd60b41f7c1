"""The cold-item study (issue 34) end to end through ``ecaug experiment --protocol`` and the jobs:
cold / warm / all per method with intervals, no cold item in the cell's training data or Feast
sources, and a screen that never scores test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.study.test_study import _cli

ROOT = Path(__file__).resolve().parents[2]
COLD_TINY = ROOT / "tests" / "study" / "protocol-cold-tiny.yaml"


def test_cold_protocols_are_checked():
    from ecaug_feast.errors import EcaugError
    from ecaug_feast.study.protocol import make_protocol, read_file

    p = make_protocol(read_file(COLD_TINY))
    assert p.cold_frac == 0.2 and p.methods == ("cold_popularity", "cold_id_only", "cold_attr_tower")
    committed = make_protocol(read_file(ROOT / "benchmarks" / "protocols" / "cold-items.yaml"))
    assert set(committed.methods) == {"cold_popularity", "cold_id_only", "cold_attr_tower", "cold_gar"} and not committed.screen
    with pytest.raises(EcaugError, match="cold_id_only need cold_frac"):
        make_protocol({"methods": ["real_only", "cold_id_only"]}, source="p.yaml")
    with pytest.raises(EcaugError, match="real_only do not run in a cold-item protocol"):
        make_protocol(read_file(COLD_TINY), {"methods": ["real_only"]}, source="p.yaml")
    with pytest.raises(EcaugError, match="fractions \\[1.0\\]"):
        make_protocol(read_file(COLD_TINY), {"fractions": [0.5]}, source="p.yaml")
    with pytest.raises(EcaugError, match="cold_frac must be a number"):
        make_protocol(read_file(COLD_TINY), {"cold_frac": "0.2"}, source="p.yaml")


@pytest.mark.slow
def test_tiny_cold_study_end_to_end(feast_env, tmp_path, monkeypatch):
    r = _cli("experiment", "--protocol", str(COLD_TINY), "--dataset", feast_env.data.name, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert not res["screen"] and res["cold_items"]
    rows = {x["method"]: x for x in res["results"]}
    assert list(rows) == ["cold_popularity", "cold_id_only", "cold_attr_tower"]
    for m, x in rows.items():
        assert x["scored_on"] == "test"
        g = x["groups"]
        assert g["cold"]["users"] > 0 and g["warm"]["users"] > 0
        assert g["cold"]["users"] + g["warm"]["users"] == g["all"]["users"]
        for grp in g.values():
            for k in ("ndcg@10", "recall@10"):
                assert grp[k]["low"] <= grp[k]["mean"] <= grp[k]["high"] and 0 <= grp[k]["mean"] <= 1
        assert ("lift_vs_cold_attr_tower" in g["cold"]) == (m != "cold_attr_tower")
    # popularity never ranks a cold item above a warm one it has counts for: its cold hits are ties only
    assert rows["cold_popularity"]["groups"]["cold"]["recall@10"]["mean"] < 0.05
    full = json.loads((Path(res["out_dir"]) / "results.json").read_text())
    assert len(full["runs"]) == 3 and full["runs"][0]["cold_split"]["cold_items"] > 0
    table = (Path(res["out_dir"]) / "table.md").read_text()
    assert "cold NDCG@10" in table and "warm Recall@10" in table and "all NDCG@10" in table
    npz = np.load(Path(res["out_dir"]) / "per_user.npz")
    assert npz["cold_attr_tower|1|0|cold"].dtype == bool


@pytest.mark.slow
def test_a_cold_screen_trains_without_cold_items_and_never_scores_test(feast_env, tmp_path, monkeypatch):
    import ecaug_feast.study.cold as cold
    from ecaug_feast.study.protocol import make_protocol, read_file
    from ecaug_feast.study.run import run_study

    seen_targets: list[pd.DataFrame] = []
    written: dict[str, pd.DataFrame] = {}
    real_es, real_write = cold.make_eval_set, cold.write_private_state
    monkeypatch.setattr(cold, "make_eval_set", lambda t, ex: seen_targets.append(t) or real_es(t, ex))

    def write(state, name, train, valid, test, items, meta=None):
        written.update(train=train, meta=meta)
        repo = real_write(state, name, train, valid, test, items, meta)
        written["feast_train"] = pd.read_parquet(Path(state) / "feast" / "train_interactions.parquet")
        return repo

    monkeypatch.setattr(cold, "write_private_state", write)
    p = make_protocol(read_file(COLD_TINY), {"screen": True, "dataset": feast_env.data.name, "methods": ["cold_popularity", "cold_attr_tower"]})
    out = run_study(feast_env.state_dir, p, tmp_path / "screen")
    test_rows = set(map(tuple, feast_env.data.test[["user_id", "item_id"]].to_numpy().tolist()))
    valid_rows = set(map(tuple, feast_env.data.valid[["user_id", "item_id"]].to_numpy().tolist()))
    assert seen_targets and all(set(map(tuple, t[["user_id", "item_id"]].to_numpy().tolist())) <= valid_rows - test_rows
                                for t in seen_targets)
    assert all(r["scored_on"] == "choose" for r in out["runs"])
    table = (tmp_path / "screen" / "table.md").read_text()
    assert "validation (choose half)" in table and "test" not in table
    # the cell's training rows and its Feast sources hold no cold item
    from ecaug_feast.datasets.split import pick_cold_items

    cold_ids = pick_cold_items(feast_env.data.items["item_id"].to_numpy(), p.cold_frac, p.cold_seed)
    assert written["meta"]["cold_split"]["cold_items"] == len(cold_ids)
    assert not np.isin(written["train"]["item_id"], cold_ids).any()
    assert not np.isin(written["feast_train"]["item_id"], cold_ids).any()


@pytest.mark.slow
def test_the_gar_slot_writes_generated_rows(feast_env, tmp_path):
    pytest.importorskip("ecaug_feast.synth.item_gen", reason="the item generator (helper item-gen) has not landed")
    from ecaug_feast.study.protocol import make_protocol, read_file
    from ecaug_feast.study.run import run_study

    p = make_protocol(read_file(COLD_TINY), {"dataset": feast_env.data.name, "methods": ["cold_id_only", "cold_gar"],
                                             "item_generator": {"epochs": 2}})
    out = run_study(feast_env.state_dir, p, tmp_path / "gar")
    runs = {r["method"]: r for r in out["runs"]}
    gen = runs["cold_gar"]["pool"]["generator"]
    assert gen["generator"] == "gar" and gen["cold_items"] > 0 and gen["warm_items"] > 0
    assert runs["cold_gar"]["pool"]["epochs"] == runs["cold_id_only"]["pool"]["epochs"]  # one id-only model, trained once


def _fake_run(out: Path, seed: int, methods=("cold_id_only", "cold_attr_tower")) -> None:
    """A cold study's output for one seed, as run_study writes it (per-user arrays made up)."""
    from ecaug_feast.study.protocol import make_protocol, read_file
    from ecaug_feast.study.report import summarize_cold
    from ecaug_feast.study.run import write_outputs

    p = make_protocol(read_file(COLD_TINY), {"seeds": 1, "first_seed": seed, "methods": list(methods)})
    rng = np.random.default_rng(seed)
    users = np.arange(1, 41, dtype=np.int64)
    cold = np.arange(40) < 10
    rows = []
    for i, m in enumerate(methods):
        nd = rng.random(40) * (0.1 + 0.1 * i)
        rows.append({"fraction": 1.0, "seed": seed, "method": m, "model": "sequence", "scored_on": "test",
                     "metrics": {"ndcg@10": float(nd.mean()), "recall@10": float(nd.mean())},
                     "per_user": {"ndcg@10": nd, "recall@10": nd, "cold": cold}, "users": users})
    summary = {"protocol": p.to_json(), "command": f"run {seed}", "screen": False, "cold_items": True, "seconds": 1.0,
               "results": summarize_cold(rows, 100), "runs": [{k: v for k, v in r.items() if k not in ("per_user", "users")} for r in rows]}
    write_outputs(summary, rows, out)


def test_a_study_split_over_seeds_merges_into_one_report(tmp_path):
    from ecaug_feast.errors import EcaugError
    from ecaug_feast.study.run import merge_studies

    _fake_run(tmp_path / "s0", 0)
    _fake_run(tmp_path / "s1", 1)
    s = merge_studies([tmp_path / "s0", tmp_path / "s1"], tmp_path / "merged")
    # a new results folder (merge_study --out docs/results/NEW/beauty): its parent is made, no traceback
    assert merge_studies([tmp_path / "s0", tmp_path / "s1"], tmp_path / "new" / "beauty")["protocol"]["seed_list"] == [0, 1]
    assert s["protocol"]["seed_list"] == [0, 1] and s["protocol"]["first_seed"] == 0 and s["protocol"]["seeds"] == 2
    rows = {r["method"]: r for r in s["results"]}
    assert rows["cold_id_only"]["seeds"] == 2 and rows["cold_id_only"]["groups"]["cold"]["users"] == 10
    assert len(rows["cold_id_only"]["groups"]["cold"]["lift_vs_cold_attr_tower"]["seed_lifts"]) == 2
    assert "cold NDCG@10" in (tmp_path / "merged" / "table.md").read_text()
    with pytest.raises(EcaugError, match="more than one run"):
        merge_studies([tmp_path / "s0", tmp_path / "s0"], tmp_path / "twice")
    _fake_run(tmp_path / "other", 2, methods=("cold_id_only", "cold_attr_tower", "cold_popularity"))
    with pytest.raises(EcaugError, match="protocols differ"):
        merge_studies([tmp_path / "s0", tmp_path / "other"], tmp_path / "bad")
    # a method run in one seed only, when the runs may differ in methods: its row counts 1 seed
    m = merge_studies([tmp_path / "s0", tmp_path / "other"], tmp_path / "subset", methods_may_differ=True)
    rows = {r["method"]: r for r in m["results"]}
    assert rows["cold_popularity"]["seeds"] == 1 and rows["cold_id_only"]["seeds"] == 2
    assert m["protocol"]["methods_by_seed"] == {"0": ["cold_id_only", "cold_attr_tower"],
                                                "2": ["cold_id_only", "cold_attr_tower", "cold_popularity"]}
    assert m["protocol"]["methods"] == ["cold_id_only", "cold_attr_tower", "cold_popularity"]
