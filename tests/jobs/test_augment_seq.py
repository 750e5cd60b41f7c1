"""``ecaug augment --generator sequence`` and ``ecaug finetune --mix-ratio`` on a sequence checkpoint,
on real parts: the session's Feast repo (duckdb offline store) and embedded Redis (tests/conftest.py).

The runs share the session's state with other tests (another module may have activated a run
before): assertions compare with the state found at the start, never with a fresh one.
"""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from ecaug_feast.errors import EcaugError
from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE

pytestmark = pytest.mark.slow

# a GAN small enough for seconds on 2 shared cores (the knobs go through the job's config)
TINY_GAN = dict(embedding_dim=16, num_layers=1, num_heads=1, max_len=20, mle_epochs=2, adv_steps=4, adv_batch=16,
                batch_size=32, gen_max_len=6, threads=1, device="cpu")
TINY = dict(gan=TINY_GAN, expand_below=4, n_new=3, synthetic_share=0.1, c2st_rows=500)
SYNTH_TS = {b"_ts:user_features_synth", b"_ts:interactions_synth"}


@pytest.fixture(autouse=True)
def _quiet():
    for name in ("torchrec", "root", "fbgemm_gpu"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def _redis(url: str):
    import redis

    return redis.Redis.from_url(url)


def _dump(url: str) -> dict[bytes, bytes]:
    r = _redis(url)
    return {k: r.dump(k) for k in r.scan_iter(count=1000)}


def _is_synthetic_key(r, key: bytes) -> bool:
    return {f for f in r.hkeys(key) if f.startswith(b"_ts:")} <= SYNTH_TS


def _redis_user_ids(store, ids) -> list[bytes]:
    """Feast's own Redis keys of ``ids`` (the key function Feast writes with)."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    online = store._get_provider().online_store
    ek = [EntityKey(join_keys=["user_id"], entity_values=[Value(int64_val=int(u))]) for u in ids]
    return online._generate_redis_keys_for_entities(store.config, ek)


@pytest.fixture(scope="module")
def published(feast_env, tmp_path_factory):
    """One passing sequence run through the job (tiny GAN, gate at 1.0), with the in-memory result."""
    from ecaug_feast import synth_store
    from ecaug_feast.jobs.augment_seq import load_training_histories, seq_config, write_sequence_run
    from ecaug_feast.jobs.workspace import Workspace
    from ecaug_feast.synth.seq_pipeline import augment_histories

    ws = Workspace.from_env(repo=feast_env.repo_dir)
    r = _redis(feast_env.redis_url)
    before = {k: v for k, v in _dump(feast_env.redis_url).items() if not _is_synthetic_key(r, k)}
    parent = synth_store.active_run()
    earlier = [x.run_id for x in synth_store.list_runs() if x.manifest.get("gate") == "pass"]
    cfg = seq_config({**TINY, "max_c2st_auc": 1.0}, seed=0)
    th = load_training_histories(ws, cfg.gan.max_len)
    figures = tmp_path_factory.mktemp("seq-figures")  # as augment_seq_run does, with the result kept
    res = augment_histories(th.histories.values, th.histories.offsets, cfg, report_dir=figures)
    out = write_sequence_run(ws, res, th, cfg, figures=figures)
    return dict(ws=ws, cfg=cfg, th=th, res=res, out=out, real_before=before, parent=parent, earlier=earlier)


def test_the_generator_reads_only_training_events(feast_env, published):
    """The histories the generator is fitted on are each user's TRAINING events (newest max_len, in
    order), read through Feast; items that occur only in validation/test reach neither the
    generator's vocabulary nor any accepted history."""
    th, res, cfg = published["th"], published["res"], published["cfg"]
    data = feast_env.data
    held_out = (set(data.valid["item_id"]) | set(data.test["item_id"])) - set(data.train["item_id"])
    assert held_out, "the split should plant items seen only after training (the check could not fail otherwise)"
    train = data.train.sort_values(["user_id", "event_timestamp"], kind="stable")
    by_user = {int(u): g["item_id"].to_numpy()[-cfg.gan.max_len:] for u, g in train.groupby("user_id")}
    assert sorted(int(u) for u in th.histories.user_ids) == sorted(by_user)
    for u, h in zip(th.histories.user_ids, th.histories.to_lists()):
        assert np.array_equal(h, by_user[int(u)]), u
    assert not held_out & set(res.gan.vocab.tolist())
    assert res.histories and not held_out & set(np.concatenate(res.histories).tolist())


