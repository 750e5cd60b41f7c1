"""Sequence GAN pipeline: fit on training histories -> expand short users + whole synthetic users for
sparse segments -> segment labeler (drop low-confidence / off-segment) -> gates -> accepted histories,
with feature rows built from them by the same builder as real users (features follow behaviour).

Arrays in, arrays out: histories are oldest-first CSR (``values``, ``offsets``) of TRAINING events;
nothing here reads validation or test data, and nothing imports ``recommender``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ecaug_feast import schema as S
from ecaug_feast.features.build import build_user_features
from ecaug_feast.histories import csr_rows, csr_take, offsets_of, rows_to_csr
from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE
from ecaug_feast.label.seq_labeler import HistoryEmbedder, SeqLabeler, SeqLabelerConfig
from ecaug_feast.quality import seq_metrics as SM
from ecaug_feast.quality.metrics import c2st_auc
from ecaug_feast.synth.seq_gan import SEGMENTS, SeqGANConfig, SequenceGAN, WarmStart, sample_gaps, segment_of
from ecaug_feast.synth.seq_refine import RefineConfig

logger = logging.getLogger(__name__)


@dataclass
class SeqAugmentConfig:
    gan: SeqGANConfig = field(default_factory=SeqGANConfig)
    expand_below: int = 8          # real histories shorter than this get generated items
    n_new: int = 10                # generated items per expanded history (ASReP used up to 15)
    expansions: int = 1            # expansions per short history (independent draws: more of a teacher's distribution)
    # the pool's size rule, read by the jobs that build pools (jobs.augment_seq.matched_draw), not here:
    # draw half as many again and keep exactly expansions x the short histories of what passed (the
    # study's size-matched pools, and what `ecaug augment` draws with a teacher); False: keep all that passed
    match_size: bool = False
    # which of the passed histories the size rule keeps: "random" (a seeded choice) or
    # "discriminator" (the ones the adversarial stage's discriminator finds most real; the study's
    # gan_disc_select; needs ``refine``, a teacher and ``match_size``)
    keep: str = "random"
    synthetic_share: float = 0.25  # whole synthetic users, as a share of the real histories
    sparse_share: float = 0.2      # segments holding less than this share of real users are "sparse"
    labeler: SeqLabelerConfig = field(default_factory=SeqLabelerConfig)
    # the adversarial stage (synth.seq_refine): a teacher's continuations come from the teacher
    # refined against a discriminator under a KL penalty to itself; None = the teacher as trained
    refine: RefineConfig | None = None
    max_c2st_auc: float = 0.80     # run-level gate on histories and (the augment job) their feature rows
                                   # (same bar as the column gate)
    privacy_quantile: float = 0.05
    c2st_rows: int = 3000
    c2st_width: int = 5            # items per window the history detector reads
    seed: int = 0

    def __post_init__(self) -> None:
        if self.keep not in KEEP:
            raise ValueError(f"keep {self.keep!r}: one of {', '.join(KEEP)}")
        if self.keep == "discriminator" and (self.refine is None or not self.match_size):
            raise ValueError("keep 'discriminator' selects with the adversarial stage's discriminator out of a larger "
                             "draw: it needs refine (an object of RefineConfig fields) and match_size true")


KEEP = ("random", "discriminator")


@dataclass
class HistoryTimes:
    """When the TRAINING histories happened: per history row its first and last event time (ns),
    and every training event's (item, time) for the time prior. Built by :meth:`of`."""

    first_ns: np.ndarray
    last_ns: np.ndarray
    event_items: np.ndarray
    event_ns: np.ndarray

    @classmethod
    def of(cls, train: pd.DataFrame, user_ids: np.ndarray) -> "HistoryTimes":
        """From the training events (``user_id``, ``item_id``, ``event_timestamp``) and the user
        of each history row; a row whose user has no event gets the last training time."""
        ts = pd.to_datetime(train[S.EVENT_TIMESTAMP], utc=True).astype("datetime64[ns, UTC]").astype("int64")
        by = ts.groupby(train[S.USER_ID].to_numpy())
        end = int(ts.max()) if len(ts) else 0
        first = by.min().reindex(user_ids).fillna(end).to_numpy(np.int64)
        last = by.max().reindex(user_ids).fillna(end).to_numpy(np.int64)
        return cls(first, last, train[S.ITEM_ID].to_numpy(np.int64), ts.to_numpy(np.int64))


