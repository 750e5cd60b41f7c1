"""``benchmarks/default_choice.py``: the rule of docs/results/default-choice.md reads the choose
half only, pairs cells by (dataset, fraction, seed), averages seeds, then (dataset, fraction)
groups, and switches only at >= +1 %."""

from __future__ import annotations

import json
from pathlib import Path


def _results(path: Path, dataset: str, fraction: float, rows: list[tuple[str, int, float]]) -> Path:
    runs = [{"method": m, "fraction": fraction, "seed": s, "metrics": {"ndcg@10": 99.0},  # a test figure: never read
             "tried": [{"choose_ndcg@10": x}]} for m, s, x in rows]
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps({"protocol": {"dataset": dataset}, "runs": runs}))
    return path


def test_the_rule_reads_the_choose_half_and_its_margin(tmp_path, capsys, bench):
    mod = bench("default_choice")
    a = _results(tmp_path / "a", "beauty", 0.25, [("gan_disc_select", 0, 0.0306), ("gan_no_adversarial", 0, 0.03),
                                                 ("gan_disc_select", 1, 0.0300), ("gan_no_adversarial", 1, 0.03),
                                                 ("real_only", 0, 0.5)])
    b = _results(tmp_path / "b", "toys", 1.0, [("gan_disc_select", 0, 0.0297), ("distill_priors", 0, 0.03),
                                              ("gan_disc_select", 2, 0.05)])  # seed 2: no incumbent, left out
    out = mod.decide(mod.choose_cells([a, b]))
    assert [(c["dataset"], c["seed"]) for c in out["cells"]] == [("beauty", 0), ("beauty", 1), ("toys", 0)]
    assert abs(out["by_dataset_fraction"]["beauty 0.25"] - 0.01) < 1e-9 and abs(out["by_dataset_fraction"]["toys 1"] + 0.01) < 1e-9
    assert abs(out["mean"]) < 1e-9 and out["default"] == "distill_priors"  # 0 % < the +1 % margin
    c = _results(tmp_path / "c", "toys", 0.1, [("gan_disc_select", 0, 0.033), ("distill_priors", 0, 0.03)])
    assert mod.decide(mod.choose_cells([a, b, c]))["default"] == "gan_disc_select"  # (1 - 1 + 10) / 3 %
    assert mod.main([str(a), str(b)]) == 0
    printed = capsys.readouterr().out
    assert "choose-half" in printed and "99" not in printed


def test_the_labeler_rule_pairs_the_unfiltered_ablation_with_gan_disc_select_at_no_margin(tmp_path, capsys, bench):
    """--rule labeler: gan_disc_select is the incumbent here (distill_priors is not read), and a
    mean of exactly 0 % drops the filter (the rule grants no margin either way)."""
    mod = bench("default_choice")
    a = _results(tmp_path / "a", "beauty", 0.25, [("gan_disc_select_no_labeler", 0, 0.0303), ("gan_disc_select", 0, 0.03),
                                                 ("distill_priors", 0, 0.9)])
    b = _results(tmp_path / "b", "toys", 1.0, [("gan_disc_select_no_labeler", 1, 0.0297), ("gan_disc_select", 1, 0.03)])
    out = mod.decide(mod.choose_cells([a, b], "labeler"), "labeler")
    assert [(c["dataset"], c["incumbent"]) for c in out["cells"]] == [("beauty", 0.03), ("toys", 0.03)]
    assert abs(out["mean"]) < 1e-9 and out["default"] == "gan_disc_select_no_labeler" and out["margin"] == 0.0
    # the first rule reads none of these cells but gan_disc_select against distill_priors
    assert [c["candidate"] for c in mod.decide(mod.choose_cells([a, b]))["cells"]] == [0.03]
    b2 = _results(tmp_path / "b2", "toys", 1.0, [("gan_disc_select_no_labeler", 1, 0.0294), ("gan_disc_select", 1, 0.03)])
    assert mod.decide(mod.choose_cells([a, b2], "labeler"), "labeler")["default"] == "gan_disc_select"
    assert mod.main([str(a), str(b), "--rule", "labeler"]) == 0
    printed = capsys.readouterr().out
    assert "gan_disc_select_no_labeler" in printed and "rule labeler" in printed and "0.9" not in printed
