"""One history type: per-user ordered item ids as CSR (bottom layer: numpy and pyarrow only).

A CSR matrix is ``values`` (every row's entries, row after row) and ``offsets`` (row ``i`` is
``values[offsets[i]:offsets[i + 1]]``, ``len(offsets) == n + 1``), both int64. The generator, the
batching, the evaluation and the pipeline all read and write histories in this layout; the helpers
below are the only code that builds or cuts one, so no module does it by hand.

:class:`Histories` holds a user's items oldest first (the newest is last), with an optional
per-value ``targets`` mask: generated items that are context only, never a next-item target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa


def offsets_of(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    """Row lengths -> CSR offsets (int64, ``len(lengths) + 1``)."""
    return np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))]).astype(np.int64)


def gather_index(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat positions ``starts[i] .. starts[i]+lengths[i]-1`` for all i, vectorised."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    row_start_in_out = np.cumsum(lengths) - lengths
    return np.repeat(np.asarray(starts, dtype=np.int64) - row_start_in_out, lengths) + np.arange(total, dtype=np.int64)


def csr_from_lists(col: Any, *, max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A column of int lists (a Series or any sequence; None/NaN = empty) -> (values, offsets);
    with ``max_len`` each row keeps its first ``max_len`` entries (:func:`truncate_csr`).

    Goes through pyarrow once (C speed) instead of a Python loop per row."""
    seq = col.tolist() if hasattr(col, "tolist") and not isinstance(col, np.ndarray) else list(col)
    seq = [None if (x is None or (isinstance(x, float) and np.isnan(x))) else x for x in seq]
    arr = pa.array([None if x is None else np.asarray(x, dtype=np.int64) for x in seq], type=pa.list_(pa.int64()))
    arr = arr.fill_null(pa.scalar([], type=pa.list_(pa.int64())))
    offsets = np.asarray(arr.offsets, dtype=np.int64)
    values = np.asarray(arr.values, dtype=np.int64) if len(arr.values) else np.zeros(0, dtype=np.int64)
    values = values[offsets[0] : offsets[-1]]
    offsets = offsets - offsets[0]
    if max_len is not None:
        values, offsets = truncate_csr(values, offsets, max_len)
    return values, offsets


