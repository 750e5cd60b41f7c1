"""The study package (``ecaug_feast.study``): protocol, validation halves, the pool registry, the
interval math, the screen, and one tiny cell end to end through the product's jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "study" / "protocol-tiny.yaml"


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


# ---------------------------------------------------------------------------------------------- protocol


def test_validation_halves_are_disjoint_deterministic_and_order_free():
    from ecaug_feast.study.protocol import validation_halves

    users = np.arange(1, 20_001, dtype=np.int64)
    stop, choose = validation_halves(users, 2026)
    assert not (stop & choose).any() and (stop | choose).all()
    assert 0.47 < stop.mean() < 0.53
    perm = np.random.default_rng(0).permutation(len(users))
    s2, _ = validation_halves(users[perm], 2026)
    assert np.array_equal(s2, stop[perm])  # a user's half does not depend on the order or the others
    s3, _ = validation_halves(users, 7)
    assert not np.array_equal(s3, stop)  # the seed changes the split


def test_committed_protocols_load_and_bad_settings_are_one_line(tmp_path):
    from ecaug_feast.errors import EcaugError
    from ecaug_feast.study.protocol import Protocol, make_protocol, read_file

    for f in (ROOT / "benchmarks" / "protocols").glob("*.yaml"):
        p = make_protocol(read_file(f), source=str(f))
        assert p.methods and p.fractions
    main = make_protocol(read_file(ROOT / "benchmarks" / "protocols" / "seq-study.yaml"))
    assert set(main.methods) == set(Protocol().methods) and not main.screen
    assert make_protocol(read_file(ROOT / "benchmarks" / "protocols" / "seq-screen-beauty25.yaml")).screen
    with pytest.raises(EcaugError, match="unknown setting"):
        make_protocol({"seq_teacher": "recommender"})
    with pytest.raises(EcaugError, match="need model bag"):
        make_protocol({"methods": ["real_only", "smote"]})
    with pytest.raises(EcaugError, match=r"fractions must lie in \(0, 1\]"):
        make_protocol({}, {"fractions": [1.5]})
    bad = tmp_path / "p.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(EcaugError, match="expected a mapping"):
        read_file(bad)


@pytest.mark.parametrize("bad, key", [({"fractions": 0.25}, "fractions"), ({"seeds": "3"}, "seeds"), ({"epochs": "60"}, "epochs"),
                                      ({"workers": "2"}, "workers"), ({"expansions": ["3"]}, "expansions"),
                                      ({"generator": [1]}, "generator"), ({"name": "../../x"}, "name")])
def test_a_setting_of_the_wrong_type_is_one_line_naming_file_and_key(bad, key):
    from ecaug_feast.errors import EcaugError
    from ecaug_feast.study.protocol import make_protocol

    with pytest.raises(EcaugError) as e:
        make_protocol(bad, source="p.yaml")
    msg = str(e.value)
    assert msg.startswith("p.yaml: ") and key in msg and "\n" not in msg


def test_an_adversarial_method_without_adversarial_steps_is_refused():
    from ecaug_feast.errors import EcaugError
    from ecaug_feast.study.protocol import make_protocol
    from ecaug_feast.study.registry import METHODS

    for m in ("gan_augmented", "gan_no_labeler"):
        with pytest.raises(EcaugError, match=f"p.yaml: refine steps 0: method {m} claims the adversarial stage"):
            make_protocol({"methods": ["real_only", m], "refine": {"steps": 0}}, source="p.yaml")
    # the ablation without the stage and the controls need no refinement step
    assert make_protocol({"methods": ["real_only", "gan_no_adversarial", "seq_ops"], "refine": {"steps": 0}})
    # gan_no_adversarial is gan_augmented's pool without the stage, nothing else
    a, b = METHODS["gan_augmented"], METHODS["gan_no_adversarial"]
    assert (a.pool, a.teacher, a.gan, a.protocol) == (b.pool, b.teacher, b.gan, b.protocol) and a.refine and not b.refine
    assert "self_distill_labeled" not in METHODS  # it was gan_no_adversarial under another name
    # the default's stage ablation runs the stage with the policy frozen (lr 0 over the protocol's
    # settings, what study.cell passes on): only the discriminator trains, its pick is kept
    nd = METHODS["gan_disc_select_no_adversarial"]
    assert (nd.pool, nd.refine, nd.refine_settings) == ("gan_disc_select", True, {"lr": 0.0})
    assert METHODS["gan_disc_select_no_labeler"].pool == "gan_disc_select_no_labeler"


def test_default_output_folder_is_checked_and_unique_within_a_second(tmp_path, monkeypatch):
    import ecaug_feast.study.run as run
    from ecaug_feast.errors import EcaugError
    from ecaug_feast.study.protocol import Protocol

    class Frozen(run.datetime):  # every call in the same second (and microsecond)
        @classmethod
        def now(cls, tz=None):
            return run.datetime(2026, 1, 1, 12, 0, 0)

    monkeypatch.setattr(run, "datetime", Frozen)
    a, b = run.default_out_dir(tmp_path, "s"), run.default_out_dir(tmp_path, "s")
    assert a != b and a.parent == b.parent == tmp_path / "experiments" and a.name.startswith("s-20260101-120000")
    (tmp_path / "datasets" / "beauty").mkdir(parents=True)
    (tmp_path / "datasets" / "beauty" / "meta.json").write_text("{}")
    with pytest.raises(EcaugError, match="protocol name '../../x'"):  # a Protocol built without make_protocol
        run.run_study(tmp_path, Protocol(name="../../x"))
    assert not (tmp_path.parent / "x").exists() and not list(tmp_path.parent.glob("x-*"))


def test_a_failed_replace_keeps_the_earlier_output(tmp_path, monkeypatch):
    """The earlier study's output is renamed aside, not deleted, until the new one is in place."""
    import ecaug_feast.study.run as run

    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('"old"')
    monkeypatch.setattr(run, "table_markdown", lambda *a: "t")
    monkeypatch.setattr(run, "report_markdown", lambda *a: "r")
    real_rename = Path.rename

    def rename(self, target):
        if Path(target) == out and (self / "report.md").exists():  # the new output moving in
            raise OSError("disk gone")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError):
        run.write_outputs({"results": [], "screen": False}, [], out)
    assert (out / "results.json").read_text() == '"old"'
    monkeypatch.setattr(Path, "rename", real_rename)
    run.write_outputs({"results": [], "screen": False}, [], out)
    assert json.loads((out / "results.json").read_text()) == {"results": [], "screen": False}
    assert sorted(q.name for q in tmp_path.iterdir()) == ["out"]


