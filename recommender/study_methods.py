"""The study's augmentation methods: pools of extra training data, built from training data only.

A library (it takes arguments, imports nothing above it); the study job
(``ecaug_feast.jobs.study``) decides which methods run, mixes the pools in and scores the results.

- Bag model (extra *feature rows*, example columns): ``column_gan`` (GAN + labeler + gates,
  ``ecaug_feast.synth.pipeline.augment_frame``), ``oversample`` (copies of sparse users' rows),
  ``smote`` (SMOTE-style interpolation of flattened example rows, ``ecaug_feast.synth.smote``).
- Sequence model (extra *histories*): ``seq_ops`` (crop/mask/reorder/insert), ``pseudo_prior``
  (ASReP-style reversed transformer, MLE only), ``gan_augmented`` (sequence GAN + segment labeler
  + gates, ``ecaug_feast.synth.seq_pipeline``).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ecaug_feast.errors import EcaugError

METHODS = ["popularity", "real_only", "seq_ops", "pseudo_prior", "gan_augmented", "distilled", "column_gan", "oversample", "smote"]
AUG_METHODS = ["column_gan", "oversample", "smote"]  # bag model: extra feature rows
# sequence model: extra histories. ``distilled`` adds none: it is the control for a distilling
# gan_augmented (``seq_distill``): real-only's model teaches a fresh one on the real histories alone
SEQ_AUG_METHODS = ["seq_ops", "pseudo_prior", "gan_augmented", "distilled"]
# What each model can be studied with: the column methods make feature rows, which only the bag
# model reads; the sequence methods make histories, which only the sequence model reads.
MODEL_METHODS = {"bag": ["popularity", "real_only", *AUG_METHODS], "sequence": ["popularity", "real_only", *SEQ_AUG_METHODS]}
DISTILL_KEYS = ("distill", "distill_temperature")  # the SeqTrainConfig settings ``seq_distill`` may set
# the SeqAugmentConfig settings a study may override (``ExperimentConfig.seq_aug``, ``--seq-aug``);
# pseudo_prior reads the first two
SEQ_AUG_KEYS = ("expand_below", "n_new", "synthetic_share", "sparse_share", "expansions")
METRICS = ["recall@10", "ndcg@10", "recall@20", "ndcg@20", "coverage@10"]

USER_SAMPLE_SEED = 12345  # the user subsample is the same for every fraction, seed and method


def sample_users(train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame, max_users: int | None
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three splits restricted to ``max_users`` users drawn with a fixed seed from the users of
    all three (a temporal split has held-out users without training events: they stay eligible);
    unchanged when ``max_users`` is None or not smaller than the number of users."""
    users = np.unique(np.concatenate([df["user_id"].to_numpy(np.int64) for df in (train, valid, test)]))
    if not max_users or max_users >= len(users):
        return train, valid, test
    keep = np.random.default_rng(USER_SAMPLE_SEED).choice(users, size=min(max_users, len(users)), replace=False)
    return tuple(df[df["user_id"].isin(keep)].reset_index(drop=True) for df in (train, valid, test))  # type: ignore[return-value]


