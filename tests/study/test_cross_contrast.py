"""``benchmarks/cross_contrast.py``: two study folders are paired only when the methods they share
(``real_only`` at least) scored every test user identically in every seed; the contrast then
equals the study's own (``study.report.contrast_interval``) on the joined arrays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest



def _folder(path: Path, arrays: dict[tuple[str, int], np.ndarray]) -> Path:
    path.mkdir(parents=True)
    runs = [{"method": m, "fraction": 0.25, "seed": s} for m, s in arrays]  # as study.run.write_outputs lists them
    (path / "results.json").write_text(json.dumps({"protocol": {"dataset": "beauty"}, "runs": runs}))
    z = {f"{m}|0.25|{s}|ndcg@10": v for (m, s), v in arrays.items()}
    z.update({f"users|0.25|{s}": np.arange(50) for s in {s for _, s in arrays}})
    np.savez_compressed(path / "per_user.npz", **z)
    return path


def test_pairs_two_folders_only_on_the_same_cells(tmp_path, bench):
    from ecaug_feast.study.report import contrast_interval

    mod = bench("cross_contrast")
    rng = np.random.default_rng(0)
    base = {s: rng.random(50) for s in (0, 1)}
    meth = {s: base[s] + 0.1 * rng.random(50) for s in (0, 1)}
    ctrl = {s: base[s] + 0.05 * rng.random(50) for s in (0, 1)}
    a = _folder(tmp_path / "a", {**{("real_only", s): base[s] for s in base}, **{("new", s): meth[s] for s in meth}})
    b = _folder(tmp_path / "b", {**{("real_only", s): base[s] for s in base}, **{("old", s): ctrl[s] for s in ctrl}})
    out = mod.cross_contrasts(a, b, [("new", "old")])
    want = contrast_interval([meth[0], meth[1]], [ctrl[0], ctrl[1]], [base[0], base[1]])
    (c,) = out["contrasts"]
    assert c["seeds"] == [0, 1] and c["points"] == pytest.approx(want["points"]) and c["low"] == pytest.approx(want["low"])
    assert out["checked_equal"] == ["real_only"] and out["scored_on"] == "test"
    # a real_only that differs in one user of one seed: not the same cells, refused
    other = _folder(tmp_path / "c", {**{("real_only", s): base[s].copy() for s in base}, **{("old", s): ctrl[s] for s in ctrl}})
    z = dict(np.load(other / "per_user.npz"))
    z["real_only|0.25|1|ndcg@10"][3] += 0.5
    np.savez_compressed(other / "per_user.npz", **z)
    with pytest.raises(SystemExit, match="real_only at fraction 0.25 seed 1 differs"):
        mod.cross_contrasts(a, other, [("new", "old")])
    with pytest.raises(SystemExit, match="not a study output"):
        mod.main([str(a), str(tmp_path / "missing"), "--pairs", "new:old"])