def test_a_passing_run_is_published_in_its_own_key_space(feast_env, published):
    from ecaug_feast import synth_store

    out, res = published["out"], published["res"]
    assert out["gate"] == "pass" and out["activated"], out
    assert out["rows_accepted"] == len(res.histories) > 0
    assert synth_store.active_run() == out["run_id"]
    run = synth_store.load_run(out["run_id"])
    lin = run.manifest["lineage"]
    assert lin["generator"] == "sequence" and lin["parent_run"] == published["parent"] and lin["seed"] == 0
    assert lin["fit_window"]["positive_rows"] == len(feast_env.data.train)
    assert (run.path / "plots" / "sequences.png").exists() and (run.path / "report.md").exists()
    assert (run.path / "model" / "generator.pt").exists()

    users, inter = run.user_features(), run.interactions()
    start = synth_store.user_id_start(run.manifest["seq"])
    ids = np.unique(inter["user_id"])
    assert len(ids) == len(res.histories) and ids.min() >= start >= SYNTHETIC_USER_ID_BASE
    assert ids.max() < start + synth_store.RUN_ID_SPACE
    assert set(users["user_id"]) == set(ids)
    assert (inter["label"] == 1).all() and len(inter) == sum(len(h) for h in res.histories)
    conf = inter.groupby("user_id")["confidence"].first().sort_index().to_numpy()
    np.testing.assert_allclose(conf, np.asarray(res.confidence, np.float32), rtol=1e-6)
    # features follow behaviour: the serving row's history is the generated one, most recent first
    last = users.sort_values(["user_id", "event_timestamp"], kind="stable").groupby("user_id").tail(1)
    for (_, row), h in zip(last.sort_values("user_id").iterrows(), res.histories):
        assert list(row["recent_items"]) == h[::-1].tolist()
        assert row["n_interactions"] == len(h)

    # Redis: every synthetic user of the run is there, under its own key; every real key unchanged
    r = _redis(feast_env.redis_url)
    keys = _redis_user_ids(feast_env.store, ids)
    assert all(r.exists(k) for k in keys)
    assert all(_is_synthetic_key(r, k) for k in keys)
    after = _dump(feast_env.redis_url)
    for k, blob in published["real_before"].items():
        assert after.get(k) == blob
    assert out["materialized"]["user_features_synth"] == len(ids)
    got = feast_env.store.get_online_features(features=["user_features_synth:recent_items"],
                                              entity_rows=[{"user_id": int(ids[0])}]).to_dict()
    assert list(got["recent_items"][0]) == res.histories[0][::-1].tolist()


def test_histories_read_through_feast_equal_the_accepted_histories(published):
    """Parity: what fine-tuning reads from the offline store (user_features_synth, point in time)
    is the run's in-memory accepted histories, in order; the pandas path over the run's file too."""
    from ecaug_feast.jobs.finetune import synthetic_histories

    ws, res, out = published["ws"], published["res"], published["out"]
    via_feast, rid = synthetic_histories(ws, None, "feast")
    in_files, _ = synthetic_histories(ws, out["run_id"], "memory")
    assert rid == out["run_id"]
    assert [h.tolist() for h in via_feast] == [h.tolist() for h in res.histories]
    assert [h.tolist() for h in in_files] == [h.tolist() for h in res.histories]


def _base_checkpoint(ws, dataset: str) -> None:
    """A freshly initialised sequence checkpoint ``seqpub-base`` (training it first adds minutes on
    a busy machine and nothing to what is checked here: the fine-tune's input)."""
    from ecaug_feast.jobs.train import load_real
    from recommender.checkpoint import named_dir, save_checkpoint
    from recommender.seq_model import SeqTwoTower
    from recommender.seq_train import catalog_of, seq_config_for

    data, _, _ = load_real(ws, dataset, "feast", examples=False)
    cfg = seq_config_for(data, embedding_dim=16)
    model = SeqTwoTower(cfg, catalog=catalog_of(data))
    save_checkpoint(named_dir("seqpub-base"), model.state_dict(), cfg, model.catalog, data={"dataset": dataset})