def test_experiment_help_has_at_most_ten_options_and_bad_input_is_one_line():
    r = _cli("experiment", "--help")
    assert r.returncode == 0, r.stderr
    opts = {w.strip("│ ,") for line in r.stdout.splitlines() for w in line.split() if w.strip("│ ,").startswith("--")}
    assert opts == {"--dataset", "--fractions", "--seeds", "--methods", "--quick", "--config", "--protocol", "--workers",
                    "--json", "--help"}, opts
    r = _cli("experiment", "--fractions", "1.5")
    assert r.returncode == 2 and "fractions must lie in (0, 1]" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------------------------------------- report


def test_lift_interval_on_known_arrays():
    from ecaug_feast.study.report import lift_interval

    rng = np.random.default_rng(0)
    base = [rng.random(2000) for _ in range(3)]
    exact = lift_interval([b * 1.1 for b in base], base, resamples=200)
    # a method 10 % better for every user: the lift is 10 % in every resample
    assert exact["lift"] == pytest.approx(0.1) and exact["low"] == pytest.approx(0.1) and exact["high"] == pytest.approx(0.1)
    assert exact["seed_lifts"] == pytest.approx([0.1] * 3) and exact["seed_std"] == pytest.approx(0.0, abs=1e-12)
    # independent noise: the interval holds the true lift (0) and narrows with more users
    small = lift_interval([rng.random(500) for _ in range(3)], [rng.random(500) for _ in range(3)], resamples=300)
    big = lift_interval([rng.random(20_000) for _ in range(3)], [rng.random(20_000) for _ in range(3)], resamples=300)
    assert small["low"] < 0 < small["high"] and big["low"] < 0 < big["high"]
    assert big["high"] - big["low"] < (small["high"] - small["low"]) / 3
    # paired: a shared user effect cancels, so the interval is far tighter than unpaired noise would give
    u = rng.gamma(0.3, 1.0, 5000)
    paired = lift_interval([u * 1.05], [u], resamples=300)
    assert paired["high"] - paired["low"] < 1e-9
    with pytest.raises(ValueError, match="paired"):
        lift_interval([np.ones(3)], [np.ones(4)])