@dataclass
class SeqAugmentResult:
    histories: list[np.ndarray]        # accepted histories, oldest first
    kind: np.ndarray                   # "expanded" | "synthetic" per accepted history
    source: np.ndarray                 # row of the real history an expansion came from (-1: synthetic)
    segment: np.ndarray                # labeler segment per accepted history
    confidence: np.ndarray
    gate_passed: bool
    metrics: dict[str, Any]
    gan: SequenceGAN | None = None
    end_ns: np.ndarray | None = None   # when each accepted history ends (given ``times``)

    def csr(self) -> tuple[np.ndarray, np.ndarray]:
        return rows_to_csr(self.histories)


def embedder_for(gan: SequenceGAN) -> HistoryEmbedder:
    """History embeddings from the generator's (MLE-trained, train-only) item token vectors."""
    w = gan.gen.tok.weight.detach().float().cpu().numpy()[1 : len(gan.vocab) + 1]
    return HistoryEmbedder(gan.vocab, w, gan.item_counts, gan.tail)


def augment_histories(values: np.ndarray, offsets: np.ndarray, config: SeqAugmentConfig | None = None,
                      report_dir: str | Path | None = None, gan: SequenceGAN | None = None,
                      times: HistoryTimes | None = None, attributes: dict[int, list[int]] | None = None,
                      teacher: Callable[[np.ndarray, np.ndarray], Any] | None = None,
                      warm: WarmStart | None = None) -> SeqAugmentResult:
    """The whole pipeline on TRAINING histories; ``report_dir``: where the figure goes (optional).
    ``gan``: a generator already fitted on these same histories (the fit is skipped: e.g. to
    compare sampling settings, ``benchmarks/seq_realism.py``); ``config.gan`` is then unused.
    ``times``: when the histories happened; then each accepted history gets an end time
    (``end_ns``: an expansion where its user's history ends, a synthetic user where a random real
    user's does, drawn before generation). ``attributes`` (item id -> attribute ids): what the
    generator's ``attr_coherence`` reads (without them it is not applied; ``metrics["attr_coherence"]``
    says what was). ``teacher``: a next-item model whose scores replace the generator network's
    when expanding (continuations only; :meth:`SequenceGAN.expand`); whole synthetic users still
    come from the network. ``warm``: the generator continues from a saved one (a refresh;
    :class:`~ecaug_feast.synth.seq_gan.WarmStart`) instead of a random start."""
    cfg = config or SeqAugmentConfig()
    t0 = time.time()
    values, offsets = np.asarray(values, np.int64), np.asarray(offsets, np.int64)
    real = csr_rows(values, offsets)
    if gan is None:
        gan = SequenceGAN(cfg.gan).fit(values, offsets, warm=warm)
    if attributes is not None and gan.cfg.attr_coherence > 0:
        gan.set_item_attributes(attributes)
    t_fit = time.time() - t0

    drawn = _generate(gan, cfg, values, offsets, len(real), times, teacher)
    short, expanded, synthetic, asked = drawn.short, drawn.expanded, drawn.synthetic, drawn.asked
    sparse, syn_end = drawn.sparse, drawn.syn_end
    t_gen = time.time() - t0 - t_fit
    gen = list(expanded) + list(synthetic)
    kind = np.array(["expanded"] * len(expanded) + ["synthetic"] * len(synthetic))
    source = np.concatenate([short, np.full(len(synthetic), -1)]).astype(np.int64)

    end = None if times is None else np.concatenate([times.last_ns[short], syn_end if len(synthetic) else np.zeros(0, np.int64)])
    res = _label_and_gate(gan, cfg, values, offsets, real, gen, kind, source, [real[i] for i in short],
                          synthetic, asked, cfg.n_new, end, report_dir)
    res.metrics.update(sparse_segments=[SEGMENTS[s] for s in sparse], fit_seconds=round(t_fit, 2),
                       generate_seconds=round(t_gen, 2), total_seconds=round(time.time() - t0, 2))
    return res


