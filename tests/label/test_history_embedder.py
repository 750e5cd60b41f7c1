"""``HistoryEmbedder`` embeds all histories at once; its rows equal the per-history loop it
replaced (kept here as the reference), unknown items, empty histories and repeats included."""

from __future__ import annotations

import numpy as np

from ecaug_feast.label.seq_labeler import HistoryEmbedder


def _reference(emb: HistoryEmbedder, hists) -> np.ndarray:
    d = emb.vec.shape[1]
    out = np.zeros((len(hists), d + 3))
    for i, h in enumerate(hists):
        h = np.asarray(h, np.int64)
        pos = np.searchsorted(emb.ids, h).clip(0, max(len(emb.ids) - 1, 0))
        ok = emb.ids[pos] == h if len(h) else np.zeros(0, bool)
        if ok.any():
            out[i, :d] = emb.vec[pos[ok]].mean(0)
            out[i, d + 2] = emb.logpop[pos[ok]].mean()
        out[i, d] = np.log1p(len(h))
        out[i, d + 1] = np.isin(h, emb.tail).mean() if len(h) else 0.0
    return out


def test_embeddings_equal_the_per_history_loop():
    rng = np.random.default_rng(0)
    ids = rng.choice(np.arange(1, 200), 120, replace=False)  # unsorted vocabulary: the embedder sorts it
    emb = HistoryEmbedder(ids, rng.normal(size=(120, 8)), rng.integers(1, 50, 120), np.sort(ids)[:40])
    hists = [rng.integers(1, 230, int(k)) for k in rng.integers(0, 15, 300)]  # unknown ids (>= 200, gaps) and empty rows
    hists += [np.array([999, 998]), np.array([], np.int64), np.array([ids[0]] * 4)]
    np.testing.assert_allclose(emb(hists), _reference(emb, hists), rtol=0, atol=1e-12)
    assert emb([]).shape == (0, 11)