def column_pool(method: str, data, size: int, seed: int, gan: dict[str, Any] | None = None,
                source: str = "examples") -> tuple[pd.DataFrame, dict[str, Any]]:
    """Extra positives for ``method`` (example columns) made from ``data.examples`` (the truncated
    training examples) and facts about how they were made. ``gan``: ``GANConfig`` overrides."""
    from recommender.baselines import oversample_pool
    from recommender.data import complete_synthetic, labelled_examples

    t0 = time.time()
    if method == "oversample":
        return oversample_pool(data.examples, size, seed), {"seconds": round(time.time() - t0, 2)}
    if method == "column_gan":
        from ecaug_feast.synth.gan import GANConfig
        from ecaug_feast.synth.pipeline import AugmentConfig, augment_frame

        lab = labelled_examples(data.examples, data.num_items, seed)
        # only rows the labeler marks positive become training positives (often a small share)
        acfg = AugmentConfig(gan=GANConfig(**(gan or {})), max_fit_rows=min(30_000, len(lab)), holdout_rows=min(2000, len(lab) // 5))
        res = augment_frame(lab, n_rows=size, seed=seed, config=acfg, source=source)
        pos = complete_synthetic(res.accepted, data)
        m = res.metrics
        info = {k: m.get(k) for k in ("rows_generated", "rows_accepted", "gate", "c2st_auc", "privacy_dropped_share", "fit_seconds", "total_seconds")}
        info.update(gate_passed=bool(res.gate_passed), positives=int(len(pos)), seconds=round(time.time() - t0, 2))
        return pos, info
    if method == "smote":
        from ecaug_feast.synth.examples import flatten, unflatten
        from ecaug_feast.synth.smote import SmoteSynthesizer

        real = data.examples[~data.examples["is_synthetic"].astype(bool)]
        flat, schema = flatten(real.assign(label=1))
        sm = SmoteSynthesizer(seed=seed, max_rows=30_000).fit(flat[schema.gan_columns], schema.discrete_columns)
        gen = sm.sample(size, seed=seed)
        feats = unflatten(gen, schema)
        rng = np.random.default_rng(seed)
        feats["event_timestamp"] = rng.choice(real["event_timestamp"].to_numpy(), len(feats))
        pos = complete_synthetic(feats, data)
        return pos, {"positives": int(len(pos)), "seconds": round(time.time() - t0, 2)}
    raise EcaugError(f"unknown augmentation method {method!r}")


class SeqPool(NamedTuple):
    """A sequence method's extra histories. ``generated``: per history, which of its items a model
    made (None for ``seq_ops``); ``source``: per history, the row of the training histories it
    expands (-1: a whole synthetic user; None: no such mapping, ``seq_ops``); ``info``: facts for
    the report."""

    histories: list[np.ndarray]
    generated: list[np.ndarray] | None
    source: np.ndarray | None
    info: dict[str, Any]


def seq_pool(method: str, data, hist, scfg, seed: int, seq_gan: dict[str, Any] | None = None,
             seq_aug: dict[str, Any] | None = None, teacher=None) -> SeqPool:
    """Extra training histories for ``method``, made from the truncated TRAINING histories ``hist``
    only (``histories_for(data, cfg, "valid")``: serving rows before any validation event).
    ``seq_gan``: ``SeqGANConfig`` overrides; ``seq_aug``: ``SeqAugmentConfig`` scalar overrides.
    Returns a :class:`SeqPool`: ``generated`` is, per history of a generator, which of its items
    the generator made (:func:`generated_masks`, with the direction of the generator that made
    them); None for ``seq_ops``, whose histories hold only real items, rearranged.
    ``teacher`` (``gan_augmented`` only): a next-item scorer (:func:`recommender.seq_train.next_item_scorer`)
    whose scores replace the generator network's: the expansions become continuations drawn from it
    under the generator's sampling settings."""
    from ecaug_feast.synth.seq_gan import SeqGANConfig, SequenceGAN, pseudo_prior_config
    from ecaug_feast.histories import csr_rows
    from ecaug_feast.synth.seq_ops import SeqOps, SeqOpsConfig

    seq_aug = seq_aug or {}
    t0 = time.time()
    gan_over = {"max_len": scfg.max_len, "seed": seed, **(seq_gan or {})}
    if method == "seq_ops":
        v, o, _ = SeqOps(SeqOpsConfig(copies=2, seed=seed)).fit(hist.values, hist.offsets).sample(max_len=scfg.max_len)
        return SeqPool(csr_rows(v, o), None, None, {"seconds": round(time.time() - t0, 2)})
    if method == "pseudo_prior":
        # ASReP: pseudo-prior items prepended to short histories by a reversed transformer (MLE only)
        aug = {k: v for k, v in seq_aug.items() if k in SEQ_AUG_KEYS[:2]}
        below, n_new = aug.get("expand_below", 8), aug.get("n_new", 10)
        g = SequenceGAN(pseudo_prior_config(**gan_over)).fit(hist.values, hist.offsets)
        short = np.flatnonzero((hist.lengths >= 1) & (hist.lengths < below))
        out = g.expand(hist.values, hist.offsets, short, n_new, seed=seed)
        return SeqPool(out, generated_masks(out, short, hist, prepended=g.cfg.reverse), short, {
            "seconds": round(time.time() - t0, 2), "expanded": int(len(short)), "generator_nll": g.report.get("nll_mle"),
            "prepended": bool(g.cfg.reverse)})
    if method == "gan_augmented":
        from ecaug_feast.synth.seq_pipeline import HistoryTimes, SeqAugmentConfig, augment_histories, feature_c2st, feature_rows

        # a teacher predicts next items: it continues histories (the generator runs forward)
        acfg = SeqAugmentConfig(gan=SeqGANConfig(**{"reverse": teacher is None, "adversarial": True, **gan_over}), seed=seed,
                                **{k: v for k, v in seq_aug.items() if k in SEQ_AUG_KEYS})
        from ecaug_feast.features.build import item_attributes

        attrs = item_attributes(data.items)
        res = augment_histories(hist.values, hist.offsets, acfg, times=HistoryTimes.of(data.train, hist.user_ids), attributes=attrs,
                                teacher=teacher)
        m = res.metrics
        info = {k: m.get(k) for k in ("generated", "expanded", "synthetic", "accepted", "dropped_low_confidence", "dropped_off_segment",
                                      "dropped_privacy", "gate", "c2st_auc_sequences", "c2st_auc_sequences_real_vs_real", "c2st_sequences_by_statistic",
                                      "catalogue_coverage", "tail_share", "real_tail_share",
                                      "exact_copy_share", "near_copy_share", "trigram_copy_share", "fit_seconds", "generate_seconds")}
        info["accepted_synthetic"] = int((res.kind == "synthetic").sum())  # whole users among the accepted
        info["labeler_agreement"] = m["labeler"].get("agreement")
        info["adversarial"] = m["generator"].get("adversarial")
        info["generator_nll"] = {"mle": m["generator"].get("nll_mle"), "after_adversarial": m["generator"].get("nll_after_adversarial")}
        if res.histories:  # features follow behaviour: the real builder on the generated histories
            # as the augment job: each history ends where its real user's (or a random user's) does
            fr = feature_rows(res.histories, res.end_ns, data.train, attrs, seed=seed)
            from ecaug_feast.features.build import build_user_features

            auc = feature_c2st(fr, build_user_features(data.train, attrs), seed=seed)
            info["c2st_auc_features"] = round(auc, 4) if auc == auc else None
        info["seconds"] = round(time.time() - t0, 2)
        info["prepended"] = bool(acfg.gan.reverse)
        info["teacher"] = teacher is not None
        return SeqPool(res.histories, generated_masks(res.histories, res.source, hist, prepended=acfg.gan.reverse),
                       np.asarray(res.source, np.int64), info)
    raise EcaugError(f"unknown sequence augmentation method {method!r}")


def combine_histories(hist, extra: list[np.ndarray], max_len: int, generated: list[np.ndarray] | None = None):
    """Real histories + extra ones (newest ``max_len`` each) under synthetic user ids.
    ``generated``: per extra history, which of its items a model generated (bool, same length);
    those become context only, never a training target (``Histories.targets``)."""
    from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE
    from ecaug_feast.histories import Histories, rows_to_csr

    v, o = rows_to_csr([np.asarray(h, np.int64)[-max_len:] for h in extra])
    ids = SYNTHETIC_USER_ID_BASE + np.arange(len(extra), dtype=np.int64)
    targets = None
    if generated is not None:
        if [len(g) for g in generated] != [len(h) for h in extra]:
            raise ValueError("generated: one mask per extra history, of its length")
        gen = np.concatenate([np.asarray(g, bool)[-max_len:] for g in generated]) if extra else np.zeros(0, bool)
        real_t = np.ones(len(hist.values), bool) if hist.targets is None else hist.targets
        targets = np.concatenate([real_t, ~gen])
    return Histories(np.concatenate([hist.user_ids, ids]), np.concatenate([hist.values, v]),
                     np.concatenate([hist.offsets, hist.offsets[-1] + o[1:]]).astype(np.int64), targets)


def expanded_inputs(split_hist, train_hist, pool: SeqPool, max_len: int):
    """The histories the user tower reads at evaluation when expanded users read their expansion
    (ASReP's evaluation reads the augmented training sequence): for each user of ``split_hist`` (a
    split's real histories: validation rows, or test rows that also hold the validation event)
    with an expansion in ``pool`` (the first, when several), its generated earlier items + its
    real history, newest ``max_len``; every other user reads its real history. ``pool.source``
    indexes ``train_hist`` (the training histories the pool was made from). Only generated items
    that were PREPENDED fit here (a reversed generator's): continuations would sit after the
    user's real events in time, and ahead of an evaluation event they never came before."""
    from ecaug_feast.histories import Histories, rows_to_csr

    if pool.source is None or pool.generated is None:
        raise EcaugError("expanded inputs need a generator's pool (pseudo_prior or gan_augmented), not seq_ops")
    if not pool.info.get("prepended", True):
        raise EcaugError("expanded inputs need generated items prepended (a reversed generator), not continuations")
    prefix: dict[int, np.ndarray] = {}
    for h, g, s in zip(pool.histories, pool.generated, pool.source):
        uid = int(train_hist.user_ids[s]) if s >= 0 else None
        if uid is not None and uid not in prefix and g.any():
            n_gen = int(np.argmax(~g)) if (~g).any() else len(g)  # the leading generated run
            prefix[uid] = np.asarray(h, np.int64)[:n_gen]
    v, o = split_hist.values, split_hist.offsets
    rows = [np.concatenate([prefix[int(u)], v[o[i] : o[i + 1]]])[-max_len:] if int(u) in prefix else v[o[i] : o[i + 1]]
            for i, u in enumerate(split_hist.user_ids)]
    nv, no = rows_to_csr(rows)
    return Histories(split_hist.user_ids, nv.astype(split_hist.values.dtype), no.astype(np.int64))


def generated_masks(pool: list[np.ndarray], source: np.ndarray | None, hist, prepended: bool = True) -> list[np.ndarray]:
    """Which items of each pool history a model generated: an expansion (``source`` row >= 0 of
    ``hist``) holds its real user's history as its newest items when the generated ones were
    ``prepended`` (a reversed generator, the default), as its oldest ones otherwise
    (continuations); a whole synthetic user (``source`` -1, or no ``source``) is generated throughout."""
    out = []
    for k, h in enumerate(pool):
        src = -1 if source is None else int(source[k])
        n_real = min(len(h), int(hist.lengths[src])) if src >= 0 else 0
        m = np.ones(len(h), bool)
        if prepended:
            m[len(h) - n_real:] = False
        else:
            m[:n_real] = False
        out.append(m)
    return out