def test_contrasts_give_the_gap_between_a_method_and_its_control_in_lift_points():
    """gan_augmented vs self_distill: (lift of one) - (lift of the other) over real_only, paired;
    a pair that did not run is left out; the table says test or validation."""
    from ecaug_feast.study.report import contrast_interval, contrast_markdown, summarize_contrasts

    rng = np.random.default_rng(1)
    u = [rng.gamma(0.3, 1.0, 4000) for _ in range(3)]
    rows = [{"fraction": 0.25, "seed": s, "method": m, "per_user": {"ndcg@10": u[s] * k}}
            for s in range(3) for m, k in (("real_only", 1.0), ("self_distill", 1.05), ("gan_augmented", 1.08))]
    c = summarize_contrasts(rows, resamples=200)
    assert [(x["method"], x["control"]) for x in c] == [("gan_augmented", "self_distill")]
    assert c[0]["points"] == pytest.approx(0.03) and c[0]["low"] == pytest.approx(0.03) and c[0]["seeds"] == 3
    # unpaired noise in the method: the interval widens around the true gap (0)
    noisy = contrast_interval([rng.random(3000) for _ in range(3)], [rng.random(3000) for _ in range(3)],
                              [rng.random(3000) + 0.5 for _ in range(3)], resamples=300)
    assert noisy["low"] < 0 < noisy["high"]
    t = contrast_markdown(c, screen=False)
    assert "| 0.25 | gan_augmented | self_distill | 3 | +3.0 |" in t and "test" in t and contrast_markdown([], False) == ""
    with pytest.raises(ValueError, match="same seeds"):
        contrast_interval([np.ones(3)], [], [np.ones(3)])