def gate_expansions(values: np.ndarray, offsets: np.ndarray, gen: list[np.ndarray], source: np.ndarray,
                    context: list[np.ndarray], gan: SequenceGAN, config: SeqAugmentConfig | None = None,
                    n_new: int = 1, times: HistoryTimes | None = None,
                    report_dir: str | Path | None = None) -> SeqAugmentResult:
    """Histories made outside the generator, each continuing real training history ``source[k]``
    (its ``context[k]``: the part of that history it keeps) by its last ``n_new`` items, through the
    same labeler and gates as :func:`augment_histories`' expansions: the labeler (fitted on the real
    histories; a history must stay in its context's cluster, confidence over the threshold), the
    copy statistics, coverage and the history detector (the run gate). ``gan``: fitted on these
    training histories (its item vectors embed histories for the labeler; its held-out rows are
    the privacy reference). With ``times`` each history ends where its source's does."""
    cfg = config or SeqAugmentConfig()
    values, offsets = np.asarray(values, np.int64), np.asarray(offsets, np.int64)
    source = np.asarray(source, np.int64)
    if not (len(gen) == len(source) == len(context)):
        raise ValueError(f"gen, source and context differ in length: {len(gen)}, {len(source)}, {len(context)}")
    real = csr_rows(values, offsets)
    end = None if times is None else times.last_ns[source]
    return _label_and_gate(gan, cfg, values, offsets, real, list(gen), np.array(["expanded"] * len(gen)), source,
                           list(context), [], np.zeros(0, np.int64), n_new, end, report_dir, forward=True)


def _label_and_gate(gan: SequenceGAN, cfg: SeqAugmentConfig, values: np.ndarray, offsets: np.ndarray,
                    real: list[np.ndarray], gen: list[np.ndarray], kind: np.ndarray, source: np.ndarray,
                    context: list[np.ndarray], synthetic: list[np.ndarray], asked: np.ndarray, n_new: int,
                    end: np.ndarray | None, report_dir: str | Path | None, forward: bool | None = None) -> SeqAugmentResult:
    """Labeler, privacy, copies, coverage and the realism gate on ``gen`` (the expansions first,
    each with its ``context``, then the ``synthetic`` users); the result keeps what passed.
    ``forward``: the new items are each expansion's last ``n_new`` (None: as the generator runs)."""
    logger.info("labelling and gating %d generated histories", len(gen))
    nonempty = [h for h in real if len(h)]
    lab, seg_pred, conf, off = _label(gan, cfg, nonempty, gen, context, synthetic, asked)
    low = conf < cfg.labeler.threshold

    # gates: privacy (set DCR of generated items vs holdout rule), copies, C2ST, coverage
    fit = np.setdiff1d(np.arange(len(offsets) - 1), gan.holdout_rows)
    fit_v, fit_lens = csr_take(values, offsets, fit)
    ts = SM.TrainingStats(fit_v, offsets_of(fit_lens), gan.tail)  # statistics from the rows the generator fitted on
    # what was made: an expansion's first n_new items when prepended, its last ones when continued
    ahead = (not gan.cfg.reverse) if forward is None else forward
    gen_part = [(h[max(0, len(h) - n_new) :] if ahead else h[:n_new]) if k == "expanded" else h for h, k in zip(gen, kind)]
    thr, priv, dcr = _privacy(gan, cfg, real, nonempty, gen_part, kind)
    keep = ~(low | off | priv)
    acc = [h for h, k in zip(gen, keep) if k]
    m: dict[str, Any] = {
        "generated": len(gen), "expanded": int((kind == "expanded").sum()), "synthetic": int(len(synthetic)),
        "accepted": int(keep.sum()), "dropped_low_confidence": int(low.sum()), "dropped_off_segment": int((off & ~low).sum()),
        "dropped_privacy": int((priv & ~low & ~off).sum()), "privacy_threshold": round(thr, 4),
        "labeler": lab.report, "generator": gan.report, "attr_coherence": gan.attr_coherence_applied,
    }
    m.update(SM.copies(nonempty, ts, [g for g, k in zip(gen_part, keep) if k], dcr=dcr[keep]))  # the same distances, not again
    # coverage of the catalogue the generator can emit (its vocabulary: every training history,
    # the held-out ones too); over the fitted rows alone it could exceed 1 (at 25 % of Beauty: 1.027)
    ts_all = SM.TrainingStats(values, offsets, gan.tail)
    m.update(SM.coverage(ts_all, acc))
    m.update(_realism(gan, cfg, acc, [real[i] if i >= 0 else None for i in source[keep]], real, nonempty, ts, ts_all, report_dir))
    c2st = m["c2st_auc_sequences"]
    reasons = [f"c2st_auc_sequences {c2st} > {cfg.max_c2st_auc}"] if c2st is None or c2st > cfg.max_c2st_auc else []
    reasons += [] if acc else ["no history accepted"]
    m.update(gate="pass" if not reasons else "fail", gate_reasons=reasons)
    seg_all = seg_pred if len(gen) else np.zeros(0, np.int64)
    return SeqAugmentResult(acc, kind[keep], source[keep], seg_all[keep], conf[keep], not reasons, m, gan,
                            None if end is None else np.asarray(end, np.int64)[keep])


