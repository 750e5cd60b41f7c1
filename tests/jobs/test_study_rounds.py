"""The study's teacher rounds and generator settings (``ecaug_feast.jobs.study``, ``jobs.presets``); the
rounds in process on the session's Feast data."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


def _three_round_study(feast_env, out):
    """The quick study, 300 users at 100 %, 1 seed: real_only and gan_augmented taught by the
    recommender for up to 3 rounds (finetune protocol, one size); its summary."""
    import ecaug_feast.jobs.study as study
    from ecaug_feast.jobs.presets import make_config

    cfg = make_config("quick", dataset=feast_env.data.name, fractions=[1.0], seeds=1, max_users=300, workers=1,
                      methods=["real_only", "gan_augmented"], seq_teacher="recommender", seq_teacher_rounds=3,
                      seq_aug={"n_new": 2, "synthetic_share": 0, "expansions": 1}, seq_ratios=[0.5], source="memory")
    return study.run_study(SimpleNamespace(state_dir=feast_env.state_dir), cfg, out)


def _rig(monkeypatch, score) -> tuple[list, list, list]:
    """Spy on the cell's training, teachers and pools; validation NDCG@10 of the i-th model
    train_seq returned (0 = real-only) becomes ``score(i)``. Returns (models trained, models that
    taught, pool seeds), filled as the study runs."""
    import ecaug_feast.jobs.study as study
    import recommender.seq_train as st

    trained, taught_by, pool_seeds = [], [], []
    real_train, real_eval, real_scorer, real_pool = st.train_seq, st.evaluate_seq, st.next_item_scorer, study.seq_pool

    def train_spy(*a, **k):
        res = real_train(*a, **k)
        trained.append(res.model)
        return res

    def eval_spy(model, data, es, split="valid", *a, **k):
        out = real_eval(model, data, es, split, *a, **k)
        done = [i for i, m in enumerate(trained) if m is model]  # not while train_seq early-stops
        return {**out, "ndcg@10": score(done[0])} if split == "valid" and done else out

    def scorer_spy(model, *a, **k):
        taught_by.append(model)
        return real_scorer(model, *a, **k)

    def pool_spy(method, data, hist, scfg, seed, *a, **k):
        pool_seeds.append(seed)
        return real_pool(method, data, hist, scfg, seed, *a, **k)

    monkeypatch.setattr(st, "train_seq", train_spy)
    monkeypatch.setattr(st, "evaluate_seq", eval_spy)
    monkeypatch.setattr(st, "next_item_scorer", scorer_spy)
    monkeypatch.setattr(study, "seq_pool", pool_spy)
    return trained, taught_by, pool_seeds


@pytest.mark.slow
def test_teacher_rounds_reteach_from_the_chosen_model(feast_env, tmp_path, monkeypatch):
    """``seq_teacher_rounds`` 3: round 1 is taught by real-only's model, round k > 1 by the model
    validation chose in round k - 1, each from a fresh pool (its own seed); the chosen model is the
    best on validation and the row keeps every round's pool. Validation is rigged so that each
    newer model wins (real-only < round 1 < round 2 < round 3): the rounds then must all run."""
    trained, taught_by, pool_seeds = _rig(monkeypatch, lambda i: 0.1 * (1 + i))
    summary = _three_round_study(feast_env, tmp_path / "rounds")
    run = next(r for r in summary["runs"] if r["method"] == "gan_augmented")
    # trained: real-only, then one fine-tuned model per round (finetune protocol, one ratio)
    assert len(trained) == 4 and taught_by == trained[:3], (len(trained), len(taught_by))
    assert pool_seeds == [0, 1000, 2000]
    assert [t.get("round") for t in run["tried"]] == [None, 1, 2, 3], run["tried"]
    assert run["round"] == 3 and run["valid"]["ndcg@10"] == pytest.approx(0.4)
    assert [p["round"] for p in run["pools"]] == [1, 2, 3] and run["pool"] == run["pools"][2]
    assert all(p["teacher"] is True and p["rows"] > 0 for p in run["pools"]), run["pools"]
    report = (tmp_path / "rounds" / "report.md").read_text()
    assert "gan_augmented (round 2)" in report and "**0.5, real, round 3: 0.4000**" in report, report[-1500:]


@pytest.mark.slow
def test_teacher_rounds_stop_when_a_round_does_not_win(feast_env, tmp_path, monkeypatch):
    """When validation keeps real-only after round 1, no round 2 is drawn."""
    trained, taught_by, pool_seeds = _rig(monkeypatch, lambda i: 0.9 if i == 0 else 0.1)
    summary = _three_round_study(feast_env, tmp_path / "stop")
    run = next(r for r in summary["runs"] if r["method"] == "gan_augmented")
    real = next(r for r in summary["runs"] if r["method"] == "real_only")
    assert pool_seeds == [0] and taught_by == trained[:1] and len(trained) == 2, pool_seeds
    assert run["ratio"] == 0.0 and "pools" not in run and "round" not in run, run
    assert run["test"] == real["test"]


def test_rounds_need_the_teacher():
    from ecaug_feast.errors import EcaugError
    from ecaug_feast.jobs.presets import make_config

    with pytest.raises(EcaugError, match="--seq-teacher recommender"):
        make_config("quick", seq_teacher_rounds=2)
    with pytest.raises(EcaugError, match=">= 1"):
        make_config("quick", seq_teacher="recommender", seq_teacher_rounds=0)


def test_seq_gan_settings_go_over_the_preset():
    """``--seq-gan``: generator settings merged over the preset's (its sizes and one thread kept);
    an unknown setting or a bad value is a one-line error."""
    from ecaug_feast.errors import EcaugError
    from ecaug_feast.jobs.presets import PRESETS, make_config

    cfg = make_config("quick", seq_gan={"transition_mix": 0})
    assert cfg.seq_gan == {**PRESETS["quick"]["seq_gan"], "transition_mix": 0}
    with pytest.raises(EcaugError, match="unknown setting"):
        make_config("quick", seq_gan={"nope": 1})
    with pytest.raises(EcaugError, match="transition_mix must be in"):
        make_config("quick", seq_gan={"transition_mix": 2})


@pytest.mark.parametrize("text, want", [("[1]", "expected a JSON object"), ('{"nope": 1}', "unknown setting")])
def test_bad_seq_gan_is_one_line_error(text, want):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", "experiment", "--seq-gan", text], capture_output=True, text=True)
    assert p.returncode == 2 and want in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_distill_settings_are_checked():
    """``--seq-distill``: needs the recommender teacher and a weight in (0, 1]; the ``distilled``
    control runs by default only when distilling, and cannot be asked for without it."""
    from ecaug_feast.errors import EcaugError
    from ecaug_feast.jobs.presets import make_config

    assert "distilled" not in make_config("quick").methods
    cfg = make_config("quick", seq_teacher="recommender", seq_distill={"distill": 0.5})
    assert "distilled" in cfg.methods and cfg.seq_distill == {"distill": 0.5}
    for bad, want in [({"distill": 0.5}, "--seq-teacher recommender"), ({"distil": 0.5}, "keys from"),
                      ({"distill": 1.5}, "must lie in"), ({"distill_temperature": 2}, "set distill > 0")]:
        with pytest.raises(EcaugError, match=want):
            make_config("quick", seq_teacher="recommender" if "teacher" not in want else "none", seq_distill=bad)
    with pytest.raises(EcaugError, match="method distilled needs"):
        make_config("quick", seq_teacher="recommender", methods=["real_only", "distilled"])


@pytest.mark.slow
def test_distilling_study_teaches_every_model_and_runs_the_control(feast_env, tmp_path, monkeypatch):
    """With ``seq_distill``: every model trained for gan_augmented (pretrain and fine-tune) and for
    the ``distilled`` control is taught by real-only's model with the given weight; the control
    trains on the real histories alone; rows and report say so."""
    import ecaug_feast.jobs.study as study
    import recommender.seq_train as st
    from ecaug_feast.jobs.presets import make_config

    calls = []
    real_train = st.train_seq

    def train_spy(data, valid, cfg, tcfg, *a, **k):
        res = real_train(data, valid, cfg, tcfg, *a, **k)
        calls.append({"teacher": k.get("teacher"), "distill": tcfg.distill, "histories": k.get("histories"), "model": res.model})
        return res

    monkeypatch.setattr(st, "train_seq", train_spy)
    cfg = make_config("quick", dataset=feast_env.data.name, fractions=[1.0], seeds=1, max_users=300, workers=1,
                      methods=["real_only", "gan_augmented", "distilled"], seq_teacher="recommender", seq_protocol="pretrain",
                      seq_distill={"distill": 0.5, "distill_temperature": 2}, seq_aug={"n_new": 2, "synthetic_share": 0, "expansions": 1},
                      seq_ratios=[0.5], source="memory")
    summary = study.run_study(SimpleNamespace(state_dir=feast_env.state_dir), cfg, tmp_path / "kd")
    real, *taught = calls
    assert real["teacher"] is None and real["distill"] == 0
    # gan_augmented: pretrain on the mix + fine-tune; distilled: pretrain on real alone + fine-tune
    assert len(taught) == 4 and all(c["teacher"] is real["model"] and c["distill"] == 0.5 for c in taught), taught
    mix, control = taught[0]["histories"], taught[2]["histories"]
    n_real = len(control.user_ids)
    assert len(mix.user_ids) > n_real and (control.lengths >= 1).sum() == (mix.lengths[:n_real] >= 1).sum()
    rows = {r["method"]: r for r in summary["runs"]}
    assert rows["distilled"]["distill"] == {"distill": 0.5, "distill_temperature": 2}
    assert [t.get("distill") is not None for t in rows["distilled"]["tried"]] == [False, True]
    report = (tmp_path / "kd" / "report.md").read_text()
    assert "| 1 | 0 | distilled |" in report and ", taught" in report, report[-1500:]
    assert "distillation: knowledge distillation, weight 0.5, temperature 2" in report
    assert "augmented histories per real one [0.0, 0.5]" in report
