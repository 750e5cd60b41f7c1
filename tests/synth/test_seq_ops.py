"""``seq_ops``: random crop / mask / reorder / insert on training histories."""

from __future__ import annotations

import numpy as np
import pytest

from ecaug_feast.histories import csr_rows, rows_to_csr
from ecaug_feast.synth.seq_ops import SeqOps, SeqOpsConfig


def _hists():
    rng = np.random.default_rng(0)
    rows = [rng.choice(np.arange(1, 200), size=n, replace=False) for n in [1, 2, 5, 9, 20, 3]]
    return rows_to_csr(rows)


@pytest.mark.parametrize("op", ["crop", "mask", "reorder", "insert"])
def test_each_op_keeps_training_items_and_order_rules(op):
    v, o = _hists()
    ops = SeqOps(SeqOpsConfig(copies=3, ops=(op,), seed=1)).fit(v, o)
    nv, no, src = ops.sample()
    real = csr_rows(v, o)
    out = csr_rows(nv, no)
    assert len(out) == 3 * sum(len(r) >= 2 for r in real)  # single items are not augmented
    for h, s in zip(out, src):
        r = real[s]
        assert len(h) >= 1
        assert set(h.tolist()) <= set(v.tolist())  # only items seen in training
        if op == "crop":
            assert any(np.array_equal(h, r[i : i + len(h)]) for i in range(len(r) - len(h) + 1))
        elif op == "mask":
            assert len(h) <= len(r) and np.array_equal(h, r[np.isin(r, h)])  # a subsequence, order kept
        elif op == "reorder":
            assert sorted(h.tolist()) == sorted(r.tolist())
        else:
            assert len(h) > len(r)
            # the real items keep their order inside the longer history
            it = iter(h.tolist())
            assert all(x in it for x in r.tolist())


def test_sample_is_seeded_and_max_len_keeps_newest():
    v, o = _hists()
    a = SeqOps(SeqOpsConfig(copies=2, seed=3)).fit(v, o).sample(max_len=4)
    b = SeqOps(SeqOpsConfig(copies=2, seed=3)).fit(v, o).sample(max_len=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert np.diff(a[1]).max() <= 4


def test_unknown_op_is_refused():
    with pytest.raises(ValueError, match="unknown sequence op"):
        SeqOps(SeqOpsConfig(ops=("shuffle_all",)))