def test_finetune_a_sequence_checkpoint_on_the_run(feast_env, published):
    from ecaug_feast.cli.main import app
    from recommender.checkpoint import load_checkpoint

    _base_checkpoint(published["ws"], feast_env.data.name)
    r = CliRunner().invoke(app, ["finetune", "--from", "seqpub-base", "--protocol", "finetune", "--mix-ratio", "0.05", "--epochs",
                                 "1", "--dataset", feast_env.data.name, "--name", "seqpub-mixed", "--json"])
    assert r.exit_code == 0, r.output
    ft = json.loads(r.stdout.strip().splitlines()[-1])
    n_real = feast_env.data.train["user_id"].nunique()
    want = min(int(round(0.05 * n_real)), published["out"]["rows_accepted"])
    assert ft["model"] == "sequence" and ft["run_id"] == published["out"]["run_id"]
    assert ft["synthetic_histories"] == want > 0
    _, meta = load_checkpoint("seqpub-mixed")
    assert meta["data"]["run_id"] == published["out"]["run_id"] and meta["data"]["histories"] == n_real + want


def test_finetune_refuses_a_column_run(feast_env, published):
    """A run of the column GAN (feature rows, <= 3 recent items) is no history pool: one-line error."""
    from ecaug_feast.cli.main import app
    from ecaug_feast.jobs.augment import augment_run
    from ecaug_feast.quality.gates import GateConfig
    from ecaug_feast.synth.gan import GANConfig
    from ecaug_feast.synth.pipeline import AugmentConfig

    cfg = AugmentConfig(gan=GANConfig(max_steps=50, eval_every=25, calib_rows=1000), max_fit_rows=1500, holdout_rows=300,
                        gates=GateConfig(max_c2st_auc=1.0, min_column_shapes=0.0, min_pair_trends=0.0, c2st_rows=500))
    _base_checkpoint(published["ws"], feast_env.data.name)  # its own base: not the test before's
    col = augment_run(published["ws"], rows=100, seed=1, config=cfg, publish=False)
    r = CliRunner().invoke(app, ["finetune", "--from", "seqpub-base", "--run", col["run_id"], "--mix-ratio", "0.5",
                                 "--dataset", feast_env.data.name])
    assert isinstance(r.exception, EcaugError) and r.exception.exit_code == 2, r.output
    msg = str(r.exception)
    assert "column GAN" in msg and "\n" not in msg


