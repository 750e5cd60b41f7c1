"""The one history type (``ecaug_feast.histories``): round trips, truncation, targets carried."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecaug_feast.histories import (
    Histories,
    csr_from_lists,
    csr_group,
    csr_rows,
    csr_take,
    gather_index,
    rows_to_csr,
    truncate_csr,
)

LISTS = [[3, 1, 2], [], [7], [9, 8, 7, 6, 5]]


def _lists(h: Histories) -> list[list[int]]:
    return [r.tolist() for r in h.to_lists()]


def test_lists_round_trip_through_csr():
    h = Histories.from_lists([10, 11, 12, 13], LISTS)
    assert h.values.dtype == np.int64 and h.offsets.dtype == np.int64 and h.user_ids.dtype == np.int64
    assert h.offsets.tolist() == [0, 3, 3, 4, 9] and h.lengths.tolist() == [3, 0, 1, 5] and len(h) == 4
    assert _lists(h) == LISTS
    v, o = rows_to_csr([np.asarray(x) for x in LISTS])
    assert [r.tolist() for r in csr_rows(v, o)] == LISTS
    # the Feast list column (None / NaN = empty) goes the same way
    v2, o2 = csr_from_lists(pd.Series([[3, 1, 2], None, np.array([7]), [9, 8, 7, 6, 5]]))
    assert v2.tolist() == v.tolist() and o2.tolist() == o.tolist()
    empty = Histories.from_lists([], [])
    assert len(empty) == 0 and empty.offsets.tolist() == [0] and empty.to_lists() == []


def test_truncate_keeps_the_newest_items_and_their_targets():
    h = Histories.from_lists([1, 2, 3], [[1, 2, 3, 4, 5], [6], [7, 8, 9]])
    h.targets = np.array([True, False, True, False, True, True, False, True, True])
    t = h.truncate(2)
    assert _lists(t) == [[4, 5], [6], [8, 9]]  # oldest first: the last entries are the newest
    assert t.targets.tolist() == [False, True, True, True, True]
    assert t.user_ids.tolist() == [1, 2, 3]
    assert h.truncate(5) is h  # nothing longer: unchanged
    # recent_items lists are newest first: truncate_csr keeps their first entries by default
    v, o = csr_from_lists([[5, 4, 3, 2, 1], [6]], max_len=2)
    assert [r.tolist() for r in csr_rows(v, o)] == [[5, 4], [6]]
    v, o = truncate_csr(*rows_to_csr([[1, 2, 3, 4, 5], [6]]), 2, keep="last")
    assert [r.tolist() for r in csr_rows(v, o)] == [[4, 5], [6]]


def test_from_recent_items_reverses_clips_and_keeps_the_newest():
    h = Histories.from_recent_items(np.array([1, 2, 3]), [[5, 4, 3, 2, 1], [], [9, 99, 7]], max_len=3, num_items=10)
    assert _lists(h) == [[3, 4, 5], [], [7, 9]]  # 99 is outside the vocabulary: dropped


def test_take_and_concat_carry_targets():
    a = Histories.from_lists([1, 2], [[1, 2], [3]])
    b = Histories.from_lists([7], [[4, 5, 6]])
    b.targets = np.array([False, False, True])
    c = Histories.concat([a, b])
    assert c.user_ids.tolist() == [1, 2, 7] and _lists(c) == [[1, 2], [3], [4, 5, 6]]
    assert c.targets.tolist() == [True, True, True, False, False, True]  # a part without a mask: all targets
    assert Histories.concat([a, a]).targets is None
    t = c.take([2, 0])
    assert t.user_ids.tolist() == [7, 1] and _lists(t) == [[4, 5, 6], [1, 2]]
    assert t.targets.tolist() == [False, False, True, True, True]
    assert len(Histories.concat([])) == 0


def test_take_group_and_gather_match_python_loops():
    rng = np.random.default_rng(0)
    lists = [rng.integers(1, 50, rng.integers(0, 6)).tolist() for _ in range(40)]
    v, o = rows_to_csr(lists)
    rows = rng.integers(0, 40, 25)
    vals, lens = csr_take(v, o, rows)
    assert vals.tolist() == [x for r in rows for x in lists[r]] and lens.tolist() == [len(lists[r]) for r in rows]
    starts, n = np.array([5, 0, 9]), np.array([2, 0, 3])
    assert gather_index(starts, n).tolist() == [5, 6, 9, 10, 11]
    row = np.array([2, 0, 2, 1, 0])
    gv, go = csr_group(row, np.array([10, 11, 12, 13, 14]), 4)
    assert [r.tolist() for r in csr_rows(gv, go)] == [[11, 14], [13], [10, 12], []]


@pytest.mark.parametrize("max_len", [1, 3])
def test_truncate_then_concat_equals_concat_then_truncate(max_len):
    a = Histories.from_lists([1, 2], [[1, 2, 3, 4], [5]])
    b = Histories.from_lists([3], [[6, 7, 8]])
    b.targets = np.array([True, False, True])
    x = Histories.concat([a.truncate(max_len), b.truncate(max_len)])
    y = Histories.concat([a, b]).truncate(max_len)
    assert _lists(x) == _lists(y) and x.targets.tolist() == y.targets.tolist()