@dataclass
class _Generated:
    """What :func:`_generate` drew: expansions of the ``short`` rows and whole users of the
    ``sparse`` segments (``asked``: the segment each was drawn for; ``syn_end``: its end time)."""

    short: np.ndarray
    expanded: list[np.ndarray]
    synthetic: list[np.ndarray]
    asked: np.ndarray
    sparse: np.ndarray
    syn_end: np.ndarray | None


def _generate(gan: SequenceGAN, cfg: SeqAugmentConfig, values: np.ndarray, offsets: np.ndarray, n_real: int,
              times: HistoryTimes | None, teacher: Callable[[np.ndarray, np.ndarray], Any] | None) -> _Generated:
    """(a) expand the short real histories (``cfg.expansions`` times each); (b) whole users for
    the sparse segments (``cfg.synthetic_share`` of the real count, by each segment's deficit)."""
    lens = np.diff(offsets)
    short = np.repeat(np.flatnonzero((lens >= 1) & (lens < cfg.expand_below)), max(1, int(cfg.expansions)))
    share = gan.segment_counts / max(gan.segment_counts.sum(), 1)
    sparse = np.flatnonzero(share < cfg.sparse_share)
    n_syn = int(cfg.synthetic_share * n_real) if len(sparse) else 0
    syn_end = history_end_times(np.full(n_syn, -1), times.last_ns, cfg.seed) if times is not None else None
    logger.info("generating: %d %s items for each of %d short histories%s, %d users for sparse segments", cfg.n_new,
                "earlier" if gan.cfg.reverse else "later", len(short), " (from the teacher)" if teacher is not None else "", n_syn)
    expanded = gan.expand(values, offsets, short, cfg.n_new, seed=cfg.seed, teacher=teacher)
    if n_syn:
        deficit = (cfg.sparse_share - share[sparse])
        segs = np.random.default_rng(cfg.seed).choice(sparse, n_syn, p=deficit / deficit.sum())
        synthetic, asked = gan.sample_users(n_syn, segs, seed=cfg.seed + 1)
    else:
        synthetic, asked = [], np.zeros(0, np.int64)
    return _Generated(short, list(expanded), list(synthetic), asked, sparse, syn_end)


def _label(gan: SequenceGAN, cfg: SeqAugmentConfig, nonempty: list[np.ndarray], gen: list[np.ndarray],
           context: list[np.ndarray], synthetic: list[np.ndarray], asked: np.ndarray
           ) -> tuple[SeqLabeler, np.ndarray, np.ndarray, np.ndarray]:
    """The labeler (clusters on real embeddings + classifier) fitted on the real histories;
    ``(labeler, segment, confidence, off_segment)`` of the generated ones (the ``len(context)``
    expansions first): an expansion must stay in its context's cluster (the real history it
    continues), a synthetic user must have the segment (length / tail rule) it was asked for."""
    emb = embedder_for(gan)
    lab = SeqLabeler(SeqLabelerConfig(**{**cfg.labeler.__dict__, "seed": cfg.seed})).fit(emb(nonempty))
    seg_pred, conf = lab.predict(emb(gen)) if gen else (np.zeros(0, np.int64), np.zeros(0))
    off = np.zeros(len(gen), bool)
    n_exp = len(context)
    if n_exp:
        off[:n_exp] = seg_pred[:n_exp] != lab.cluster(emb(context))
    if len(synthetic):
        tail_frac = np.array([np.isin(h, gan.tail).mean() if len(h) else 0 for h in synthetic])
        off[n_exp:] = segment_of(np.array([len(h) for h in synthetic]), tail_frac) != asked
    return lab, seg_pred, conf, off