def test_the_product_default_method_is_what_augment_runs():
    """``distill_priors`` (the default by docs/results/default-choice.md over all its cells) draws
    as ``ecaug augment`` does with a teacher: the config the study builds for it under
    seq-study-6k, -10 and -100 equals the teacher defaults' in every setting that draws
    (generator, no adversarial stage, 2 items, 3 expansions, no whole synthetic users, kept at
    random out of a matched draw). ``gan_disc_select`` (the default of the second session) is the
    option the lineage names when --config adds the protocol's stage and ``keep: discriminator``."""
    from dataclasses import asdict

    from ecaug_feast.errors import EcaugError
    from ecaug_feast.jobs.augment import _recipe
    from ecaug_feast.jobs.augment_seq import TEACHER_DEFAULTS, TEACHER_RECIPE, seq_config
    from ecaug_feast.study.protocol import make_protocol, read_file
    from ecaug_feast.study.registry import METHODS, SAME_SETTINGS

    m = METHODS[TEACHER_RECIPE]
    assert m.name == "distill_priors" and m.pool == "gan" and m.teacher and not m.refine
    product = seq_config(None, defaults=TEACHER_DEFAULTS)
    assert product.keep == "random" and product.match_size and product.refine is None
    for name in ("seq-study-6k.yaml", "seq-study-6k-10.yaml", "seq-study-6k-100.yaml"):
        p = make_protocol(read_file(ROOT / "benchmarks" / "protocols" / name))
        for meth, over in ((m, {}), (METHODS["gan_disc_select"], {"refine": dict(p.refine), "keep": "discriminator"})):
            study = seq_config({"expand_below": p.expand_below, "n_new": p.n_new, "expansions": p.expansions[0],
                                "synthetic_share": 0.0, "gan": {**p.generator, **meth.gan},
                                "refine": dict(p.refine) if meth.refine else None})
            prod = seq_config(over or None, defaults=TEACHER_DEFAULTS)
            for key in ("expand_below", "n_new", "expansions", "synthetic_share", "refine", "labeler", "max_c2st_auc"):
                assert asdict(study)[key] == asdict(prod)[key], (name, meth.name, key)
            assert {k: v for k, v in asdict(study.gan).items() if k != "threads"} == \
                {k: v for k, v in asdict(prod.gan).items() if k != "threads"}, name
            assert _recipe("t", AugmentRequestStub(), prod) == meth.name
    assert _recipe("t", AugmentRequestStub(), product) == TEACHER_RECIPE
    same = METHODS["gan_no_adversarial"]
    assert (m.pool, m.teacher, m.refine, m.gan, m.protocol, m.stages) == \
        (same.pool, same.teacher, same.refine, same.gan, same.protocol, same.stages)
    assert SAME_SETTINGS == {"distill_priors": "gan_no_adversarial"}  # found from the settings, not kept by hand
    with pytest.raises(EcaugError, match="p.yaml: method.s. distill_priors and gan_no_adversarial are one setting"):
        make_protocol({"methods": ["real_only", "distill_priors", "gan_no_adversarial"]}, source="p.yaml")
    assert "transition_mix" not in TEACHER_DEFAULTS["gan"]  # the generator's default mix, as the study drew it


class AugmentRequestStub:
    config = None
    steps = None


def test_screen_table_says_validation_and_shows_no_test_column():
    from ecaug_feast.study.report import summarize, table_markdown

    rows = [{"fraction": 0.25, "seed": 0, "method": m, "scored_on": "choose", "metrics": {"ndcg@10": x, "recall@10": x},
             "per_user": {"ndcg@10": np.full(10, x)}} for m, x in (("real_only", 0.04), ("self_distill", 0.05))]
    t = table_markdown(summarize(rows, resamples=50), screen=True)
    assert "validation (choose half)" in t and "test" not in t and "+25.0%" in t


def test_the_table_says_whether_each_pool_passed_the_products_gate():
    """The study trains on a pool whatever its realism gate said; the report says, per method, how
    many seeds' pools passed (what `ecaug augment` would have published)."""
    from ecaug_feast.study.report import summarize, table_markdown

    def row(m, seed, gate):
        return {"fraction": 0.25, "seed": seed, "method": m, "scored_on": "test", "metrics": {"ndcg@10": 0.04, "recall@10": 0.04},
                "per_user": {"ndcg@10": np.full(10, 0.04)}, "pool": {"gate": gate} if gate else {}}

    rows = [row("real_only", s, None) for s in (0, 1)] + [row("distill_priors", 0, "fail"), row("distill_priors", 1, "pass"),
                                                           row("seq_ops", 0, "study only"), row("seq_ops", 1, "study only")]
    got = {r["method"]: r["gate"] for r in summarize(rows, resamples=20)}
    assert got == {"real_only": "-", "distill_priors": "fail 1/2, pass 1/2", "seq_ops": "study only 2/2"}
    assert "| fail 1/2, pass 1/2 |" in table_markdown(summarize(rows, resamples=20), screen=False)


