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