def test_a_teachers_run_continues_real_histories(feast_env, published, tmp_path):
    """``augment --teacher CHECKPOINT``: the run's expansions are real training histories continued
    by 2 items (the teacher's defaults: 3 expansions of each short history, no whole synthetic
    users), and its lineage names the teacher. Not published: the active run stays."""
    from ecaug_feast import synth_store
    from ecaug_feast.cli.main import app
    from recommender.checkpoint import resolve

    _base_checkpoint(published["ws"], feast_env.data.name)
    active = synth_store.active_run()
    conf = tmp_path / "teacher.json"
    conf.write_text(json.dumps({"gan": TINY_GAN, "expand_below": 4, "c2st_rows": 500, "max_c2st_auc": 1.0}))
    r = CliRunner().invoke(app, ["augment", "--generator", "sequence", "--teacher", "seqpub-base", "--config", str(conf),
                                 "--no-publish", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["teacher"] == str(resolve("seqpub-base")) and not out["activated"] and synth_store.active_run() == active
    th = published["th"]
    lens = th.histories.lengths
    # the study's size rule (match_size): 5 draws of each short history, 3 kept of what passed
    short = int(((lens >= 1) & (lens < 4)).sum())
    assert out["expanded"] == 5 * short > 0 and out["synthetic"] == 0 and 0 < out["rows_accepted"] <= 3 * short
    run = synth_store.load_run(out["run_id"])
    assert run.manifest["lineage"]["teacher"]["checkpoint"] == out["teacher"]
    gan_cfg = run.manifest["config"]
    assert gan_cfg["n_new"] == 2 and gan_cfg["expansions"] == 3 and gan_cfg["gan"]["reverse"] is False and gan_cfg["match_size"]
    assert run.manifest["metrics"]["pool_size"] == 3 * short
    real = {tuple(h.tolist()) for h in th.histories.to_lists()}
    inter = run.interactions().sort_values(["user_id", "event_timestamp"], kind="stable")
    hists = [g["item_id"].tolist() for _, g in inter.groupby("user_id")]
    assert len(hists) == out["rows_accepted"] > 0
    assert all(tuple(h[:-2]) in real and len(h[:-2]) < 4 for h in hists)  # a short real history, then 2 new items


def test_a_refined_teachers_run_records_the_adversarial_stage(feast_env, published, tmp_path):
    """``augment --teacher`` with config ``refine``: the teacher is refined against the discriminator
    before it continues the short histories (the continuations differ from the unrefined
    teacher's, same seed), and the run's lineage and summary carry the stage's report. The stage
    without a teacher, or on a pool that draws nothing from one: one line, exit 2."""
    from ecaug_feast import synth_store
    from ecaug_feast.cli.main import app

    _base_checkpoint(published["ws"], feast_env.data.name)
    # kept at random in both (keep: discriminator would need the stage in both)
    base = {"gan": TINY_GAN, "expand_below": 4, "c2st_rows": 500, "max_c2st_auc": 1.0, "keep": "random"}
    outs = []
    for refine in (None, {"steps": 4, "d_warmup": 2, "prompts": 8, "d_batch": 32, "lr": 0.05, "beta": 0.0}):
        conf = tmp_path / "teacher.json"
        conf.write_text(json.dumps({**base, "refine": refine}))
        r = CliRunner().invoke(app, ["augment", "--generator", "sequence", "--teacher", "seqpub-base", "--config", str(conf),
                                     "--no-publish", "--json"])
        assert r.exit_code == 0, r.output
        outs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    plain, refined = outs
    assert plain["refinement"] is None
    rep = refined["refinement"]
    assert rep["steps"] == 4 and rep["episodes"] > 0 and rep["n_new"] == 2 and rep["prompt_below"] == 4
    run = synth_store.load_run(refined["run_id"])
    assert run.manifest["lineage"]["teacher"]["refinement"]["steps"] == 4
    assert run.manifest["config"]["refine"]["steps"] == 4

    def items(run_id):
        inter = synth_store.load_run(run_id).interactions()
        return sorted(map(tuple, inter.sort_values(["user_id", "event_timestamp"], kind="stable").groupby("user_id")["item_id"]
                          .apply(tuple).tolist()))
    assert items(plain["run_id"]) != items(refined["run_id"])  # the refined teacher drew other items
    conf = tmp_path / "refine.json"
    conf.write_text(json.dumps({**base, "refine": {"steps": 2}}))
    for args, want in ((["--config", str(conf)], "refines a --teacher"),):
        r = CliRunner().invoke(app, ["augment", "--generator", "sequence", *args])
        assert isinstance(r.exception, EcaugError) and r.exception.exit_code == 2, (args, r.output)
        assert want in str(r.exception) and "\n" not in str(r.exception), str(r.exception)


def test_one_process_refines_a_teacher_once_with_the_same_result(feast_env, published, tmp_path):
    """Pools built in one process from the same teacher and stage settings (the study's
    gan_augmented, gan_no_labeler, gan_disc_select) share one refinement: the second run says it
    reused it, and draws exactly what a fresh refinement draws (the stage is seeded). Other stage
    settings refine again."""
    from ecaug_feast import synth_store
    from ecaug_feast.cli.main import app
    from ecaug_feast.jobs import augment_seq

    _base_checkpoint(published["ws"], feast_env.data.name)
    base = {"gan": TINY_GAN, "expand_below": 4, "c2st_rows": 500, "max_c2st_auc": 1.0}
    stage = {"steps": 3, "d_warmup": 2, "prompts": 8, "d_batch": 32, "lr": 0.05, "beta": 0.0}

    def run(refine):
        conf = tmp_path / "teacher.json"
        conf.write_text(json.dumps({**base, "refine": refine}))
        r = CliRunner().invoke(app, ["augment", "--generator", "sequence", "--teacher", "seqpub-base", "--config", str(conf),
                                     "--no-publish", "--json"])
        assert r.exit_code == 0, r.output
        out = json.loads(r.stdout.strip().splitlines()[-1])
        inter = synth_store.load_run(out["run_id"]).interactions().sort_values(["user_id", "event_timestamp"], kind="stable")
        return out["refinement"], sorted(inter.groupby("user_id")["item_id"].apply(tuple).tolist())

    augment_seq._LAST_REFINED.clear()
    first, items_first = run(stage)
    again, items_again = run(stage)
    assert "reused_in_process" not in first and again["reused_in_process"] is True
    augment_seq._LAST_REFINED.clear()
    fresh, items_fresh = run(stage)
    assert "reused_in_process" not in fresh and items_again == items_fresh == items_first
    other, _ = run({**stage, "seed": 1})
    assert "reused_in_process" not in other


def test_teacher_input_is_checked_in_one_line(feast_env, published, tmp_path):
    """A teacher of another catalogue, a reversed generator with a teacher, and --teacher with the
    column generator: one line each, exit 2, before any generator is fitted."""
    from dataclasses import replace

    from ecaug_feast.cli.main import app
    from ecaug_feast.jobs.train import load_real
    from recommender.checkpoint import named_dir, save_checkpoint
    from recommender.seq_model import SeqTwoTower
    from recommender.seq_train import catalog_of, seq_config_for

    data, _, _ = load_real(published["ws"], feast_env.data.name, "feast", examples=False)
    cfg = seq_config_for(data, embedding_dim=8)
    cfg = replace(cfg, num_items=cfg.num_items + 5)  # another catalogue
    save_checkpoint(named_dir("seqpub-other"), SeqTwoTower(cfg).state_dict(), cfg, catalog_of(data))
    rev = tmp_path / "rev.json"
    rev.write_text(json.dumps({"gan": {**TINY_GAN, "reverse": True}}))
    for args, want in ((["--teacher", "seqpub-other"], "scores"), (["--teacher", "seqpub-base", "--config", str(rev)], "forward"),
                       (["--teacher", "seqpub-nope"], "not found")):
        r = CliRunner().invoke(app, ["augment", "--generator", "sequence", *args])
        assert isinstance(r.exception, EcaugError) and r.exception.exit_code == 2, (args, r.output)
        assert want in str(r.exception) and "\n" not in str(r.exception), str(r.exception)
    r = CliRunner().invoke(app, ["augment", "--generator", "column", "--teacher", "seqpub-base"])
    assert isinstance(r.exception, EcaugError) and "--teacher goes with the sequence generator" in str(r.exception)


def test_finetune_pretrain_protocol_trains_fresh_on_the_mix_then_on_real(feast_env, published, monkeypatch):
    """``finetune --protocol pretrain``: a fresh model (no initial state) on real + the run's
    histories, then that model (its state) on the real histories alone; both reported and saved."""
    import recommender.seq_train as st
    from ecaug_feast.cli.main import app
    from recommender.checkpoint import load_checkpoint

    _base_checkpoint(published["ws"], feast_env.data.name)
    calls = []
    real_train = st.train_seq

    def spy(data, valid, cfg, tcfg, init_state=None, progress=None, histories=None):
        calls.append((init_state is None, len(histories.user_ids)))
        return real_train(data, valid, cfg, tcfg, init_state=init_state, progress=progress, histories=histories)

    monkeypatch.setattr(st, "train_seq", spy)
    r = CliRunner().invoke(app, ["finetune", "--from", "seqpub-base", "--protocol", "pretrain", "--mix-ratio", "0.05", "--epochs", "1",
                                 "--dataset", feast_env.data.name, "--name", "seqpub-pt", "--json"])
    assert r.exit_code == 0, r.output
    ft = json.loads(r.stdout.strip().splitlines()[-1])
    n_real = feast_env.data.train["user_id"].nunique()
    want = min(int(round(0.05 * n_real)), published["out"]["rows_accepted"])
    assert calls == [(True, n_real + want), (False, n_real)], calls
    assert ft["protocol"] == "pretrain" and ft["synthetic_histories"] == want > 0 and "ndcg@10" in ft["valid_pretrain"]
    _, meta = load_checkpoint("seqpub-pt")
    assert meta["data"]["protocol"] == "pretrain" and "valid_pretrain" in meta["metrics"]
    assert meta["data"]["pretrain_train"]["epochs"] >= 1 and meta["train"]["epochs"] == 1  # both stages' budgets
    assert meta["train"]["loss"] == meta["data"]["pretrain_train"]["loss"] == "full"  # the loss that ran ("auto" resolved)
    # no run (the study's real_twice control): both stages read the real histories alone
    calls.clear()
    r = CliRunner().invoke(app, ["finetune", "--from", "seqpub-base", "--protocol", "pretrain", "--mix-ratio", "0", "--epochs", "1",
                                 "--dataset", feast_env.data.name, "--name", "seqpub-twice", "--json"])
    assert r.exit_code == 0, r.output
    assert calls == [(True, n_real), (False, n_real)], calls
    assert json.loads(r.stdout.strip().splitlines()[-1])["synthetic_histories"] == 0


def test_rollback_restores_the_parent(feast_env, published):
    from ecaug_feast import synth_store
    from ecaug_feast.cli.main import app

    out = published["out"]
    assert synth_store.active_run() == out["run_id"]
    r = CliRunner().invoke(app, ["runs", "rollback", "--json"])
    assert r.exit_code == 0, r.output
    rb = json.loads(r.stdout.strip().splitlines()[-1])
    prev = published["earlier"][-1] if published["earlier"] else None
    assert rb["previous"] == out["run_id"] and rb["active"] == prev == synth_store.active_run()
    ids = np.unique(synth_store.load_run(out["run_id"]).interactions()["user_id"])
    red = _redis(feast_env.redis_url)
    assert not any(red.exists(k) for k in _redis_user_ids(feast_env.store, ids))  # the run's keys left Redis
    after = _dump(feast_env.redis_url)
    for k, blob in published["real_before"].items():
        assert after.get(k) == blob
    listed = CliRunner().invoke(app, ["runs", "show", out["run_id"], "--json"])
    assert json.loads(listed.stdout.strip().splitlines()[-1])["lineage"]["generator"] == "sequence"


def test_feature_rows_are_gated_too(feast_env, published):
    """Histories that passed their gate, but feature rows over the bar: the run fails, says why,
    and is not activated (the active run stays the published one)."""
    from dataclasses import replace

    from ecaug_feast import synth_store
    from ecaug_feast.jobs.augment_seq import write_sequence_run

    res, cfg = published["res"], published["cfg"]
    assert res.metrics["gate"] == "pass"
    active = synth_store.active_run()
    out = write_sequence_run(published["ws"], res, published["th"], replace(cfg, max_c2st_auc=0.0))
    assert out["gate"] == "fail" and not out["activated"], out
    assert any("feature rows" in r for r in out["gate_reasons"]) and out["c2st_auc"] > 0.0
    assert synth_store.load_run(out["run_id"]).manifest["gate"] == "fail"
    assert synth_store.active_run() == active


def test_cli_json_keys_and_a_failed_gate_is_not_activated(feast_env, tmp_path):
    """``augment --generator sequence --json`` with a strict gate: the run is written, not activated."""
    from ecaug_feast import synth_store
    from ecaug_feast.cli.main import app

    active = synth_store.active_run()
    keys_before = set(_dump(feast_env.redis_url))
    conf = tmp_path / "tiny.json"
    conf.write_text(json.dumps(TINY))
    r = CliRunner().invoke(app, ["augment", "--generator", "sequence", "--config", str(conf), "--max-c2st", "0.0",
                                 "--seed", "2", "--json"])
    assert r.exit_code == 1, r.output  # a failed gate exits 1, as column runs do
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for k in ("run_id", "gate", "gate_reasons", "c2st_auc", "rows_generated", "rows_accepted", "activated",
              "c2st_auc_sequences", "catalogue_coverage", "tail_share"):
        assert k in out, k
    assert out["gate"] == "fail" and not out["activated"] and out["gate_reasons"]
    assert 0.0 <= out["catalogue_coverage"] <= 1.0 and 0.0 <= out["tail_share"] <= 1.0
    assert synth_store.active_run() == active
    assert set(_dump(feast_env.redis_url)) == keys_before
    run = synth_store.load_run(out["run_id"])  # on disk, for inspection
    assert run.manifest["gate"] == "fail" and run.manifest["lineage"]["seed"] == 2
    with pytest.raises(EcaugError, match="failed its quality gate"):
        synth_store.activate(out["run_id"])


def test_bad_input_is_one_line(tmp_path, monkeypatch):
    """No ingested data, and Feast sources without a single history: one line, exit 2."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ecaug_feast import schema as S
    from ecaug_feast.jobs.augment_seq import load_training_histories, seq_config
    from ecaug_feast.jobs.workspace import Workspace

    monkeypatch.setenv("ECAUG_HOME", str(tmp_path))
    ws = Workspace.from_env()
    with pytest.raises(EcaugError, match="train_interactions.parquet: missing") as e:
        load_training_histories(ws)
    assert e.value.exit_code == 2
    (tmp_path / "feast").mkdir()
    neg = pd.DataFrame({"user_id": [1, 2], "item_id": [3, 4], "event_timestamp": pd.to_datetime([0, 1], unit="s", utc=True),
                        "label": [0, 0]})
    pq.write_table(pa.Table.from_pandas(neg, schema=S.TRAIN_SCHEMA, preserve_index=False),
                   tmp_path / "feast" / "train_interactions.parquet")
    pq.write_table(S.ITEM_SCHEMA.empty_table(), tmp_path / "feast" / "item_features.parquet")
    with pytest.raises(EcaugError, match="0 users with training events") as e:
        load_training_histories(ws)
    assert e.value.exit_code == 2 and "\n" not in str(e.value)
    with pytest.raises(EcaugError, match="unknown SeqGANConfig field"):
        seq_config({"gan": {"nope": 1}})
    with pytest.raises(EcaugError, match="epsilon must be in") as e:
        seq_config({"gan": {"epsilon": 1.0}})
    assert "\n" not in str(e.value)


def test_augment_before_apply_is_one_line(tmp_path, monkeypatch):
    """Ingested but never applied (no `ecaug apply`): one line naming the repo and the fix, exit 2,
    not Feast's FeatureViewNotFoundException traceback."""
    from ecaug_feast.datasets import load_dataset, subset_users
    from ecaug_feast.features.ingest import ingest_dataset
    from ecaug_feast.jobs.augment_seq import load_training_histories
    from ecaug_feast.jobs.workspace import Workspace

    monkeypatch.setenv("ECAUG_HOME", str(tmp_path))
    ingest_dataset(subset_users(load_dataset("beauty"), 60))
    with pytest.raises(EcaugError, match="run `ecaug apply` first") as e:
        load_training_histories(Workspace.from_env())
    assert e.value.exit_code == 2 and "\n" not in str(e.value) and "feature_store.yaml" in str(e.value)


def test_discriminator_rank_reads_histories_in_the_models_numbering():
    """keep 'discriminator' on a shop's repo: a history's items map to the discriminator's indices
    (an unknown item, 0, left out of the prompt); a continuation with an unknown item is never kept
    first; a bad keep is one line."""
    from ecaug_feast.errors import EcaugError
    from ecaug_feast.jobs.augment_seq import discriminator_rank, seq_config
    from ecaug_feast.synth.seq_pipeline import SeqAugmentResult

    seen = {}

    def disc(prompts, cont):
        seen["prompts"], seen["cont"] = prompts, cont
        return torch.from_numpy(cont[:, -1].astype(np.float32))  # "realness": the last item's index

    disc.eval = lambda: None
    cfg = seq_config({"n_new": 2, "expand_below": 4, "match_size": True, "keep": "discriminator", "refine": {"steps": 1}})
    to_model = np.array([0, 5, 0, 7, 9], np.int64)  # run id 2 unknown to the model
    # mapped: [5 0 | 7 9], [0 5 | 7 9]... history 3 continues with the unknown item, history 4 has no known prompt
    hists = [np.array([1, 2, 3, 4]), np.array([2, 1, 4, 3]), np.array([1, 3, 2]), np.array([2, 3, 4])]
    n = len(hists)
    res = SeqAugmentResult(hists, np.array(["expanded"] * n), np.zeros(n, np.int64), np.zeros(n, np.int64),
                           np.ones(n, np.float32), True, {})
    score = discriminator_rank(disc, cfg, to_model)(res)
    assert [list(p) for p in seen["prompts"]] == [[5], [5]] and seen["cont"].tolist() == [[7, 9], [9, 7]]
    assert score.tolist() == [9, 7, -np.inf, -np.inf]
    with pytest.raises(EcaugError, match="keep 'discriminator' .* needs refine"):
        seq_config({"keep": "discriminator"}, source="c.json")
    with pytest.raises(EcaugError, match="c.json: SeqAugmentConfig: keep 'best': one of random, discriminator"):
        seq_config({"keep": "best"}, source="c.json")


def test_every_builder_that_reads_a_teacher_refuses_a_reversed_generator_before_any_work():
    """A teacher appends items: the unfiltered pools that read one refuse gan.reverse in one line
    before fitting anything (their training histories here are None: any read would fail with a
    traceback). The ``gan`` pool's check is the CLI's (test_teacher_input_is_checked_in_one_line)."""
    from ecaug_feast.jobs.augment_seq import POOLS, seq_config

    cfg = seq_config({"gan": {"reverse": True}})
    teacher = object()
    for name in ("gan_no_labeler", "gan_disc_select_no_labeler"):
        with pytest.raises(EcaugError, match="must run forward") as e:
            POOLS[name].build(None, cfg, teacher, None, False)
        assert "\n" not in str(e.value)