def test_the_table_shows_the_choose_half_figure_choices_are_made_on():
    """Each method's validation (choose half) NDCG@10 of its chosen candidate, averaged over seeds,
    beside the test figure: a choice among methods is read there, not on test."""
    from ecaug_feast.study.report import summarize

    def row(m, seed, tried):
        return {"fraction": 0.25, "seed": seed, "method": m, "scored_on": "test", "metrics": {"ndcg@10": 0.04, "recall@10": 0.04},
                "per_user": {"ndcg@10": np.full(10, 0.04)}, "tried": tried}

    rows = [row("real_only", 0, []), row("a", 0, [{"choose_ndcg@10": 0.02}, {"choose_ndcg@10": 0.03}]),
            row("real_only", 1, []), row("a", 1, [{"choose_ndcg@10": 0.05}])]
    got = {r["method"]: r["choose_ndcg@10"] for r in summarize(rows, resamples=20)}
    assert got["real_only"] is None and got["a"] == pytest.approx(0.04)  # max per seed (the chosen), mean over seeds


# ---------------------------------------------------------------------------------------------- the pools


def _tiny_histories():
    from ecaug_feast.histories import Histories
    from ecaug_feast.jobs.augment_seq import TrainingHistories
    from ecaug_feast.synth.seq_pipeline import HistoryTimes

    rng = np.random.default_rng(0)
    lens = rng.integers(1, 15, 200)
    rows = [rng.integers(1, 61, n) for n in lens]
    user_ids = np.arange(1, 201, dtype=np.int64)
    t0 = pd.Timestamp("2020-01-01", tz="UTC")
    train = pd.DataFrame({"user_id": np.repeat(user_ids, lens), "item_id": np.concatenate(rows),
                          "event_timestamp": [t0 + pd.Timedelta(days=int(d)) for d in rng.integers(0, 300, lens.sum())]})
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    attrs = {i: [i % 5] for i in range(1, 61)}
    return TrainingHistories(Histories(user_ids, np.concatenate(rows).astype(np.int64), offsets), HistoryTimes.of(train, user_ids),
                             train, attrs, {"dataset": "tiny"}, 60)