def _privacy(gan: SequenceGAN, cfg: SeqAugmentConfig, real: list[np.ndarray], nonempty: list[np.ndarray],
             gen_part: list[np.ndarray], kind: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """``(threshold, dropped, set DCR of each generated part)``: a synthetic user whose generated items are closer (set DCR) to a
    real history than the ``privacy_quantile`` of the holdout rule (real histories the generator
    never fitted on, measured against the others) is dropped; an expansion keeps its own user's
    items by design."""
    dcr = SM.set_dcr(nonempty, gen_part)
    is_hold = np.zeros(len(real), bool)
    is_hold[gan.holdout_rows] = True
    hold = [real[i] for i in gan.holdout_rows]
    dcr_hold = SM.set_dcr([h for i, h in enumerate(real) if len(h) and not is_hold[i]], hold) if hold else np.zeros(0)
    thr = float(np.quantile(dcr_hold, cfg.privacy_quantile)) if len(dcr_hold) else 0.0
    return thr, (dcr < thr) & (kind == "synthetic"), dcr


def _realism(gan: SequenceGAN, cfg: SeqAugmentConfig, acc: list[np.ndarray], src: list[np.ndarray | None],
             real: list[np.ndarray], nonempty: list[np.ndarray], ts: Any, ts_all: Any,
             report_dir: str | Path | None) -> dict[str, Any]:
    """The gate's detector on the accepted histories (``c2st_auc_sequences``: None when none was
    accepted) and, with ``report_dir``, the figure."""
    if not acc:
        return {"c2st_auc_sequences": None}
    # the detector reads 5-item windows: each real reference window from a distinct training
    # history, counts leave-one-out (see SM.window_c2st), plus a real-vs-real control
    w = SM.window_c2st(acc, src, nonempty, ts_all, width=cfg.c2st_width, max_rows=cfg.c2st_rows, seed=cfg.seed)
    m: dict[str, Any] = {
        "c2st_auc_sequences": w["auc"], "c2st_auc_sequences_real_vs_real": w["real_vs_real"],
        "c2st_sequences_by_statistic": w.get("by_statistic"),
        "c2st_reference": f"{cfg.c2st_width}-item windows of distinct real training histories, statistics leave-one-out",
        "c2st_rows": int(w["rows"]),
    }
    if report_dir is not None:  # the figure only: whole-length histories next to real windows
        rng = np.random.default_rng(cfg.seed)
        pick = rng.choice(len(acc), min(len(acc), cfg.c2st_rows), replace=False)
        g_sub = [acc[i] for i in pick]
        r_win = SM.real_windows([real[i] for i in gan.holdout_rows], [len(h) for h in g_sub], seed=cfg.seed)
        g_st, r_st = SM.history_stats(g_sub, ts), SM.history_stats(r_win, ts)
        m["figure"] = str(SM.plot_histories(Path(report_dir) / "sequences.png", r_st, g_st, ts, g_sub, r_win))
    return m


def synthetic_events(hists: list[np.ndarray], end_times_ns: np.ndarray, train: pd.DataFrame,
                     first_id: int = SYNTHETIC_USER_ID_BASE, seed: int = 0) -> pd.DataFrame:
    """The generated histories as events (``user_id``, ``item_id``, ``event_timestamp``), in
    history order, user ``first_id + k`` for history k (ids in the synthetic key space).

    Timestamps: the last item of history k at ``end_times_ns[k]``, earlier items spaced by gaps
    drawn from the training gap distribution of ``train`` (the generator emits no gaps)."""
    if first_id < SYNTHETIC_USER_ID_BASE:
        raise ValueError("synthetic users must use ids >= SYNTHETIC_USER_ID_BASE")
    ts_real = train[S.EVENT_TIMESTAMP].astype("datetime64[ns, UTC]").astype("int64").to_numpy()
    lens = np.array([len(h) for h in hists], np.int64)
    gaps = sample_gaps(ts_real, train[S.USER_ID].to_numpy(), int(lens.sum()), seed=seed)
    uid = np.repeat(first_id + np.arange(len(hists), dtype=np.int64), lens)
    row_end = np.repeat(np.asarray(end_times_ns, np.int64), lens)
    back = np.zeros(int(lens.sum()), np.int64)
    off = 0
    for n in lens:  # per history: time before the last item = sum of the gaps after each item
        seg = gaps[off : off + n]
        back[off : off + n] = np.concatenate([np.cumsum(seg[1:][::-1])[::-1], [0]]) if n else []
        off += n
    items = np.concatenate(hists).astype(np.int64) if len(hists) else np.zeros(0, np.int64)
    return pd.DataFrame({S.USER_ID: uid, S.ITEM_ID: items, S.EVENT_TIMESTAMP: pd.to_datetime(row_end - back, utc=True)})


def history_end_times(source: np.ndarray, last_ns: np.ndarray, seed: int = 0) -> np.ndarray:
    """When each accepted history ends (ns): an expansion where its real user's history ends
    (``last_ns[source]``), a whole synthetic user (``source`` -1) where a random real user's does.
    Point-in-time features depend on the time (popularity so far, days since the last event): all
    histories ending at the last training time would make the rows tell themselves apart."""
    source = np.asarray(source, np.int64)
    last_ns = np.asarray(last_ns, np.int64)
    syn_end = np.random.default_rng(seed).choice(last_ns, len(source))
    return np.where(source >= 0, last_ns[np.maximum(source, 0)], syn_end)


def features_of_events(events: pd.DataFrame, train: pd.DataFrame, attributes: dict[int, list[int]]) -> pd.DataFrame:
    """``user_features`` rows of the synthetic users in ``events`` (:func:`synthetic_events`), by
    the same builder as real users (``ecaug_feast.features.build.build_user_features``). An item's
    popularity counts the REAL training events ``train`` only, as a real user's row does: counting
    the generated events too made every generated row's items look more popular than any real
    row's (all generated events sit at the end of the clock; Beauty: mean_item_popularity 24.4 vs 14.1)."""
    ev = events[[S.USER_ID, S.ITEM_ID, S.EVENT_TIMESTAMP]]
    uf = build_user_features(ev, attributes, popularity_reference=train)  # popularity_at reads either timestamp dtype
    return uf[uf[S.USER_ID] >= SYNTHETIC_USER_ID_BASE].reset_index(drop=True)


def feature_rows(hists: list[np.ndarray], end_times_ns: np.ndarray, train: pd.DataFrame,
                 attributes: dict[int, list[int]], first_id: int = SYNTHETIC_USER_ID_BASE, seed: int = 0) -> pd.DataFrame:
    """``user_features`` rows of generated histories, by the same builder as real users, ids in the
    synthetic key space (:func:`synthetic_events` then :func:`features_of_events`)."""
    return features_of_events(synthetic_events(hists, end_times_ns, train, first_id, seed), train, attributes)


FEATURE_COLUMNS = S.USER_SCALAR_COLUMNS


def matched_feature_rows(synth_rows: pd.DataFrame, real_rows: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The two tables the feature C2ST compares: point-in-time rows (serving rows, the last per
    user, left out on both sides) of synthetic users, and for each a real row with the same
    ``n_interactions``; (real, synthetic) on ``FEATURE_COLUMNS``, or None with under 20 pairs."""
    rng = np.random.default_rng(seed)

    def pit(df: pd.DataFrame) -> pd.DataFrame:
        last = df.groupby("user_id").cumcount(ascending=False) == 0
        return df[~last.to_numpy() & (df[S.N_INTERACTIONS] > 0).to_numpy()]

    s, real_rows = pit(synth_rows), pit(real_rows)
    by_n = {n: g.index.to_numpy() for n, g in real_rows.groupby(S.N_INTERACTIONS)}
    pick, keep = [], []
    for i, n in enumerate(s[S.N_INTERACTIONS].to_numpy()):
        if n in by_n:
            pick.append(rng.choice(by_n[n]))
            keep.append(i)
    if len(keep) < 20:
        return None
    return (real_rows.loc[pick, FEATURE_COLUMNS].reset_index(drop=True),
            s.iloc[keep][FEATURE_COLUMNS].reset_index(drop=True))


def feature_c2st(synth_rows: pd.DataFrame, real_rows: pd.DataFrame, seed: int = 0, max_rows: int = 3000) -> float:
    """C2ST on derived feature rows (:func:`matched_feature_rows`)."""
    pair = matched_feature_rows(synth_rows, real_rows, seed)
    if pair is None:
        return float("nan")
    return c2st_auc(*pair, max_rows=max_rows, seed=seed)
