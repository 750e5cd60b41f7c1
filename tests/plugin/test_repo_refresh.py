"""Issue 31 item 5: drift and refresh of a shop's sequence runs, on the grocer's repo (UUID
shoppers, file offline store, real Feast and the session's real Redis, db 9).

``ecaug augment --repo R --events purchases --view shopper_behaviour`` builds the first run (a tiny
generator); the grocer then appends a month of new purchases to its own source (new shoppers,
the catalogue's tail now popular, new skus). ``ecaug drift --repo`` must see it; ``ecaug refresh
--repo`` must warm-start the generator and discriminator from the active run (the manifest names
the run and the saved weights' digests; the weights the generator starts from are the saved
ones, items matched by sku), publish a run whose gate passed, and leave the active run active when
the gate fails or publishing fails; ``runs rollback --repo`` still brings the previous run back."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest

from _grocer import write_grocer_repo
from _shop import ecaug_cli, feast_cli

pytestmark = pytest.mark.slow

TINY = {"gan": dict(embedding_dim=16, num_layers=1, num_heads=1, max_len=20, mle_epochs=2, adv_steps=4, adv_batch=16,
                    batch_size=32, gen_max_len=6, threads=1, device="cpu"),
        "expand_below": 6, "n_new": 3, "synthetic_share": 0.1, "c2st_rows": 500, "max_c2st_auc": 1.0}


def _append_new_month(repo: Path, shoppers: int = 120) -> pd.DataFrame:
    """A month of purchases after the log's end: new shoppers buying the tail of the catalogue and
    skus never sold before (behaviour the active run was not built on)."""
    path = repo / "data" / "purchases.parquet"
    old = pd.read_parquet(path)
    rng = np.random.default_rng(11)
    start = pd.Timestamp(old["bought_at"].max()) + timedelta(days=1)
    rows = []
    for n in range(shoppers):
        ref = f"00000000-0000-4000-8000-{n:012d}"
        at = start + timedelta(hours=float(rng.uniform(0, 48)))
        for _ in range(int(rng.integers(3, 9))):
            at += timedelta(hours=float(rng.uniform(2, 60)))
            rows.append({"shopper_ref": ref, "sku": f"sku-{int(rng.integers(250, 330)):04d}", "bought_at": at})
    new = pd.DataFrame(rows)
    new["bought_at"] = pd.to_datetime(new["bought_at"]).astype(old["bought_at"].dtype)
    pd.concat([old, new], ignore_index=True).to_parquet(path)
    return new


def _run(repo: Path, run_id: str) -> dict:
    return json.loads((repo / "data" / "ecaug_runs" / run_id / "manifest.json").read_text())


def _active(repo: Path) -> str:
    return (repo / "data" / "ecaug_runs" / "active").resolve().name


def test_drift_and_warm_refresh_of_a_shop_sequence_run(tmp_path: Path, redis_url: str, monkeypatch, capsys):
    import redis
    import torch
    from feast import FeatureStore

    from ecaug_feast.jobs.augment_events import prepare, training_histories
    from ecaug_feast.jobs.repo_refresh import repo_refresh, warm_start_of
    from ecaug_feast.synth.seq_gan import SeqGANConfig, SequenceGAN
    from ecaug_feast.synth_store import list_runs

    repo = write_grocer_repo(tmp_path / "grocer", redis_url, 9, shoppers=150, products=40, project="grocer_refresh")
    client = redis.Redis(host=urlparse(redis_url).hostname, port=urlparse(redis_url).port, db=9)
    client.flushdb()
    feast_cli(repo, ["apply"], monkeypatch)
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    code, out, err = ecaug_cli(["augment", "--repo", str(repo), "--events", "purchases", "--view", "shopper_behaviour",
                                "--config", str(tmp_path / "tiny.json"), "--json"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    first = json.loads(out.strip().splitlines()[-1])
    r1 = first["run_id"]
    assert first["activated"] and _active(repo) == r1
    model = Path(first["run_dir"]) / "model"
    assert {p.name for p in model.iterdir()} >= {"generator.pt", "discriminator.pt", "item_keys.json", "gan.json"}
    keys = json.loads((model / "item_keys.json").read_text())
    assert keys["dtype"] == "string" and set(keys["keys"]) <= set(pd.read_parquet(repo / "data" / "purchases.parquet")["sku"])
    m1 = _run(repo, r1)
    assert m1["lineage"]["fit_window"]["end"] and m1["lineage"]["views"] == ["shopper_behaviour"]

    drift = ["drift", "--repo", str(repo), "--events", "purchases", "--json"]
    code, out, err = ecaug_cli(drift, capsys, monkeypatch)  # nothing new yet: no verdict, not drift
    assert code == 0, err[-2000:]
    d0 = json.loads(out.strip().splitlines()[-1])
    assert d0["drifted"] is False and d0["rows"]["recent"] == 0 and "too few rows" in d0["reason"] and d0["active_run"] == r1

    new = _append_new_month(repo)
    code, out, err = ecaug_cli(drift, capsys, monkeypatch)
    assert code == 3, err[-2000:]  # a threshold crossed
    d1 = json.loads(out.strip().splitlines()[-1])
    assert d1["drifted"] and d1["rows"]["recent"] == len(new) and "new_item_share" in d1["crossed"], d1
    assert Path(d1["report"], "report.md").exists() and Path(d1["report"], "plots", "items.png").exists()
    assert "grocer_refresh" in d1["report"]  # <state>/repos/<project>/drift/<time>/

    code, out, err = ecaug_cli(["refresh", "--repo", str(repo), "--events", "purchases", "--json"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    ref = json.loads(out.strip().splitlines()[-1])
    r2 = ref["run_id"]
    assert ref["parent_run_id"] == r1 and ref["warm_started"] and ref["gate"] == "pass" and ref["activated"], ref
    assert _active(repo) == r2 and ref["drift"]["drifted"]
    assert Path(ref["drift"]["report"], "drift.json").exists() and not Path(ref["drift"]["report"], "plots").exists()
    m2 = _run(repo, r2)
    ws = m2["lineage"]["warm_start"]
    assert m2["lineage"]["parent_run_id"] == r1 and ws["run"] == r1
    assert ws["generator_sha256"] == hashlib.sha256((model / "generator.pt").read_bytes()).hexdigest()
    assert ws["discriminator_sha256"] == hashlib.sha256((model / "discriminator.pt").read_bytes()).hexdigest()
    g1, g2 = m1["metrics"]["generator"], m2["metrics"]["generator"]
    assert g2["warm_start"]["source"] == r1 and g2["warm_start"]["items_kept"] > 0 and g2["warm_start"]["items_new"] > 0
    assert g2["mle_epochs"] == 1 and g2["adversarial"]["steps"] == 10  # the short fit, not a full one
    assert "warm_start" not in g1 and g2["warm_start"]["discriminator"] is True
    syn = pd.read_parquet(Path(ref["run_dir"]) / "purchases_synth.parquet")
    assert syn["shopper_ref"].str.startswith(f"ecaug:{r2}:").all() and (syn["run_id"] == r2).all()
    rows = pd.read_parquet(Path(ref["run_dir"]) / "shopper_behaviour_synth.parquet")  # the view followed
    assert set(rows["shopper_ref"]) == set(syn["shopper_ref"]) and ref["materialized"]["shopper_behaviour_synth"] == len(rows)

    # the weights the generator starts from are the saved ones (rows matched by sku), before training continues
    inp = prepare(repo, "purchases", apply=False)
    th, _, item_keys = training_histories(inp.ev, "shopper_ref", "sku", "bought_at", 20)
    run1 = next(r for r in list_runs(repo / "data" / "ecaug_runs") if r.run_id == r1)
    warm_for, _ = warm_start_of(run1)
    warm = warm_for(item_keys)
    cfg = SeqGANConfig(**{**TINY["gan"], "mle_epochs": 0, "adversarial": False})
    gan = SequenceGAN(cfg).fit(th.histories.values, th.histories.offsets, warm=warm)
    saved = torch.load(model / "generator.pt", weights_only=True)
    now = gan.gen.state_dict()
    for k, v in saved.items():
        if k != "tok.weight":
            assert torch.equal(now[k], v), k
    old_tok = {key: i + 1 for i, key in enumerate(keys["keys"])}  # saved token of each sku
    new_tok = {item_keys[int(i)]: j + 1 for j, i in enumerate(gan.vocab)}
    both = sorted(set(old_tok) & set(new_tok))
    assert len(both) == gan.report["warm_start"]["items_kept"] > 0
    for key in both:
        assert torch.equal(now["tok.weight"][new_tok[key]], saved["tok.weight"][old_tok[key]]), key
    assert torch.equal(now["tok.weight"][len(gan.vocab) + 1], saved["tok.weight"][len(keys["keys"]) + 1])  # EOS

    # a failed gate: the new run stays on disk, the active run stays active
    code, out, err = ecaug_cli(["refresh", "--repo", str(repo), "--events", "purchases", "--force", "--max-c2st", "0.01",
                                "--json"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    bad = json.loads(out.strip().splitlines()[-1])
    assert bad["gate"] == "fail" and not bad["activated"] and bad["parent_run_id"] == r2 and _active(repo) == r2
    assert _run(repo, bad["run_id"])["gate"] == "fail"

    # a failure while publishing: the active run stays active (and its rows online)
    store = FeatureStore(repo_path=str(repo))
    some = rows["shopper_ref"].iloc[0]

    def boom() -> None:
        raise RuntimeError("publish interrupted")

    with pytest.raises(RuntimeError, match="publish interrupted"):
        repo_refresh(repo, "purchases", force=True, hooks={"before_publish": boom})
    assert _active(repo) == r2
    got = store.get_online_features(features=["shopper_behaviour_synth:run_id"], entity_rows=[{"shopper_ref": some}]).to_dict()
    assert got["run_id"] == [r2]

    # rollback still works: the previous gate-passing run comes back, online rows included
    code, out, err = ecaug_cli(["runs", "rollback", "--repo", str(repo), "--json"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    assert _active(repo) == r1
    got = store.get_online_features(features=["shopper_behaviour_synth:run_id"], entity_rows=[{"shopper_ref": some}]).to_dict()
    assert got["run_id"] == [None]


def test_the_shops_trained_recommender_is_the_teacher(tmp_path: Path, redis_url: str, ecaug_home: Path, monkeypatch, capsys):
    """With a model `ecaug train --repo` wrote, augment (and a refresh of its run) draw the
    continuations from it, items matched by sku; --no-teacher skips it; the lineage says which."""
    import torch

    from ecaug_feast.jobs.augment_events import load_repo_teacher

    repo = write_grocer_repo(tmp_path / "grocer", redis_url, 12, shoppers=150, products=40, project="grocer_teacher")
    feast_cli(repo, ["apply"], monkeypatch)
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    aug = ["augment", "--repo", str(repo), "--events", "purchases", "--config", str(tmp_path / "tiny.json"), "--json"]
    code, out, err = ecaug_cli(aug, capsys, monkeypatch)  # no model yet: no teacher, and why
    assert code == 0, err[-2000:]
    m0 = _run(repo, json.loads(out.strip().splitlines()[-1])["run_id"])
    assert "teacher" not in m0["lineage"] and m0["lineage"]["teacher_choice"].startswith("no trained recommender at")

    code, out, err = ecaug_cli(["train", "--repo", str(repo), "--events", "purchases", "--epochs", "1", "--batch-size", "32",
                                "--dim", "16", "--json"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    ckpt = ecaug_home / "repos" / "grocer_teacher" / "models" / "real"
    code, out, err = ecaug_cli([*aug, "--no-teacher"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    m1 = _run(repo, json.loads(out.strip().splitlines()[-1])["run_id"])
    assert "teacher" not in m1["lineage"] and m1["lineage"]["teacher_choice"] == "--no-teacher"

    code, out, err = ecaug_cli(aug, capsys, monkeypatch)
    assert code == 0, err[-2000:]
    res = json.loads(out.strip().splitlines()[-1])
    m2 = _run(repo, res["run_id"])
    assert res["teacher"] == str(ckpt) and m2["lineage"]["teacher"]["checkpoint"] == str(ckpt)
    assert m2["lineage"]["teacher_choice"].startswith(f"default: {ckpt}")
    assert m2["lineage"]["teacher"]["items_known"] == m2["lineage"]["teacher"]["items"] > 0  # every sku known to the model
    # the teacher's settings under the --config file's: continuations (forward), 3 expansions per short history
    assert m2["config"]["seq_config"]["gan"]["reverse"] is False and m2["config"]["seq_config"]["expansions"] == 3
    # what the study measured (distill_priors): its size rule, no adversarial stage, the lineage says so
    assert m2["config"]["seq_config"]["match_size"] is True and m2["lineage"]["recipe"].startswith("distill_priors")
    assert "refinement" not in m2["lineage"]["teacher"] and m2["config"]["seq_config"]["keep"] == "random"
    assert m2["metrics"]["pool_size"] > 0 and m2["metrics"]["accepted"] <= m2["metrics"]["pool_size"]
    assert m1["config"]["seq_config"]["gan"]["reverse"] is True and m1["config"]["seq_config"]["expansions"] == 1

    _append_new_month(repo, shoppers=60)
    code, out, err = ecaug_cli(["refresh", "--repo", str(repo), "--events", "purchases", "--force", "--json"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    ref = json.loads(out.strip().splitlines()[-1])
    m3 = _run(repo, ref["run_id"])
    assert ref["warm_started"] and m3["lineage"]["parent_run_id"] == res["run_id"]
    assert m3["lineage"]["teacher"]["checkpoint"] == str(ckpt) and m3["lineage"]["teacher_choice"].startswith("default:")
    assert m3["lineage"]["teacher"]["items_known"] < m3["lineage"]["teacher"]["items"]  # the new skus: unknown to the model

    # the scorer over a run's ids: a sku the model does not know is never drawn
    keys = np.array([None, "sku-0001", "no-such-sku", "sku-0002"], dtype=object)
    teacher = load_repo_teacher(ckpt, keys, "test")
    s = teacher.score(np.array([1, 2, 3], np.int64), np.array([0, 2, 3], np.int64))
    assert s.shape == (2, 4) and torch.isinf(s[:, [0, 2]]).all() and torch.isfinite(s[:, [1, 3]]).all()

    # the adversarial stage and the discriminator's selection on the shop's repo (config refine +
    # keep), as on ecaug's own: the model refined in its own item numbering (the new skus left out),
    # the kept histories the discriminator's highest, the lineage names the recipe and the stage
    (tmp_path / "disc.json").write_text(json.dumps({**TINY, "keep": "discriminator", "refine": {
        "steps": 3, "prompts": 16, "samples": 2, "d_warmup": 5, "d_batch": 32, "d_dim": 8}}))
    code, out, err = ecaug_cli([*aug[:5], "--config", str(tmp_path / "disc.json"), "--json"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    m4 = _run(repo, json.loads(out.strip().splitlines()[-1])["run_id"])
    assert m4["lineage"]["recipe"] == "gan_disc_select, changed by --config/--steps"
    assert m4["lineage"]["teacher"]["refinement"]["steps"] == 3
    assert m4["metrics"]["kept_by"] == "discriminator" and m4["metrics"]["accepted"] == m4["metrics"]["pool_size"] > 0
    assert m4["config"]["seq_config"]["keep"] == "discriminator" and m4["config"]["seq_config"]["refine"]["steps"] == 3
    (tmp_path / "bad.json").write_text(json.dumps({"keep": "discriminator"}))  # without refine
    code, out, err = ecaug_cli([*aug[:5], "--config", str(tmp_path / "bad.json")], capsys, monkeypatch)
    assert code == 2 and "bad.json" in err and "needs refine" in err and "Traceback" not in err