@pytest.mark.slow
def test_every_registered_pool_is_size_matched(tmp_path):
    """Each sequence method of the registry builds, through its ``jobs.augment_seq.POOLS`` builder,
    a pool of exactly the protocol's size (``gan`` at most that: what its labeler accepts)."""
    import torch

    from ecaug_feast.jobs.augment_seq import POOLS, pool_size, seq_config
    from ecaug_feast.study.protocol import make_protocol, read_file
    from ecaug_feast.study.registry import METHODS

    p = make_protocol(read_file(TINY))
    th = _tiny_histories()
    g = torch.Generator().manual_seed(0)
    from ecaug_feast.synth.seq_refine import ContinuationDiscriminator

    teacher = lambda v, o: torch.randn(len(o) - 1, 61, generator=g)  # noqa: E731 - any next-item scorer
    torch.manual_seed(0)
    teacher.discriminator = ContinuationDiscriminator(60)  # what the adversarial stage hands gan_disc_select
    for m in METHODS.values():
        if m.pool is None:
            continue
        cfg = seq_config({"expand_below": p.expand_below, "n_new": p.n_new, "expansions": 2, "synthetic_share": 0.0,
                          "max_c2st_auc": 1.0, "gan": {**p.generator, **m.gan, "max_len": 20}}, seed=0)
        want = pool_size(th.histories.lengths, cfg)
        res = POOLS[m.pool].build(th, cfg, teacher if m.teacher else None, tmp_path, True)
        assert want > 0
        if m.pool in ("gan", "gan_disc_select"):
            assert 0 < len(res.histories) <= want, m.name
        else:
            assert len(res.histories) == want, m.name
        assert all(1 <= len(h) <= 20 and h.min() >= 1 for h in res.histories), m.name
        assert len(res.source) == len(res.histories) == len(res.confidence)
    # selection by the discriminator: from the same accepted draws (same seed, a fixed teacher), the
    # histories kept score higher under the stage's discriminator than the random keep of `gan`
    from ecaug_feast.synth.seq_refine import realness

    fixed = lambda v, o: torch.arange(61.0).repeat(len(o) - 1, 1) / 20  # noqa: E731
    fixed.discriminator = teacher.discriminator
    cfg = seq_config({"expand_below": p.expand_below, "n_new": 2, "expansions": 2, "synthetic_share": 0.0, "max_c2st_auc": 1.0,
                      "gan": {**p.generator, **METHODS["gan_augmented"].gan, "max_len": 20}}, seed=0)
    rnd = POOLS["gan"].build(th, cfg, fixed, tmp_path, True)
    sel = POOLS["gan_disc_select"].build(th, cfg, fixed, tmp_path, True)

    def mean_realness(res):
        return realness(fixed.discriminator, [h[:-2] for h in res.histories], np.stack([h[-2:] for h in res.histories])).mean()

    assert sel.metrics["kept_by"] == "discriminator" and rnd.metrics["kept_by"] == "random"
    assert len(sel.histories) == len(rnd.histories) and mean_realness(sel) > mean_realness(rnd)
    # the same without the labeler: the unfiltered draw, kept by the discriminator (exactly the size)
    unf = POOLS["gan_no_labeler"].build(th, cfg, fixed, tmp_path, True)
    nol = POOLS["gan_disc_select_no_labeler"].build(th, cfg, fixed, tmp_path, True)
    assert nol.metrics["kept_by"] == "discriminator" and len(nol.histories) == len(unf.histories)
    assert mean_realness(nol) > mean_realness(unf)
    # self-distillation continues each short history with items drawn from the teacher
    cfg = seq_config({"expand_below": 8, "n_new": 2, "expansions": 1}, seed=0)
    res = POOLS["self_distill"].build(th, cfg, teacher, tmp_path)
    lens = th.histories.lengths
    for h, s in zip(res.histories, res.source):
        real = th.histories.to_lists()[s]
        assert len(h) == len(real) + 2 and np.array_equal(h[: len(real)], real) and not set(h[-2:]) & set(real)
    assert (lens[res.source] < 8).all()


def test_reppad_repeats_the_history_into_its_padding():
    from ecaug_feast.jobs.augment_seq import reppad

    h = np.array([3, 4, 5])
    assert reppad(h, 10, 2).tolist() == [3, 4, 5, 3, 4, 5, 3, 4, 5]
    assert reppad(h, 10, 9).tolist() == [3, 4, 5, 3, 4, 5, 3, 4, 5]  # at most what fits
    assert reppad(np.arange(1, 12), 10, 1).tolist() == list(range(2, 12))  # too long: the newest max_len


