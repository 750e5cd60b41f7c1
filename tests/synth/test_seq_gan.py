"""The sequence generator: train-only vocabulary, conditioning, the two uses, the pipeline gates."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pytest

from ecaug_feast.histories import rows_to_csr
from ecaug_feast.synth.seq_gan import SEGMENTS, SeqGANConfig, SequenceGAN, segment_of

TINY = dict(embedding_dim=16, num_layers=1, num_heads=1, max_len=20, mle_epochs=2, adv_steps=3, adv_batch=16,
            batch_size=32, gen_max_len=8, threads=1, device="cpu")


@pytest.fixture(autouse=True)
def _quiet():
    logging.getLogger("torchrec").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


@pytest.fixture(scope="module")
def planted():
    """400 Beauty users as the study samples them; ``held_out``: items that occur in validation or
    test but in no training event (the leave-last-out split plants them; at least 20 are checked)."""
    from ecaug_feast.datasets import load_dataset
    from ecaug_feast.datasets.split import split_interactions
    from ecaug_feast.jobs.train_data import build_in_memory
    from recommender.seq_train import histories_for, seq_config_for
    from ecaug_feast.study.cell import sample_users

    ds = load_dataset("beauty")
    sp = split_interactions(ds)
    train, valid, test = sample_users(sp.train, sp.valid, sp.test, 400)
    data = build_in_memory(train, ds.items, valid)
    held_out = (set(valid["item_id"]) | set(test["item_id"])) - set(train["item_id"])
    assert len(held_out) >= 20
    scfg = seq_config_for(data, max_len=20)
    return data, scfg, held_out, histories_for(data, scfg, "valid"), histories_for(data, scfg, "test")


def test_held_out_items_never_reach_the_generator(planted):
    data, scfg, held_out, train_hist, test_hist = planted
    # control: the test-time histories (training + validation events) DO carry held-out items, so
    # a generator fitted on them would have them in its vocabulary: the check below can fail
    assert held_out & set(test_hist.values.tolist())
    g = SequenceGAN(SeqGANConfig(**TINY)).fit(train_hist.values, train_hist.offsets)
    assert not held_out & set(g.vocab.tolist())
    assert set(g.vocab.tolist()) == set(train_hist.values.tolist())
    hs, _ = g.sample_users(50, seed=1)
    ex = g.expand(train_hist.values, train_hist.offsets, np.arange(30), 5, seed=2)
    gen = set(np.concatenate(hs + ex).tolist())
    assert not held_out & gen


def test_study_pools_are_train_only(planted, tmp_path):
    """The study's pools (the real path: ``ecaug augment``'s builders, ``jobs.augment_seq.POOLS``)
    emit no held-out item."""
    from ecaug_feast.features.build import item_attributes
    from ecaug_feast.jobs.augment_seq import POOLS, TrainingHistories, seq_config
    from ecaug_feast.synth.seq_pipeline import HistoryTimes

    data, scfg, held_out, h, _ = planted
    th = TrainingHistories(h, HistoryTimes.of(data.train, h.user_ids), data.train, item_attributes(data.items), {}, data.num_items)
    cfg = seq_config({"gan": dict(TINY), "synthetic_share": 0.2}, seed=0)
    for method in ("seq_ops", "slide_window", "reppad", "pseudo_prior", "gan_no_labeler", "gan"):
        res = POOLS[method].build(th, cfg, None, tmp_path)
        assert res.histories, (method, res.metrics)
        assert not held_out & set(np.concatenate(res.histories).tolist()), method
    assert "c2st_auc_sequences" in res.metrics


def test_pipeline_reuses_a_fitted_generator(planted):
    """``augment_histories(..., gan=g)`` skips the fit and samples from ``g`` with its settings:
    the same generator at another temperature gives other histories (what seq_realism.py compares)."""
    from ecaug_feast.synth.seq_pipeline import SeqAugmentConfig, augment_histories

    _, _, _, h, _ = planted
    cfg = SeqAugmentConfig(gan=SeqGANConfig(**TINY), synthetic_share=0.1)
    g = SequenceGAN(cfg.gan).fit(h.values, h.offsets)
    a = augment_histories(h.values, h.offsets, cfg, gan=g)
    assert a.gan is g and a.metrics["generator"] is g.report and a.histories
    g.cfg.temperature = 0.5
    b = augment_histories(h.values, h.offsets, cfg, gan=g)
    assert b.metrics["fit_seconds"] < 1.0 and b.gan is g
    assert [x.tolist() for x in a.histories] != [x.tolist() for x in b.histories]


def test_expand_prepends_in_reverse_and_appends_forward(planted):
    _, _, _, h, _ = planted
    rows = np.flatnonzero(h.lengths == 2)[:10]
    for reverse in (True, False):
        g = SequenceGAN(SeqGANConfig(**{**TINY, "reverse": reverse, "adversarial": False})).fit(h.values, h.offsets)
        out = g.expand(h.values, h.offsets, rows, 4, seed=0)
        for r, e in zip(rows, out):
            real = h.values[h.offsets[r] : h.offsets[r + 1]]
            assert len(e) == 6 and len(set(e.tolist())) == 6  # no repeats of the prompt's items
            assert np.array_equal(e[-2:] if reverse else e[:2], real)


def test_segments_and_conditioning(planted):
    _, _, _, h, _ = planted
    assert list(segment_of(np.array([1, 3, 4, 7, 8]), np.zeros(5))) == [0, 0, 1, 1, 2]
    assert segment_of(np.array([5]), np.array([0.6]))[0] == SEGMENTS.index("tail")
    g = SequenceGAN(SeqGANConfig(**{**TINY, "mle_epochs": 4, "adversarial": False})).fit(h.values, h.offsets)
    hs, segs = g.sample_users(40, segment=SEGMENTS.index("cold"), seed=0)
    assert (segs == 0).all() and all(1 <= len(x) <= TINY["gen_max_len"] for x in hs)
    assert g.report["nll_mle"] < np.log(len(g.vocab) + 1)  # better than a uniform guess


def test_sequence_gates_detect_copies_and_collapse():
    from ecaug_feast.quality import seq_metrics as SM

    rng = np.random.default_rng(0)
    real = [rng.choice(np.arange(1, 300), size=n, replace=False) for n in rng.integers(3, 12, 200)]
    v, o = rows_to_csr(real)
    ts = SM.TrainingStats(v, o, np.arange(150, 300))
    copies = [r.copy() for r in real[:20]]
    c = SM.copies(real, ts, copies)
    assert c["exact_copy_share"] == 1.0 and c["near_copy_share"] == 1.0 and c["trigram_copy_share"] == 1.0
    fresh = [np.array([1, 2, 3, 4]) for _ in range(20)]  # mode collapse: one history repeated
    cov = SM.coverage(ts, fresh)
    assert cov["catalogue_coverage"] < 0.02 and cov["tail_share"] == 0.0
    assert np.allclose(SM.set_dcr(real, copies), 0.0)
    win = SM.real_windows(real, [3, 5, 50])
    assert [len(w) for w in win] == [3, 5]  # no real history reaches 50 items


def test_feature_rows_follow_the_histories_in_the_synthetic_key_space(planted):
    from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE
    from ecaug_feast.synth.seq_pipeline import feature_rows

    data, *_ = planted
    attrs = dict(zip(data.items["item_id"].astype(int), data.items["attributes"]))
    hists = [np.array([5, 6, 7]), np.array([9])]
    end = np.full(2, int(data.train["event_timestamp"].max().value))
    fr = feature_rows(hists, end, data.train, attrs)
    assert (fr["user_id"] >= SYNTHETIC_USER_ID_BASE).all()
    last = fr.groupby("user_id").tail(1).set_index("user_id")
    assert last.loc[SYNTHETIC_USER_ID_BASE, "recent_items"] == [7, 6, 5]  # most recent first, as real rows
    assert last.loc[SYNTHETIC_USER_ID_BASE, "n_interactions"] == 3
    assert last.loc[SYNTHETIC_USER_ID_BASE + 1, "recent_items"] == [9]
    with pytest.raises(ValueError):
        feature_rows(hists, end, data.train, attrs, first_id=5)


def test_generated_rows_count_only_real_events_as_popularity(planted):
    """Two generated users consuming the same items in turn: each one's item popularity is the
    real training count before the event, not raised by the other generated user."""
    from ecaug_feast.features.build import popularity_at
    from ecaug_feast.synth.seq_pipeline import features_of_events, synthetic_events

    data, *_ = planted
    attrs = dict(zip(data.items["item_id"].astype(int), data.items["attributes"]))
    end = np.full(2, int(data.train["event_timestamp"].max().value))
    ev = synthetic_events([np.array([5, 6, 7, 8]), np.array([8, 7, 6, 5])], end, data.train)
    fr = features_of_events(ev, data.train, attrs)
    real = popularity_at(ev, data.train)  # events are oldest first per user
    for k, uid in enumerate(sorted(ev["user_id"].unique())):
        rows = fr[fr["user_id"] == uid].sort_values("event_timestamp")
        p = real[ev["user_id"].to_numpy() == uid]
        want = [p[:n].mean() if n else 0.0 for n in rows["n_interactions"]]
        np.testing.assert_allclose(rows["mean_item_popularity"], want, rtol=1e-5)


def test_history_end_times_follow_the_source_user():
    """An expansion ends where its real user's history ends; a synthetic user where some real one's does."""
    from ecaug_feast.synth.seq_pipeline import history_end_times

    last = np.array([100, 200, 300], np.int64)
    end = history_end_times(np.array([2, 0, -1, -1, 1]), last, seed=0)
    assert end[[0, 1, 4]].tolist() == [300, 100, 200]
    assert set(end[[2, 3]].tolist()) <= set(last.tolist())


def test_window_c2st_tells_random_histories_apart_but_not_real_ones():
    """Histories that follow the real transitions score near .5 (and the real-vs-real control
    too); uniformly random items are caught. Each real reference window comes from a distinct
    history: with few long real histories the old whole-length reference repeated them and the
    detector memorised the repeats."""
    from ecaug_feast.quality import seq_metrics as SM
    from ecaug_feast.histories import rows_to_csr

    rng = np.random.default_rng(0)
    nxt = rng.integers(1, 400, size=(401, 3))  # each item has 3 likely successors

    def walk(n: int) -> np.ndarray:
        h = [int(rng.integers(1, 401))]
        for _ in range(n - 1):
            h.append(int(nxt[h[-1], rng.integers(0, 3)]) if rng.random() < 0.9 else int(rng.integers(1, 401)))
        return np.array(h)

    real = [walk(int(n)) for n in rng.integers(5, 12, 3000)]
    v, o = rows_to_csr(real)
    ts = SM.TrainingStats(v, o, np.arange(200, 401))
    like = [walk(int(n)) for n in rng.integers(5, 12, 800)]
    random_h = [rng.integers(1, 401, int(n)) for n in rng.integers(5, 12, 800)]
    ok = SM.window_c2st(like, [None] * len(like), real, ts, seed=0)
    bad = SM.window_c2st(random_h, [None] * len(random_h), real, ts, seed=0)
    assert ok["rows"] == 800 and ok["auc"] < 0.65 and ok["real_vs_real"] < 0.65
    assert bad["auc"] > 0.9
    # an expansion of a real history scored leave-one-out: its own transitions do not count
    st = SM.history_stats([real[0]], ts, [real[0]])
    assert st["known_transition_share"].iloc[0] <= SM.history_stats([real[0]], ts)["known_transition_share"].iloc[0]


@pytest.mark.parametrize("heads", [1, 2])  # 2 heads: torch's fused encoder path in the reference
def test_cached_decoding_matches_the_step_by_step_path(planted, heads):
    """The KV-cached sampler (each step runs only the newest token, projects only the last position)
    emits the SAME tokens as the reference that re-runs the whole prefix per token: both draw the
    same uniform numbers in the same order and their logits agree to float rounding (checked too), so
    only an exact near-tie could flip a token, and the seeds below have none."""
    import torch

    _, _, _, h, _ = planted
    g = SequenceGAN(SeqGANConfig(**{**TINY, "num_layers": 2, "num_heads": heads, "adversarial": False})).fit(h.values, h.offsets)
    g.gen.eval()
    V = len(g.vocab)
    rows = np.flatnonzero(h.lengths == 3)[:40]
    prompts = g._pad(g._encode_rows(h.values, h.offsets, np.zeros(len(h.lengths), np.int64), eos=False))[rows][:, :4]
    seg_prompts = (V + 2 + np.arange(64) % len(SEGMENTS))[:, None]
    for p, n, eos in ((prompts, 10, False), (seg_prompts, TINY["gen_max_len"], True)):
        fast = g._sample_tokens(p, n, eos, g._torch_rng(5)).numpy()
        ref = g._sample_tokens(p, n, eos, g._torch_rng(5), cached=False).numpy()
        assert fast.shape == ref.shape and np.array_equal(fast, ref)
        assert len(np.unique(fast[:, p.shape[1]:])) > 5  # it sampled, not a constant
    # logits: prefill on the prompt, then one token at a time, against the full forward pass
    x = torch.from_numpy(g._pad(g._encode_rows(h.values, h.offsets, np.zeros(len(h.lengths), np.int64))[:50]))
    with torch.no_grad():
        full = g.gen(x)
        cache = [[] for _ in g.gen.enc.layers]
        steps = [g.gen.decode_step(x[:, :3], cache, 0)] + [g.gen.decode_step(x[:, t : t + 1], cache, t) for t in range(3, x.shape[1])]
        assert torch.allclose(torch.stack(steps, 1), full[:, 2:], atol=1e-5)
        keep = x[:, 1:] > 0  # projecting only the kept positions: the same logits
        assert torch.allclose(g.gen(x[:, :-1], keep), full[:, :-1][keep], atol=1e-6)


def test_transition_mix_follows_the_training_transitions():
    """``transition_mix`` 1: every generated item is one a training history had next to the
    previous one (here: item j is always preceded by j - 1, and generation runs backwards); 0:
    the barely trained generator alone does not keep to that chain."""
    hists = [np.arange(s, s + 4) for s in range(1, 201)]
    v, o = rows_to_csr(hists)
    rows = np.arange(10, 60)
    out = {}
    for mix in (1.0, 0.0):
        g = SequenceGAN(SeqGANConfig(**{**TINY, "mle_epochs": 1, "adversarial": False, "transition_mix": mix})).fit(v, o)
        out[mix] = g.expand(v, o, rows, 2, seed=0)
    for r, e in zip(rows, out[1.0]):
        first = hists[r][0]
        assert e[:2].tolist() == [first - 2, first - 1], (r, e)
    assert sum(e[:2].tolist() != [hists[r][0] - 2, hists[r][0] - 1] for r, e in zip(rows, out[0.0])) > 25


def test_next_log_probs_are_the_first_draws_distribution():
    """``next_log_probs``: the distribution ``expand``'s first draw comes from, sampling settings
    applied. With ``transition_mix`` 1 it is the training transitions out of the row's newest item
    (forward: item j is followed by j + 1 or j + 2, 3:1); a row's own items get -inf; each row
    sums to 1; and ``expand`` draws what it gives mass to."""
    hists = [np.array([s, s + 1, s + 2]) if s % 4 else np.array([s, s + 2]) for s in range(1, 201)]
    v, o = rows_to_csr(hists)
    g = SequenceGAN(SeqGANConfig(**{**TINY, "mle_epochs": 1, "adversarial": False, "reverse": False,
                                    "transition_mix": 1.0, "epsilon": 0.0})).fit(v, o)
    rows = np.arange(20, 60)
    lp = g.next_log_probs(v, o, rows)
    assert lp.shape == (len(rows), len(g.vocab))
    assert np.allclose(lp.exp().sum(1).numpy(), 1.0, atol=1e-5)
    col = {int(x): j for j, x in enumerate(g.vocab)}
    for r, row in zip(rows, lp.numpy()):
        last = int(hists[r][-1])
        assert all(row[col[int(x)]] == -np.inf for x in hists[r])
        # the training pairs (last -> last + 1) and (last -> last + 2), counted over all histories
        pairs = [(a, b) for h in hists for a, b in zip(h[:-1], h[1:]) if a == last]
        want = {b: n / len(pairs) for b, n in zip(*np.unique([b for _, b in pairs], return_counts=True))} if pairs else {}
        got = {int(g.vocab[j]): float(np.exp(row[j])) for j in np.flatnonzero(row > -np.inf) if np.exp(row[j]) > 1e-6}
        if want:
            assert got.keys() == want.keys() and all(abs(got[b] - p) < 1e-5 for b, p in want.items()), (r, got, want)
    first = [e[-1] for e in g.expand(v, o, rows, 1, seed=3)]
    assert all(lp[j, col[int(x)]] > -np.inf for j, x in enumerate(first))
    # another model's scores in the network's place, no sampling settings: their softmax over the
    # items the row does not have
    import torch
    from dataclasses import replace

    g.cfg = replace(g.cfg, transition_mix=0.0)
    base = torch.randn(len(rows), len(g.vocab))
    lp = g.next_log_probs(v, o, rows, base_logits=base)
    for j, r in enumerate(rows):
        own = torch.tensor([col[int(x)] for x in hists[r]])
        want = base[j].clone()
        want[own] = -math.inf
        assert torch.allclose(lp[j], torch.log_softmax(want, -1))


def test_a_teacher_continues_histories_in_the_networks_place():
    """``expand(teacher=)``: each appended item is drawn from the teacher's scores for the history
    so far (here: always the newest item + 1, a certain choice), the real items stay first, each
    row gets its own ``n_new``; a reversed generator refuses a teacher (it predicts next items)."""
    import torch

    hists = [np.array([s, s + 1]) for s in range(1, 201)]
    v, o = rows_to_csr(hists)
    g = SequenceGAN(SeqGANConfig(**{**TINY, "mle_epochs": 1, "adversarial": False, "reverse": False,
                                    "transition_mix": 0.0, "epsilon": 0.0})).fit(v, o)
    calls = []

    def teacher(values, offsets):
        calls.append(len(offsets) - 1)
        S = torch.full((len(offsets) - 1, 400), -30.0)
        last = values[offsets[1:] - 1]
        S[torch.arange(len(last)), torch.from_numpy(last + 1)] = 30.0
        return S

    rows = np.arange(10, 20)
    n_new = np.array([3] * 5 + [1] * 5)
    out = g.expand(v, o, rows, n_new, seed=0, teacher=teacher)
    for r, k, e in zip(rows, n_new, out):
        s0 = int(hists[r][0])
        assert e.tolist() == list(range(s0, s0 + 2 + k))
    assert calls == [10, 5, 5]  # the rows still growing, re-read each step
    rev = SequenceGAN(SeqGANConfig(**{**TINY, "mle_epochs": 1, "adversarial": False})).fit(v, o)
    with pytest.raises(ValueError, match="continue"):
        rev.expand(v, o, rows, 2, teacher=teacher)


def test_a_teacher_cannot_put_held_out_items_into_a_history(planted):
    """A teacher scores the whole catalogue (the item tower reads attributes, so items seen only in
    validation or test have scores too); its draws are limited to the generator's train-only
    vocabulary, so even a teacher that prefers the held-out items never emits one."""
    import torch

    _, _, held_out, h, _ = planted
    g = SequenceGAN(SeqGANConfig(**{**TINY, "mle_epochs": 1, "adversarial": False, "reverse": False})).fit(h.values, h.offsets)
    hot = torch.tensor(sorted(held_out))

    def teacher(values, offsets):
        S = torch.zeros(len(offsets) - 1, max(int(h.values.max()), int(hot.max())) + 1)
        S[:, hot] = 50.0
        return S

    out = g.expand(h.values, h.offsets, np.arange(len(h.user_ids)), 3, teacher=teacher)
    new = np.concatenate([e[-3:] for e in out])
    assert len(new) == 3 * len(h.user_ids) and not set(new.tolist()) & held_out and np.isin(new, g.vocab).all()


def test_pipeline_gates_a_teachers_continuations_not_the_real_items_before_them(planted):
    """With a teacher, the copy gate reads what was generated: the items APPENDED to each short
    history (each expanded twice, ``expansions`` 2). A teacher that always continues with a real three-item history (a, b, c) makes every
    generated part an exact copy of it, whatever the real items before it."""
    import torch

    from ecaug_feast.synth.seq_pipeline import SeqAugmentConfig, augment_histories

    _, _, _, h, _ = planted
    rows = [h.values[h.offsets[i] : h.offsets[i + 1]] for i in range(len(h.user_ids))]
    counts = np.bincount(h.values)
    copy = min((r for r in rows if len(r) == 3), key=lambda r: counts[r].sum()).tolist()  # the rarest such history
    a, b, c = copy

    def teacher(values, offsets):
        last = torch.from_numpy(values[offsets[1:] - 1])
        S = torch.full((len(offsets) - 1, int(h.values.max()) + 1), -30.0)
        S[:, a] = 30.0
        S[last == a, b] = 60.0  # after a comes b, after b comes c
        S[last == b, c] = 60.0
        return S

    cfg = SeqAugmentConfig(gan=SeqGANConfig(**{**TINY, "reverse": False, "adversarial": False, "transition_mix": 0.0, "epsilon": 0.0}),
                           n_new=3, synthetic_share=0.0, expand_below=30, expansions=2)
    res = augment_histories(h.values, h.offsets, cfg, teacher=teacher)
    # two expansions of each short history (independent draws; here the same certain ones)
    n_short = int(((h.lengths >= 1) & (h.lengths < 30)).sum())
    assert res.metrics["expanded"] == 2 * n_short and np.all(np.bincount(res.source)[np.unique(res.source)] <= 2)
    clean = [x for x in res.histories if not set(copy) & set(x[:-3].tolist())]  # users holding none of a, b, c
    assert len(clean) >= 0.8 * len(res.histories) and all(x[-3:].tolist() == copy for x in clean)
    assert res.metrics["exact_copy_share"] >= len(clean) / len(res.histories) - 1e-4, res.metrics["exact_copy_share"]  # rounded to 4 places


def test_categorical_draws_follow_the_softmax_and_never_a_banned_token():
    """The two-level inverse-CDF sampler: frequencies match softmax(logits) over a vocabulary that
    is not a multiple of the block size (a token in the padded last block included), tokens at -inf
    are never drawn, and one seed gives one sequence of draws."""
    import torch

    from ecaug_feast.synth.seq_gan import _categorical

    V = 300  # blocks of 128: the last one padded
    logits = torch.full((V,), -math.inf)
    live = np.array([0, 5, 127, 128, 200, 299])
    logits[live] = torch.tensor([0.0, 1.0, -1.0, 2.0, 0.5, -3.0])
    n = 60_000
    draws = _categorical(logits.repeat(n, 1), torch.Generator().manual_seed(0)).numpy()
    assert set(np.unique(draws)) <= set(live)
    freq = np.bincount(draws, minlength=V)[live] / n
    p = torch.softmax(logits[live], 0).numpy()
    assert np.abs(freq - p).max() < 4 * np.sqrt(p.max() / n) + 1e-3, (freq, p)
    again = _categorical(logits.repeat(n, 1), torch.Generator().manual_seed(0)).numpy()
    assert np.array_equal(draws, again)


def test_attr_coherence_keeps_a_row_to_its_attributes():
    """``attr_coherence``: items sharing the row's (idf-weighted) attributes get the bonus. Two
    disjoint item groups (attributes 1 and 2; attribute 0 on every item weighs nothing): with a
    strong coherence an expansion of a group-1 prompt stays in group 1; off, the barely trained
    generator mixes the groups. Without attributes it is not applied."""
    rng = np.random.default_rng(0)
    hists = [rng.choice(np.arange(1, 201), 4, replace=False) for _ in range(300)]
    v, o = rows_to_csr(hists)
    attrs = {i: [0, 1 if i <= 100 else 2] for i in range(1, 201)}
    group1 = np.array([r for r in range(len(hists)) if (hists[r] <= 100).all()])
    assert len(group1) >= 5
    share = {}
    for coh in (30.0, 0.0):
        g = SequenceGAN(SeqGANConfig(**{**TINY, "mle_epochs": 1, "adversarial": False, "transition_mix": 0.0,
                                        "attr_coherence": coh})).fit(v, o)
        assert g.attr_coherence_applied == 0.0  # no attributes yet
        g.set_item_attributes(attrs)
        assert g.attr_coherence_applied == coh
        out = g.expand(v, o, group1, 3, seed=0)
        new = np.concatenate([e[:3] for e in out])
        share[coh] = float((new <= 100).mean())
    assert share[30.0] == 1.0 and share[0.0] < 0.8, share
    # the bonus kept up to date step by step equals the one computed from scratch on the whole rows
    import torch

    g.set_item_attributes({i: [0, 1 + i % 7, 9 + i % 3] for i in range(1, 201)})
    x = torch.from_numpy(rng.integers(0, g.n_tok, (16, 3)))
    seen, coh = g._coherence_start(x, 2.0)
    for _ in range(5):
        nxt = torch.from_numpy(rng.integers(0, g.n_out, 16))
        g._coherence_update(seen, coh, nxt, 2.0)
        x = torch.cat([x, nxt[:, None]], 1)
    assert torch.allclose(coh, g._coherence_start(x, 2.0)[1], atol=1e-5)


def test_sparse_transition_mix_equals_the_dense_mixture():
    """The per-step mixture is taken on the stored transitions only; it equals the dense
    ``log((1 - mix) softmax + mix t / sum t)`` over seen-masked rows (rows without transitions, or
    with all of them seen: the log-softmax alone), for mix in (0, 1]."""
    import torch

    rng = np.random.default_rng(0)
    B, V = 6, 40
    for mix in (0.08, 0.5, 1.0):
        logits = torch.from_numpy(rng.normal(size=(B, V)).astype(np.float32))
        seen = torch.from_numpy(rng.random((B, V)) < 0.2)
        seen[:, 0] = True
        logits.masked_fill_(seen, -np.inf)
        dense = torch.zeros(B, V)
        for b in range(B - 2):  # the last two rows: no transitions at all / only seen ones
            cols = rng.choice(np.arange(1, V), 5, replace=False)
            dense[b, cols] = torch.from_numpy(rng.random(5).astype(np.float32))
        seen[B - 1, 1:4] = True
        dense[B - 1, 1:4] = 0.3
        row, col = dense.nonzero(as_tuple=True)
        got = SequenceGAN._mix_transitions(logits.clone(), (row, col, dense[row, col]), seen, mix)
        tb = dense.masked_fill(seen, 0.0)
        tot = tb.sum(1, keepdim=True)
        pg = torch.softmax(logits, -1)
        ref = torch.where(tot > 0, (1 - mix) * pg + mix * tb / tot.clamp(min=1e-12), pg).log()
        fin = torch.isfinite(ref)
        assert torch.equal(fin, torch.isfinite(got)), mix
        assert torch.allclose(got[fin], ref[fin], atol=1e-5), mix


def test_pipeline_dates_what_it_generates(planted):
    """Given the training times, each accepted history gets an end time (an expansion's: its
    real user's last event; a synthetic user's: some real user's)."""
    from ecaug_feast.synth.seq_pipeline import HistoryTimes, SeqAugmentConfig, augment_histories

    data, _, _, h, _ = planted
    times = HistoryTimes.of(data.train, h.user_ids)
    cfg = SeqAugmentConfig(gan=SeqGANConfig(**TINY), synthetic_share=0.1)
    g = SequenceGAN(cfg.gan).fit(h.values, h.offsets)
    a = augment_histories(h.values, h.offsets, cfg, gan=g, times=times)
    exp = a.kind == "expanded"
    assert exp.any() and (~exp).any()
    assert np.array_equal(a.end_ns[exp], times.last_ns[a.source[exp]])
    assert set(a.end_ns[~exp].tolist()) <= set(times.last_ns.tolist())
    assert augment_histories(h.values, h.offsets, cfg, gan=g).end_ns is None  # no times: the caller dates them
    assert 0 < a.metrics["catalogue_coverage"] <= 1.0  # of the vocabulary (was over the fitted rows only: > 1 at 25 %)


def test_column_aucs_name_what_separates():
    """One column at a time: a shifted column reads well above .5, an identical one .5."""
    import pandas as pd

    from ecaug_feast.quality.metrics import column_aucs

    rng = np.random.default_rng(0)
    real = pd.DataFrame({"same": rng.normal(size=500), "shifted": rng.normal(size=500)})
    syn = pd.DataFrame({"same": rng.normal(size=500), "shifted": rng.normal(1.0, 1.0, 500)})
    out = column_aucs(real, syn)
    assert out["shifted"]["auc"] > 0.7 and out["same"]["auc"] < 0.56
    assert out["shifted"]["synth_mean"] > out["shifted"]["real_mean"]


def test_bad_sampling_settings_are_refused():
    for bad in ({"epsilon": 1.0}, {"epsilon": -0.1}, {"transition_mix": -0.1}, {"attr_coherence": -1.0}):
        with pytest.raises(ValueError):
            SeqGANConfig(**bad)


def test_epsilon_drops_items_below_min_prob_but_never_the_best_or_eos():
    import torch

    from ecaug_feast.synth.seq_gan import _epsilon

    lp = torch.log(torch.tensor([[0.05, 0.5, 0.3, 0.15], [0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(_epsilon(lp.clone(), 0.1, keep=3)).tolist() == [[False, True, True, True], [True, True, True, True]]
    # a threshold above every item: the most probable one and EOS are left
    assert torch.isfinite(_epsilon(lp.clone(), 0.9, keep=3)).tolist() == [[False, True, False, True], [True, False, False, True]]