def rows_to_csr(rows: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """A list of int arrays -> (values, offsets) int64."""
    lens = np.array([len(r) for r in rows], dtype=np.int64)
    vals = np.concatenate([np.asarray(r) for r in rows]).astype(np.int64) if len(rows) and lens.sum() else np.zeros(0, np.int64)
    return vals, offsets_of(lens)


def csr_rows(values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """CSR -> list of per-row arrays (views)."""
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def csr_take(values: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``rows`` of a CSR matrix -> (their values, their lengths)."""
    starts = offsets[rows]
    lengths = offsets[np.asarray(rows) + 1] - starts
    return values[gather_index(starts, lengths)], lengths


def csr_group(row: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``values[j]`` belongs to row ``row[j]`` (0..n-1) -> CSR over n rows, each row's values in
    their input order."""
    row = np.asarray(row, dtype=np.int64)
    order = np.argsort(row, kind="stable")
    return np.asarray(values, dtype=np.int64)[order], offsets_of(np.bincount(row, minlength=n))


def truncate_csr(values: np.ndarray, offsets: np.ndarray, max_len: int, keep: str = "first") -> tuple[np.ndarray, np.ndarray]:
    """Each row cut to ``max_len`` entries: its first ones (``keep="first"``: lists stored most
    recent first, as Feast's ``recent_items``) or its last ones (``"last"``: oldest first)."""
    lengths = np.diff(offsets)
    if len(lengths) == 0 or lengths.max(initial=0) <= max_len:
        return values, offsets
    new_len = np.minimum(lengths, max_len)
    starts = offsets[:-1] if keep == "first" else offsets[1:] - new_len
    return values[gather_index(starts, new_len)], offsets_of(new_len)


def leave_last_out(user_codes: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The leave-last-out label (``train`` / ``valid`` / ``test``) of each event of a log given in
    read order as int user codes and int times: per user, by time (equal times keep read order),
    the last event is test, the second to last validation (users with 3+ events), the rest
    train; a user with 2 events gives train + test, with 1 train. The rule of
    ``datasets.split.assign_split("leave_last_out")`` for an unsorted log (the wrapper for frames is
    ``datasets.split.event_log_split``); labels come back in read order."""
    users = np.asarray(user_codes, dtype=np.int64)
    n = len(users)
    order = np.lexsort((np.arange(n), np.asarray(times, dtype=np.int64), users))  # by user, time, read order
    u = users[order]
    first = np.concatenate([[True], u[1:] != u[:-1]]) if n else np.zeros(0, dtype=bool)
    starts = np.flatnonzero(first)
    group = np.cumsum(first) - 1
    size = np.diff(np.concatenate([starts, [n]]))[group]
    from_end = size - 1 - (np.arange(n) - starts[group])
    labels = np.full(n, "train", dtype=object)
    labels[(from_end == 0) & (size >= 2)] = "test"
    labels[(from_end == 1) & (size >= 3)] = "valid"
    out = np.empty(n, dtype=object)
    out[order] = labels
    return out


@dataclass
class Histories:
    """Per-user ordered item histories (oldest first) as CSR. ``targets``: per value, whether it is
    a next-item training target (None: all are); False for generated items that should only be
    context."""

    user_ids: np.ndarray             # int64 [n]
    values: np.ndarray               # int64 [nnz]
    offsets: np.ndarray              # int64 [n + 1]
    targets: np.ndarray | None = None  # bool [nnz]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def from_lists(cls, user_ids: Sequence[int] | np.ndarray, lists: Sequence[Any]) -> "Histories":
        """One history per user from lists of item ids (oldest first)."""
        v, o = rows_to_csr(lists)
        return cls(np.asarray(user_ids, dtype=np.int64), v, o)

    def to_lists(self) -> list[np.ndarray]:
        """One array of item ids per user (views into ``values``)."""
        return csr_rows(self.values, self.offsets)

    @classmethod
    def from_recent_items(cls, user_ids: np.ndarray, recent_items: Any, max_len: int, num_items: int) -> "Histories":
        """From the Feast list feature ``recent_items`` (most recent first): reversed, clipped to
        the vocabulary (unknown ids -> dropped), newest ``max_len`` kept."""
        v, o = csr_from_lists(recent_items, max_len=max_len)  # most recent first: the first max_len are the newest
        n = len(o) - 1
        lens = np.diff(o)
        # reverse each row: position j of row r -> o[r] + len[r] - 1 - (j - o[r])
        row = np.repeat(np.arange(n), lens)
        idx = np.arange(len(v)) - o[row]
        rev = v[o[row] + lens[row] - 1 - idx]
        ok = (rev >= 1) & (rev <= num_items)
        if not ok.all():
            rev, row = rev[ok], row[ok]
            lens = np.bincount(row, minlength=n)
        return cls(np.asarray(user_ids, dtype=np.int64), rev.astype(np.int64), offsets_of(lens))

    def truncate(self, max_len: int) -> "Histories":
        """Each history cut to its newest ``max_len`` items (targets carried)."""
        lengths = self.lengths
        if len(lengths) == 0 or lengths.max(initial=0) <= max_len:
            return self
        new_len = np.minimum(lengths, max_len)
        at = gather_index(self.offsets[1:] - new_len, new_len)
        return Histories(self.user_ids, self.values[at], offsets_of(new_len), None if self.targets is None else self.targets[at])

    def take(self, rows: np.ndarray | Sequence[int]) -> "Histories":
        """The histories of ``rows`` (positions, in that order; targets carried)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        at = gather_index(starts, lengths)
        return Histories(self.user_ids[rows], self.values[at], offsets_of(lengths), None if self.targets is None else self.targets[at])

    @staticmethod
    def concat(parts: Sequence["Histories"]) -> "Histories":
        """Rows of ``parts`` one after the other. A part without ``targets`` counts as all targets
        (the result has a mask only when some part has one)."""
        if not parts:
            return Histories(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(1, np.int64))
        targets = None
        if any(p.targets is not None for p in parts):
            targets = np.concatenate([np.ones(len(p.values), bool) if p.targets is None else np.asarray(p.targets, bool) for p in parts])
        return Histories(
            np.concatenate([np.asarray(p.user_ids, np.int64) for p in parts]),
            np.concatenate([np.asarray(p.values, np.int64) for p in parts]),
            offsets_of(np.concatenate([p.lengths for p in parts])),
            targets,
        )