def test_study_only_pools_are_never_published(tmp_path):
    """Only the gated pools (``gan``, and ``cold_items`` of the item side, both through the labeler
    and gates) may be published; the controls (prefixes of real histories, rearrangements...) carry
    gate "study only", and asking to publish one is refused in one line."""
    from ecaug_feast.errors import EcaugError
    from ecaug_feast.jobs.augment_seq import POOLS, STUDY_ONLY, augment_seq_run, seq_config

    assert [k for k, v in POOLS.items() if v.publishable] == ["gan", "cold_items"]
    cfg = seq_config({"expand_below": 8, "n_new": 2, "expansions": 1, "gan": {"max_len": 20}}, seed=0)
    for method in ("slide_window", "reppad", "seq_ops"):
        res = POOLS[method].build(_tiny_histories(), cfg, None, tmp_path, True)
        assert len(res.histories) and res.metrics["gate"] == STUDY_ONLY, method
        with pytest.raises(EcaugError, match="study-only") as e:
            augment_seq_run(None, cfg, method=method, publish=True)  # refused before reading anything
        assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_tiny_study_end_to_end_through_the_jobs(feast_env, tmp_path):
    """The tiny protocol through ``ecaug experiment``: every method scored once on test, lifts with
    intervals, the pools made by ``ecaug augment``'s job (runs in the cell's private workspace)."""
    r = _cli("experiment", "--protocol", str(TINY), "--dataset", feast_env.data.name, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert not res["screen"] and res["scored_on"].startswith("test")
    rows = {x["method"]: x for x in res["results"]}
    assert set(rows) == {"popularity", "real_only", "real_twice", "self_distill"}
    for m in ("popularity", "real_twice", "self_distill"):
        x = rows[m]
        assert "lift" in x and x["scored_on"] == "test"
        if rows["real_only"]["ndcg@10"] > 0:  # a tiny model may rank no test item in its top 10
            assert x["low"] <= x["lift"] <= x["high"], json.dumps(res["results"])
        assert 0 <= x["ndcg@10"] <= 1
    full = json.loads((Path(res["out_dir"]) / "results.json").read_text())
    assert len(full["runs"]) == 4  # test scored once per (fraction, seed, method)
    sd = next(x for x in full["runs"] if x["method"] == "self_distill")
    assert sd["pool"]["histories"] > 0 and sd["tried"][0]["choose_ndcg@10"] >= 0
    assert (Path(res["out_dir"]) / "per_user.npz").exists()
    # self_distill against real_twice (a contrast of report.CONTRASTS), in the report too
    assert [(c["method"], c["control"]) for c in full["contrasts"]] == [("self_distill", "real_twice")]
    assert "## Contrasts" in (Path(res["out_dir"]) / "report.md").read_text()


@pytest.mark.slow
def test_a_screen_never_scores_or_prints_test(feast_env, tmp_path, monkeypatch):
    """``screen: true``: every eval set the study builds holds validation users' validation items,
    never a test row, and the printed table says validation."""
    import ecaug_feast.study.cell as cell
    from ecaug_feast.study.protocol import make_protocol, read_file
    from ecaug_feast.study.run import run_study

    test_rows = set(map(tuple, feast_env.data.test[["user_id", "item_id"]].to_numpy().tolist()))
    valid_rows = set(map(tuple, feast_env.data.valid[["user_id", "item_id"]].to_numpy().tolist()))
    seen: list[pd.DataFrame] = []
    real = cell.make_eval_set
    monkeypatch.setattr(cell, "make_eval_set", lambda targets, exclude: seen.append(targets) or real(targets, exclude))
    p = make_protocol(read_file(TINY), {"screen": True, "methods": ["popularity", "real_only"], "dataset": feast_env.data.name})
    out = run_study(feast_env.state_dir, p, tmp_path / "screen")
    assert seen and all(set(map(tuple, t[["user_id", "item_id"]].to_numpy().tolist())) <= valid_rows - test_rows for t in seen)
    assert all(r["scored_on"] == "choose" for r in out["runs"])
    table = (tmp_path / "screen" / "table.md").read_text()
    assert "validation (choose half)" in table and "test" not in table
    assert "no test figure" in (tmp_path / "screen" / "report.md").read_text()


@pytest.mark.slow
def test_the_bag_study_runs_its_pools(feast_env, tmp_path):
    """``model: bag`` (the secondary study): the column methods' pools mixed in, the ratio chosen on
    the choose half, test scored once per method."""
    from ecaug_feast.study.protocol import QUICK, make_protocol
    from ecaug_feast.study.run import run_study

    p = make_protocol(QUICK, {"dataset": feast_env.data.name, "model": "bag", "methods": ["popularity", "real_only", "oversample"],
                              "bag": {"preset": "quick"}, "max_users": 300})
    out = run_study(feast_env.state_dir, p, tmp_path / "bag")
    runs = {r["method"]: r for r in out["runs"]}
    assert set(runs) == {"popularity", "real_only", "oversample"} and all(r["scored_on"] == "test" for r in runs.values())
    assert runs["oversample"]["pool"]["rows"] > 0 and runs["oversample"]["tried"]
