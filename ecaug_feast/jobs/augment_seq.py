"""``ecaug augment --generator sequence`` end to end: real training histories from Feast -> sequence
GAN (expansions + whole synthetic users, labeler, gates) -> run dir -> Feast views.

1. the real TRAINING histories as the sequence trainer reads them: each user's serving row of
   ``user_features`` (``recent_items`` as of the last training event + 1 ms) through Feast
   ``get_historical_features`` (``jobs.train_data.train_data_from_store`` +
   ``recommender.seq_train.histories_for``). Only Feast sources are read (``train_interactions``,
   ``item_features``, ``user_features``): validation and test events are not in them;
2. ``seq_pipeline.augment_histories`` (GAN, labeler, gates; the figure ``sequences.png``);
3. the run in the layout of column runs (``synth_store.write_run``): ``user_features_synth`` rows
   built from the generated histories by the real feature builder (features follow behaviour:
   ``recent_items`` is the generated history, most recent first) and ``interactions_synth`` rows
   (every item of an accepted history as a positive, with the labeler's confidence), user ids in
   the run's own key space (``synth_store.user_id_start``), lineage with ``generator: sequence``;
4. gate passed (``c2st_auc_sequences`` <= the gate): activated and published as a column run.
   Gate failed: the run stays on disk, not activated.

With ``teacher`` (``--teacher CHECKPOINT``, a real-only sequence checkpoint of the same dataset),
the expansions are continuations drawn from that model's next-item scores under the generator's
sampling settings (the study's ``gan_no_adversarial``), and the lineage names the teacher.
The teacher reads the same Feast training histories as the generator, nothing else. With config
``refine`` (the adversarial stage, ``synth.seq_refine``; the study's ``gan_augmented``) the
teacher is first refined against a discriminator under a KL penalty to itself
(:func:`refine_teacher`); the lineage's ``teacher.refinement`` holds the stage's report.

``method`` picks the pool builder (:data:`POOLS`): ``gan`` (the default: the pipeline above),
or one of the study's controls, built here so the study runs what ``ecaug augment`` runs:
``self_distill`` (continuations sampled from the teacher alone: no generator, no labeler, no
discriminator), ``gan_no_labeler`` (the ``gan`` pool's expansions, unfiltered),
``gan_disc_select_no_labeler`` (those kept by the stage's discriminator), ``pseudo_prior``
(ASReP's reversed transformer, MLE only), ``seq_ops``, ``slide_window`` and ``reppad``
(parameter-free rearrangements of real histories). Every builder but ``gan`` makes exactly
:func:`pool_size` histories: ``expansions`` per real history shorter than ``expand_below`` items,
so pools of different methods are size-matched; ``gan`` keeps what its labeler accepts, and with
``match_size`` (the study) draws more and keeps that many of them (all when fewer pass).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from ecaug_feast import feast_io
from ecaug_feast import schema as S
from ecaug_feast.errors import DataValidationError, EcaugError
from ecaug_feast.histories import Histories, rows_to_csr
from ecaug_feast.jobs.runs import activate_and_publish, check_dataset, source_lineage
from ecaug_feast.jobs.workspace import Workspace
from ecaug_feast.synth.seq_pipeline import HistoryTimes, SeqAugmentConfig, SeqAugmentResult

GENERATOR = "sequence"  # lineage ``generator``: what `ecaug finetune` checks before reading histories
GENERATOR_VERSION = "ecaug-seq-gan/1"
LABELER_NAME = "ecaug-seq-labeler/1"
MIN_HISTORIES = 10  # the generator refuses fewer (SequenceGAN.fit)
STUDY_ONLY = "study only"  # the gate status of a pool no privacy / copy / history gate looked at: never published
SUMMARY_KEYS = ("c2st_auc_sequences", "c2st_auc_sequences_real_vs_real", "catalogue_coverage", "tail_share", "real_tail_share", "exact_copy_share",
                "near_copy_share", "trigram_copy_share", "dropped_low_confidence", "dropped_off_segment",
                "dropped_privacy", "expanded", "synthetic", "fit_seconds", "generate_seconds")


@dataclass
class TrainingHistories:
    """Real training histories (one row per user) and what features need."""

    histories: Histories
    times: HistoryTimes              # each row's first/last training event and every event's time
    train: pd.DataFrame              # the training events (user_id, item_id, event_timestamp)
    attributes: dict[int, list[int]]
    lineage: dict[str, Any]
    num_items: int = 0               # the catalogue's size (item ids 1..num_items): what a teacher must score


def load_training_histories(ws: Workspace, max_len: int = 50) -> TrainingHistories:
    """Real TRAINING histories through Feast, as ``ecaug train --model sequence`` reads them."""
    from ecaug_feast.features.build import item_attributes, read_feature_meta
    from ecaug_feast.jobs.train_data import train_data_from_store
    from recommender.data import normalise_lists
    from recommender.seq_train import histories_for, seq_config_for

    meta = read_feature_meta() or {}
    src, item_src = feast_io.source_file(ws.feast_dir, feast_io.TRAIN_SOURCE), feast_io.source_file(ws.feast_dir, feast_io.ITEM_VIEW)
    for p in (src, item_src):
        if not p.exists():
            raise DataValidationError(p, None, "missing: run `ecaug ingest` first")
    ent = feast_io.source_rows(src, [S.USER_ID, S.ITEM_ID, S.EVENT_TIMESTAMP, S.LABEL])
    pos = ent[ent[S.LABEL] == 1].reset_index(drop=True)
    n_users = pos[S.USER_ID].nunique()
    if n_users < MIN_HISTORIES:
        raise DataValidationError(src, S.LABEL, f"{n_users} users with training events (label 1); the sequence "
                                                f"generator needs at least {MIN_HISTORIES} histories")
    item_rows = feast_io.source_rows(item_src)
    items = normalise_lists(item_rows.drop_duplicates(S.ITEM_ID)[[S.ITEM_ID, S.ATTRIBUTES]].reset_index(drop=True))
    train = pos[[S.USER_ID, S.ITEM_ID, S.EVENT_TIMESTAMP]]
    data = train_data_from_store(ws.store(), pos, train, None, items, item_rows, {"source": "feast"}, examples=False)
    hist = histories_for(data, seq_config_for(data, max_len=max_len))
    attrs = item_attributes(items)
    return TrainingHistories(hist, HistoryTimes.of(data.train, hist.user_ids), data.train, attrs,
                             source_lineage(src, ent, meta), int(data.num_items))


# the teacher's defaults (`ecaug augment` with a teacher, the demo): the method the choose half
# picks by the rule of docs/results/default-choice.md (declared before the figures it read) over
# all its cells (10, 25 and 100 %), `distill_priors`: the teacher's continuations under the
# generator's sampling priors (transition mix .08, attribute coherence), labeler-filtered, drawn 5
# times and of what passes 3 x the short histories kept at random. 2 items continued, no whole
# synthetic users, no adversarial phase for the generator's own network (it only lends the labeler
# its item vectors). From 2026-12-05 (second session, the rule applied to 25 and 100 % only) to the
# third session the default was `gan_disc_select`: the teacher refined by the adversarial stage
# and the pool kept by its discriminator; `{"refine": {"steps": 150, "lr": 2e-4, "beta": 0.1},
# "keep": "discriminator"}` in --config draws it. A --config file's fields override these.
TEACHER_DEFAULTS: dict[str, Any] = {"n_new": 2, "synthetic_share": 0.0, "expansions": 3, "match_size": True,
                                    "gan": {"reverse": False, "adversarial": False}}
# the study registry's name for what TEACHER_DEFAULTS draw (the lineage's ``recipe``)
TEACHER_RECIPE = "distill_priors"


def seq_config(overrides: Any = None, seed: int = 0, source: str = "--config",
               defaults: dict[str, Any] | None = None) -> SeqAugmentConfig:
    """A ``SeqAugmentConfig`` from JSON-like overrides: its fields, with ``gan`` and ``labeler``
    taking ``SeqGANConfig`` / ``SeqLabelerConfig`` fields. ``seed`` seeds all three unless the
    overrides set it; ``defaults`` (same shape) stand under the overrides. Not an object or an
    unknown field: one-line error naming ``source``."""
    from ecaug_feast.label.seq_labeler import SeqLabelerConfig
    from ecaug_feast.synth.seq_gan import SeqGANConfig
    from ecaug_feast.synth.seq_refine import RefineConfig

    over = {} if overrides is None else overrides
    if not isinstance(over, dict):
        raise EcaugError(f"{source}: expected a JSON object of SeqAugmentConfig fields")
    base = dict(defaults or {})
    over = {**base, **over}
    for key, cls in (("gan", SeqGANConfig), ("labeler", SeqLabelerConfig)):
        given = over.pop(key, {})
        if not isinstance(given, dict):
            raise EcaugError(f"{source}, field {key!r}: expected a JSON object of {cls.__name__} fields")
        over[key] = _dataclass_of(cls, {"seed": seed, **base.get(key, {}), **given}, source)
    given = over.pop("refine", None)  # the adversarial stage: off unless given (null: off)
    if given is not None and not isinstance(given, dict):
        raise EcaugError(f"{source}, field 'refine': expected a JSON object of RefineConfig fields or null")
    over["refine"] = None if given is None else _dataclass_of(RefineConfig, {"seed": seed, **given}, source)
    return _dataclass_of(SeqAugmentConfig, {"seed": seed, **over}, source)


def seq_config_file(path: Path | None, seed: int = 0, defaults: dict[str, Any] | None = None) -> SeqAugmentConfig:
    """:func:`seq_config` from a JSON file (``ecaug augment --config``); None: the defaults.
    An unreadable or invalid file: one-line error naming it."""
    over: dict[str, Any] = {}
    if path is not None:
        try:
            over = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataValidationError(path, None, f"not a readable JSON file ({type(exc).__name__}: {exc})") from None
    return seq_config(over, seed=seed, source=str(path or "--config"), defaults=defaults)


def _dataclass_of(cls: Any, kw: dict[str, Any], source: str) -> Any:
    from dataclasses import fields

    known = {f.name for f in fields(cls)}
    bad = sorted(set(kw) - known)
    if bad:
        raise EcaugError(f"{source}: unknown {cls.__name__} field(s) {', '.join(bad)} (known: {', '.join(sorted(known))})")
    try:
        return cls(**kw)
    except (TypeError, ValueError) as exc:  # a value out of range: one line, as an unknown field
        raise EcaugError(f"{source}: {cls.__name__}: {exc}") from None


def augment_seq_run(ws: Workspace, config: SeqAugmentConfig | None = None, seed: int = 0, dataset: str | None = None,
                    publish: bool = True, lineage_extra: dict[str, Any] | None = None,
                    teacher: str | Path | None = None, method: str = "gan", match_size: bool = False) -> dict[str, Any]:
    """Run ``ecaug augment --generator sequence``; returns the summary printed with ``--json``.
    ``teacher``: a sequence checkpoint whose next-item scores draw the continuations (see the
    module docstring); the config's generator must then run forward (``gan.reverse`` false).
    ``method``: the pool builder (:data:`POOLS`); ``match_size`` (the study): ``gan`` draws more
    and keeps :func:`pool_size` of the accepted histories, as every other builder makes."""
    if method not in POOLS:
        raise EcaugError(f"--method must be one of {', '.join(POOLS)}, got {method!r}")
    cfg = config or SeqAugmentConfig(seed=seed)
    pool = POOLS[method]
    if publish and not pool.publishable:
        raise EcaugError(f"method {method}: a study-only pool (no privacy, copy or history gates; "
                         f"publishable: {', '.join(k for k, v in POOLS.items() if v.publishable)}); it is never published")
    if method == "gan":
        require_forward(cfg, teacher)
    if pool.needs_teacher and teacher is None:
        raise EcaugError(f"method {method}: needs --teacher CHECKPOINT (the model whose continuations are drawn)")
    if pool.needs_refine and cfg.refine is None:
        raise EcaugError(f"method {method}: needs the adversarial stage (config 'refine') and --teacher")
    if cfg.refine is not None and (teacher is None or not pool.refinable):
        raise EcaugError(f"the adversarial stage (config 'refine') refines a --teacher's continuations: method {method} "
                         f"{'reads none' if pool.refinable else 'draws none'} (refinable: "
                         f"{', '.join(k for k, v in POOLS.items() if v.refinable)}, with --teacher)")
    if cfg.keep != "random" and method not in ("gan", "gan_disc_select"):
        raise EcaugError(f"keep {cfg.keep!r} (config): selects among the gan pool's histories; method {method} keeps its own")
    th = load_training_histories(ws, cfg.gan.max_len)
    check_dataset(dataset, th.lineage)
    score, extra = None, {**(lineage_extra or {}), "method": method}
    if teacher is not None and pool.reads_teacher:
        score, extra["teacher"] = load_teacher(teacher, th, cfg)
    with tempfile.TemporaryDirectory(prefix="ecaug-seq-") as rep:
        res = pool.build(th, cfg, score, Path(rep), match_size)
        if extra.get("teacher", {}).get("refinement"):
            res.metrics["refinement"] = extra["teacher"]["refinement"]
        out = write_sequence_run(ws, res, th, cfg, publish=publish, lineage_extra=extra, figures=Path(rep))
        out["refinement"] = res.metrics.get("refinement")
        return out


# ----------------------------------------------------------------------------------------------
# pool builders (``method=``): each takes the training histories, the config, the teacher's
# scorer (or None) and a folder for figures, and returns a SeqAugmentResult


Scorer = Callable[[np.ndarray, np.ndarray], torch.Tensor]


@dataclass(frozen=True)
class Pool:
    """A pool builder and what it needs: ``needs_teacher`` (refused without one), ``reads_teacher``
    (a given teacher is passed on; ``gan`` reads one when given), ``refinable`` (its histories
    are drawn from the teacher, so config ``refine`` may refine it first). ``publishable``: only a pool
    that runs the product's gates (labeler, privacy, copies, realism) may be published; the
    others are the study's controls (``slide_window`` holds prefixes of real users' histories)."""

    build: Callable[[TrainingHistories, SeqAugmentConfig, Scorer | None, Path, bool], SeqAugmentResult]
    publishable: bool = False
    needs_teacher: bool = False
    reads_teacher: bool = False
    refinable: bool = False          # draws from the teacher: the adversarial stage can refine it first
    needs_refine: bool = False       # reads the adversarial stage's discriminator: refused without config 'refine'
    doc: str = ""


def short_rows(lengths: np.ndarray, expand_below: int) -> np.ndarray:
    """Rows of the real histories that get expanded: 1 <= length < ``expand_below``."""
    return np.flatnonzero((lengths >= 1) & (lengths < expand_below))


def pool_size(lengths: np.ndarray, cfg: SeqAugmentConfig) -> int:
    """The size every pool is matched to: ``expansions`` x the real histories shorter than ``expand_below``."""
    return int(max(1, cfg.expansions) * len(short_rows(lengths, cfg.expand_below)))


def _lengths(th: TrainingHistories) -> np.ndarray:
    return th.histories.lengths


def _rows(th: TrainingHistories) -> list[np.ndarray]:
    return th.histories.to_lists()


def _to_size(hist: list[np.ndarray], source: np.ndarray, size: int, seed: int) -> tuple[list[np.ndarray], np.ndarray, int]:
    """Exactly ``size`` of ``hist`` (seeded): a sample without replacement when there are more,
    all of them plus a draw with replacement when fewer. Returns (histories, source, filled)."""
    rng = np.random.default_rng(seed)
    n = len(hist)
    if n == 0 or size <= 0:
        return [], np.zeros(0, np.int64), 0
    idx = np.sort(rng.choice(n, size, replace=False)) if n >= size else np.concatenate([np.arange(n), rng.choice(n, size - n)])
    return [hist[i] for i in idx], np.asarray(source, np.int64)[idx], max(0, size - n)


def _plain_result(th: TrainingHistories, cfg: SeqAugmentConfig, hist: list[np.ndarray], source: np.ndarray,
                  info: dict[str, Any], filled: int = 0) -> SeqAugmentResult:
    """A pool no labeler or gate looked at: every history accepted with confidence 1, dated where
    its source user's history ends (a random user's for source -1); its gate is :data:`STUDY_ONLY`."""
    from ecaug_feast.synth.seq_pipeline import history_end_times

    src = np.asarray(source, np.int64)
    m: dict[str, Any] = {"generated": len(hist), "accepted": len(hist), "expanded": int((src >= 0).sum()),
                         "synthetic": int((src < 0).sum()), "dropped_low_confidence": 0, "dropped_off_segment": 0,
                         "dropped_privacy": 0, "privacy_threshold": None, "labeler": {}, "generator": {},
                         "gate": STUDY_ONLY if hist else "fail",
                         "gate_reasons": ["study-only pool: no privacy, copy or history gates"] if hist else ["no history made"],
                         "pool_size": len(hist), "filled_by_repeats": filled, **info}
    return SeqAugmentResult(hist, np.where(src >= 0, "expanded", "synthetic"), src, np.zeros(len(hist), np.int64),
                            np.ones(len(hist), np.float32), bool(hist), m, None, history_end_times(src, th.times.last_ns, cfg.seed))


def require_forward(cfg: SeqAugmentConfig, teacher: Scorer | None) -> None:
    """A teacher appends next items to a history, so a generator set to prepend (``gan.reverse``)
    cannot use one: one line, not a pool of histories continued backwards."""
    if teacher is not None and cfg.gan.reverse:
        raise EcaugError("a teacher continues histories: the generator must run forward (set gan.reverse false in --config)")


def _gan_pool(th: TrainingHistories, cfg: SeqAugmentConfig, teacher: Scorer | None, rep: Path, match: bool = False,
              rank: Callable[[SeqAugmentResult], np.ndarray] | None = None) -> SeqAugmentResult:
    """The pipeline (generator, or the teacher's continuations, + labeler + gates), sized by
    :func:`matched_draw` (``match``, or the config's ``match_size``)."""
    from ecaug_feast.synth.seq_pipeline import augment_histories

    def draw(c: SeqAugmentConfig) -> SeqAugmentResult:
        return augment_histories(th.histories.values, th.histories.offsets, c, report_dir=rep, times=th.times,
                                 attributes=th.attributes, teacher=teacher)

    if rank is None and cfg.keep == "discriminator":
        rank = discriminator_rank(_discriminator(teacher), cfg)
    return matched_draw(draw, cfg, _lengths(th), match or cfg.match_size, rank)


def matched_draw(draw: Callable[[SeqAugmentConfig], SeqAugmentResult], cfg: SeqAugmentConfig, lengths: np.ndarray,
                 match: bool, rank: Callable[[SeqAugmentResult], np.ndarray] | None = None) -> SeqAugmentResult:
    """``draw(cfg)`` (the pipeline: generator or teacher, labeler, gates), and with ``match`` the
    study's size rule, which `ecaug augment` with a teacher follows too (``TEACHER_DEFAULTS``
    ``match_size``): draw half as many again (the labeler drops about a quarter) and keep
    :func:`pool_size` of what passed: a seeded random choice, or the highest by ``rank`` (a score
    per accepted history); all of them when fewer passed. Own-repo and shop-repo runs both draw here."""
    size = pool_size(lengths, cfg)
    over = replace(cfg, expansions=int(math.ceil(1.5 * max(1, cfg.expansions)))) if match else cfg
    res = draw(over)
    if not match or len(res.histories) <= size:
        return res if not match else replace(res, metrics={**res.metrics, "pool_size": size, "kept_by": "all"})
    if rank is None:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(res.histories), size, replace=False))
    else:
        keep = np.sort(np.argsort(-np.asarray(rank(res), np.float64), kind="stable")[:size])
    m = {**res.metrics, "accepted": size, "pool_size": size, "accepted_before_size": len(res.histories),
         "kept_by": "random" if rank is None else "discriminator"}
    return replace(res, histories=[res.histories[i] for i in keep], kind=res.kind[keep], source=res.source[keep],
                   segment=res.segment[keep], confidence=res.confidence[keep], metrics=m,
                   end_ns=None if res.end_ns is None else res.end_ns[keep])


def discriminator_rank(disc: Any, cfg: SeqAugmentConfig, to_model: np.ndarray | None = None
                       ) -> Callable[[SeqAugmentResult], np.ndarray]:
    """A history's realness for :func:`matched_draw`'s ``rank``: the adversarial stage's
    discriminator's log-odds for its last ``n_new`` items after the rest (``cfg.keep``
    ``discriminator``, the study's ``gan_disc_select``). ``to_model``: item id -> the
    discriminator's item index, 0 for an item it does not know (left out of the prompt), when the
    run numbers items its own way (a shop's repo)."""
    from ecaug_feast.synth.seq_refine import realness

    n = cfg.n_new

    def rank(res: SeqAugmentResult) -> np.ndarray:
        hs = [h if to_model is None else to_model[np.asarray(h, np.int64)] for h in res.histories]
        # ranked: a continuation of known items after at least one known item (else never kept first)
        ok = np.array([len(h) > n and bool(np.all(h[-n:] > 0)) and bool(np.any(h[:-n] > 0)) for h in hs], bool)
        score = np.full(len(hs), -np.inf)
        kept = [h for h, k in zip(hs, ok) if k]
        if kept:
            prompts = [p[p > 0][-(cfg.expand_below - 1):] for p in (h[:-n] for h in kept)]
            score[ok] = realness(disc, prompts, np.stack([h[-n:] for h in kept]))
        return score

    return rank


def _discriminator(teacher: Any) -> Any:
    disc = getattr(teacher, "discriminator", None)
    if disc is None:
        raise EcaugError("keep 'discriminator' (method gan_disc_select): keeps what the adversarial stage's "
                         "discriminator finds most real; it needs --teacher and config 'refine'")
    return disc


def _gan_disc_select(th: TrainingHistories, cfg: SeqAugmentConfig, teacher: Scorer | None, rep: Path, match: bool = False) -> SeqAugmentResult:
    """The ``gan`` pool with ``keep: discriminator``: drawn half as many again, of which the
    :func:`pool_size` accepted histories the adversarial stage's discriminator finds most real
    are kept (:func:`discriminator_rank`)."""
    # the rank is passed rather than set through cfg.keep: the builder is also called with a
    # discriminator in hand and no stage settings (the registry's size test)
    return _gan_pool(th, cfg, teacher, rep, True, discriminator_rank(_discriminator(teacher), cfg))


def _gan_disc_select_no_labeler(th: TrainingHistories, cfg: SeqAugmentConfig, teacher: Scorer | None, rep: Path,
                                match: bool = False) -> SeqAugmentResult:
    """``gan_disc_select`` without the labeler (the study's ablation): the same 1.5x draw of the
    teacher's continuations, unfiltered, of which the discriminator keeps the :func:`pool_size`
    most real-looking. With no labeler dropping about a quarter first, the discriminator keeps 3
    of 5 draws here against about 3 of 4 after the labeler."""
    require_forward(cfg, teacher)
    return matched_draw(lambda c: _generator_pool(th, c, c.gan, "gan_disc_select_no_labeler", teacher), cfg, _lengths(th),
                        True, discriminator_rank(_discriminator(teacher), cfg))


def _generator_pool(th: TrainingHistories, cfg: SeqAugmentConfig, gan_cfg: Any, name: str,
                    teacher: Scorer | None = None) -> SeqAugmentResult:
    """Expansions of every short history (``expansions`` each) by a generator fitted on the
    training histories (with ``teacher``: the teacher's continuations under the generator's
    sampling settings, as the ``gan`` pool draws them), kept unfiltered: no labeler, no gate on
    single histories."""
    from ecaug_feast.synth.seq_gan import SequenceGAN

    gan = SequenceGAN(gan_cfg).fit(th.histories.values, th.histories.offsets)
    if gan.cfg.attr_coherence > 0:
        gan.set_item_attributes(th.attributes)
    rows = np.repeat(short_rows(_lengths(th), cfg.expand_below), max(1, cfg.expansions))
    hist = gan.expand(th.histories.values, th.histories.offsets, rows, cfg.n_new, seed=cfg.seed, teacher=teacher)
    return _plain_result(th, cfg, hist, rows, {"method": name, "generator": gan.report, "prepended": bool(gan.cfg.reverse)})


def _gan_no_labeler(th: TrainingHistories, cfg: SeqAugmentConfig, teacher: Scorer | None, rep: Path, match: bool = False) -> SeqAugmentResult:
    require_forward(cfg, teacher)
    return _generator_pool(th, cfg, cfg.gan, "gan_no_labeler", teacher)


def _pseudo_prior(th: TrainingHistories, cfg: SeqAugmentConfig, teacher: Scorer | None, rep: Path, match: bool = False) -> SeqAugmentResult:
    from ecaug_feast.synth.seq_gan import pseudo_prior_config

    gan_cfg = pseudo_prior_config(**{**asdict(cfg.gan), "reverse": True, "adversarial": False})
    return _generator_pool(th, cfg, gan_cfg, "pseudo_prior")


@torch.no_grad()
def sample_continuations(score: Scorer, rows: list[np.ndarray], n_new: int, seed: int, temperature: float = 1.0,
                         chunk: int = 1024) -> list[np.ndarray]:
    """Each history of ``rows`` continued by ``n_new`` items drawn one at a time from the softmax
    of ``score``'s next-item logits (at ``temperature``; column = item id, 0 the padding); an item
    already in the history is not drawn."""
    g = torch.Generator().manual_seed(int(seed))
    out = [np.asarray(r, np.int64) for r in rows]
    for s in range(0, len(out), chunk):
        part = out[s : s + chunk]
        for _ in range(n_new):
            values, offsets = rows_to_csr(part)
            logits = score(values, offsets).float() / temperature
            seen_rows = np.repeat(np.arange(len(part)), np.diff(offsets))
            logits[torch.from_numpy(seen_rows), torch.from_numpy(values)] = -float("inf")
            logits[:, 0] = -float("inf")  # the padding id
            nxt = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=g).squeeze(1).numpy()
            part = [np.append(r, i) for r, i in zip(part, nxt)]
        out[s : s + chunk] = part
    return out


def _self_distill(th: TrainingHistories, cfg: SeqAugmentConfig, teacher: Scorer | None, rep: Path, match: bool = False) -> SeqAugmentResult:
    """Self-distillation through sampled continuations: each short history continued by
    ``n_new`` items drawn from the teacher (the real-only recommender) alone."""
    assert teacher is not None
    rows = np.repeat(short_rows(_lengths(th), cfg.expand_below), max(1, cfg.expansions))
    all_rows = _rows(th)
    hist = sample_continuations(teacher, [all_rows[i] for i in rows], cfg.n_new, cfg.seed, cfg.gan.temperature)
    hist = [h[-cfg.gan.max_len :] for h in hist]
    return _plain_result(th, cfg, hist, rows, {"method": "self_distill", "prepended": False})


def _seq_ops(th: TrainingHistories, cfg: SeqAugmentConfig, teacher: Scorer | None, rep: Path, match: bool = False) -> SeqAugmentResult:
    """Random crop / mask / reorder / insert (``synth.seq_ops``) of the short histories, ``expansions`` each."""
    from ecaug_feast.synth.seq_ops import SeqOps, SeqOpsConfig

    rows = np.repeat(short_rows(_lengths(th), cfg.expand_below), max(1, cfg.expansions))
    picked = th.histories.take(rows)
    ops = SeqOps(SeqOpsConfig(copies=1, seed=cfg.seed, min_len=1)).fit(picked.values, picked.offsets)
    sv, so, src = ops.sample(max_len=cfg.gan.max_len)
    made = Histories(np.zeros(len(so) - 1, np.int64), sv, so).to_lists()
    hist, source, filled = _to_size(made, rows[src], pool_size(_lengths(th), cfg), cfg.seed)
    return _plain_result(th, cfg, hist, source, {"method": "seq_ops"}, filled)


def _slide_window(th: TrainingHistories, cfg: SeqAugmentConfig, teacher: Scorer | None, rep: Path, match: bool = False) -> SeqAugmentResult:
    """Sliding-window sub-histories: prefixes (at least 2 items, ending before the last) of real
    histories of 3 items or more, drawn uniformly over (history, end)."""
    lens = _lengths(th)
    elig = np.flatnonzero(lens >= 3)
    size = pool_size(lens, cfg)
    if len(elig) == 0:
        return _plain_result(th, cfg, [], np.zeros(0, np.int64), {"method": "slide_window"})
    rng = np.random.default_rng(cfg.seed)
    w = (lens[elig] - 2).astype(np.float64)  # ends 2 .. len-1
    pick = rng.choice(elig, size, p=w / w.sum())
    ends = np.array([int(rng.integers(2, lens[i])) for i in pick], np.int64)
    all_rows = _rows(th)
    hist = [all_rows[i][:e][-cfg.gan.max_len :].copy() for i, e in zip(pick, ends)]
    return _plain_result(th, cfg, hist, pick, {"method": "slide_window"})


def reppad(h: np.ndarray, max_len: int, repeats: int) -> np.ndarray:
    """RepPad (Dang et al., "Repeated Padding for Sequential Recommendation", RecSys 2024;
    github.com/KingGugu/RepPad): the padding positions are filled with copies of the sequence
    itself, ``repeats`` copies before the original (at most what fits in ``max_len``). No delimiter:
    item id 0 is this model's padding."""
    h = np.asarray(h, np.int64)
    k = max(0, min(int(repeats), max_len // max(len(h), 1) - 1))
    return np.tile(h, k + 1)[-max_len:]


def _reppad(th: TrainingHistories, cfg: SeqAugmentConfig, teacher: Scorer | None, rep: Path, match: bool = False) -> SeqAugmentResult:
    """RepPad on the short histories, ``expansions`` each, with a random number of repeats (1 to
    what fits), so the copies of one history differ."""
    rows = np.repeat(short_rows(_lengths(th), cfg.expand_below), max(1, cfg.expansions))
    rng = np.random.default_rng(cfg.seed)
    all_rows = _rows(th)
    hist = []
    for i in rows:
        fit = max(1, cfg.gan.max_len // max(len(all_rows[i]), 1) - 1)
        hist.append(reppad(all_rows[i], cfg.gan.max_len, int(rng.integers(1, fit + 1))))
    return _plain_result(th, cfg, hist, rows, {"method": "reppad"})


COLD_ITEM_GENERATOR = "gar"  # the item generator whose vectors pick a cold item's users (synth.item_gen)


def _cold_items(th: TrainingHistories, cfg: SeqAugmentConfig, teacher: Scorer | None, rep: Path, match: bool = False) -> SeqAugmentResult:
    """Synthetic interactions for cold items (issue 34): catalogue items with no training event get
    short histories that end in them, each a real user's last items then the cold item, drawn from
    the users whose recent items share an attribute with it and whom its generated vector scores
    highest (``synth.item_gen.cold_item_histories``, ``expansions`` histories per cold item). The
    vectors: :data:`COLD_ITEM_GENERATOR` fitted from the catalogue's attributes to the sequence
    generator's MLE item vectors (train-only), users as the mean vector of their last items. The
    histories then pass the labeler and gates of the ``gan`` pool as its expansions do
    (``seq_pipeline.gate_expansions``: same cluster as the user's items, confidence, copies,
    realism gate). No cold item: an empty pool that fails its gate.

    Meant for the cold-item split (``datasets.split.cold_item_split``): on the plain leave-last-out
    split of a k-core dataset the catalogue items without a training event are exactly the ones
    first bought in validation or test, so a pool for them points at evaluation targets.
    The realism gate rejects this pool by construction: its detector reads training popularity
    and a cold item has none (Beauty, 20 % pseudo-cold, validation only: window C2ST .9998,
    ``last_logpop`` alone 1.0; real vs real .508). It is built and gated, not published, until
    the gate has a reference for a new item's first events."""
    from ecaug_feast.synth.item_gen import ITEM_GENERATORS, ColdHistoriesConfig, cold_item_histories
    from ecaug_feast.synth.seq_gan import SequenceGAN
    from ecaug_feast.synth.seq_pipeline import gate_expansions

    h = th.histories
    num_items = max(th.num_items, int(h.values.max(initial=0)), max(th.attributes, default=0))
    cold = np.setdiff1d(np.arange(1, num_items + 1), h.values)
    if len(cold) == 0:
        return replace(_plain_result(th, cfg, [], np.zeros(0, np.int64), {"method": "cold_items", "cold_items": 0}),
                       metrics={"method": "cold_items", "cold_items": 0, "generated": 0, "accepted": 0, "expanded": 0,
                                "synthetic": 0, "dropped_low_confidence": 0, "dropped_off_segment": 0, "dropped_privacy": 0,
                                "privacy_threshold": None, "labeler": {}, "generator": {}, "gate": "fail",
                                "gate_reasons": ["no cold item: every catalogue item has training events"]})
    gan = SequenceGAN(cfg.gan).fit(h.values, h.offsets)
    vec = gan.gen.tok.weight.detach().float().cpu().numpy()[1 : len(gan.vocab) + 1]
    table = np.zeros((num_items + 1, vec.shape[1]), np.float32)
    table[gan.vocab] = vec
    ctx = ColdHistoriesConfig(per_item=max(1, cfg.expansions), seed=cfg.seed)
    recent = h.truncate(ctx.context)
    users = np.zeros((len(h), vec.shape[1]), np.float32)
    np.add.at(users, np.repeat(np.arange(len(h)), recent.lengths), table[recent.values])
    users /= np.maximum(recent.lengths, 1)[:, None]
    attrs = rows_to_csr([th.attributes.get(i, []) for i in range(num_items + 1)])
    gen_cls = ITEM_GENERATORS[COLD_ITEM_GENERATOR]
    seeded = {"seed": cfg.seed} if "seed" in {f.name for f in fields(gen_cls.config_class)} else {}
    item_gen = gen_cls(gen_cls.config_class(**seeded))
    item_gen.fit(attrs, gan.vocab, vec, users[recent.lengths > 0])
    hist, source, contexts = cold_item_histories(h.values, h.offsets, attrs, cold, item_gen.generate(attrs, cold), users, ctx)
    res = gate_expansions(h.values, h.offsets, hist, source, contexts, gan, cfg, n_new=1, times=th.times, report_dir=rep)
    got = np.unique([x[-1] for x in res.histories]) if res.histories else np.zeros(0, np.int64)
    res.metrics.update(method="cold_items", cold_items=int(len(cold)), cold_items_with_history=int(len(got)),
                       item_generator=item_gen.report, pool_size=len(res.histories))
    return res


POOLS: dict[str, Pool] = {
    "gan": Pool(_gan_pool, reads_teacher=True, refinable=True, publishable=True,
                doc="generator (or a --teacher's continuations, refined with config 'refine') + labeler + gates"),
    "gan_no_labeler": Pool(_gan_no_labeler, reads_teacher=True, refinable=True,
                           doc="the gan pool's expansions (a --teacher's, refined with config 'refine'), no labeler"),
    "gan_disc_select": Pool(_gan_disc_select, needs_teacher=True, reads_teacher=True, refinable=True, needs_refine=True,
                            doc="the gan pool drawn 1.5x, the histories the stage's discriminator finds most real kept"),
    "gan_disc_select_no_labeler": Pool(_gan_disc_select_no_labeler, needs_teacher=True, reads_teacher=True, refinable=True,
                                       needs_refine=True,
                                       doc="gan_disc_select without the labeler: the 1.5x draw unfiltered, the discriminator's pick kept"),
    "self_distill": Pool(_self_distill, needs_teacher=True, reads_teacher=True,
                         doc="continuations sampled from the teacher alone (no generator, labeler or discriminator)"),
    "pseudo_prior": Pool(_pseudo_prior, doc="ASReP: earlier items from a reversed transformer (MLE only)"),
    "seq_ops": Pool(_seq_ops, doc="crop / mask / reorder / insert of real histories"),
    "slide_window": Pool(_slide_window, doc="prefixes of real histories"),
    "reppad": Pool(_reppad, doc="RepPad (RecSys 2024): a history repeated into its padding"),
    "cold_items": Pool(_cold_items, publishable=True,
                       doc="short histories ending in each cold item (users matched by its attributes and generated vector) + labeler + gates"),
}


def load_teacher(path: str | Path, th: TrainingHistories, cfg: SeqAugmentConfig | None = None) -> tuple[Any, dict[str, Any]]:
    """``(next-item scorer, lineage)`` of a sequence checkpoint trained on the dataset ``th`` holds.
    A bag checkpoint, another catalogue or another dataset: one-line error. With ``cfg.refine``
    the scorer is the checkpoint refined against a discriminator (:func:`refine_teacher`) and the
    lineage holds the refinement's report under ``refinement``."""
    from recommender.checkpoint import load_checkpoint, resolve
    from recommender.seq_train import next_item_scorer

    model, meta = load_checkpoint(path)
    where = resolve(path)
    if not model.cfg.sequential:
        raise EcaugError(f"--teacher {where}: a bag checkpoint; the teacher must be a sequence model (`ecaug train --model sequence`)")
    if model.cfg.num_items != th.num_items:
        raise EcaugError(f"--teacher {where}: scores {model.cfg.num_items} items, the Feast sources hold {th.num_items}")
    trained_on = (meta.get("data") or {}).get("dataset")
    if trained_on and th.lineage.get("dataset") and trained_on != th.lineage["dataset"]:
        raise EcaugError(f"--teacher {where}: trained on {trained_on!r}, the Feast sources hold {th.lineage['dataset']!r}")
    valid = (meta.get("metrics") or {}).get("valid") or {}
    info = {"checkpoint": str(where), "dataset": trained_on, "valid_ndcg@10": valid.get("ndcg@10"),
            "run_id": (meta.get("data") or {}).get("run_id")}
    disc = None
    if cfg is not None and cfg.refine is not None:
        model, info["refinement"], disc = _refined(where, model, th, cfg)
    score = next_item_scorer(model)
    score.discriminator = disc  # type: ignore[attr-defined]  # the stage's discriminator (gan_disc_select reads it)
    return score, info


# The last refinement, by what determines it: the stage is deterministic for a seed on CPU
# (synth.seq_refine), so one process that builds several pools from the same refined teacher (the
# study's gan_augmented, gan_no_labeler, gan_disc_select in one cell) refines it once, with the
# same result as refining it for each. One entry: a refined model is as large as the teacher.
_LAST_REFINED: list[tuple[tuple[Any, ...], tuple[Any, dict[str, Any], Any]]] = []


def _refined(where: Path, model: Any, th: TrainingHistories, cfg: SeqAugmentConfig) -> tuple[Any, dict[str, Any], Any]:
    """:func:`refine_teacher`, or the result of the last identical call in this process (same
    checkpoint file, bytes unchanged, same histories and stage settings)."""
    import hashlib
    from dataclasses import astuple

    files = sorted(f for f in Path(where).rglob("*") if f.is_file())
    stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    digest = hashlib.sha256(np.ascontiguousarray(th.histories.values).tobytes()
                            + np.ascontiguousarray(th.histories.offsets).tobytes()).hexdigest()
    key = (str(where), stamp, digest, astuple(cfg.refine), cfg.n_new, cfg.expand_below, cfg.gan.threads)
    if _LAST_REFINED and _LAST_REFINED[0][0] == key:
        m, report, disc = _LAST_REFINED[0][1]
        return m, {**report, "reused_in_process": True}, disc
    out = refine_teacher(model, th.histories.values, th.histories.offsets, cfg)
    _LAST_REFINED[:] = [(key, out)]
    return out


def refine_teacher(model: Any, values: np.ndarray, offsets: np.ndarray, cfg: SeqAugmentConfig
                   ) -> tuple[Any, dict[str, Any], Any]:
    """The adversarial stage: ``model`` (a sequence checkpoint) refined against a discriminator
    under a KL penalty to itself (``synth.seq_refine``), on episodes of the training histories
    ``values``/``offsets`` (CSR, in the model's item numbering) shaped as the pool continues them (``n_new`` items after a history shorter than
    ``expand_below``). Returns (refined model, report, the stage's discriminator)."""
    from recommender.seq_train import NextItemPolicy
    from ecaug_feast.synth.seq_refine import refine

    assert cfg.refine is not None
    prev = torch.get_num_threads()
    if cfg.gan.threads > 0:
        torch.set_num_threads(cfg.gan.threads)
    try:
        res = refine(NextItemPolicy(model.eval()), values, offsets, model.cfg.num_items,
                     cfg.refine, n_new=cfg.n_new, prompt_below=cfg.expand_below)
    except ValueError as exc:  # too few episodes: one line, as any refusal of the generator
        raise EcaugError(f"adversarial stage: {exc}") from None
    finally:
        torch.set_num_threads(prev)
    return res.policy.model, res.report, res.discriminator


def write_sequence_run(ws: Workspace, res: SeqAugmentResult, th: TrainingHistories, cfg: SeqAugmentConfig,
                       publish: bool = True, lineage_extra: dict[str, Any] | None = None,
                       figures: Path | None = None) -> dict[str, Any]:
    """Write ``res`` (accepted histories of ``th``) as a run; activate and publish it if it passed."""
    from ecaug_feast import synth_store
    from ecaug_feast.synth.seq_pipeline import features_of_events, history_end_times, synthetic_events

    seed = cfg.seed
    run_id, seq = synth_store.new_run_id()  # under the runs lock: distinct number and id range
    try:
        # the pipeline dates what it generated when given the times; else as it would have
        end = res.end_ns if res.end_ns is not None else history_end_times(res.source, th.times.last_ns, seed)
        events = synthetic_events(res.histories, end, th.train, synth_store.user_id_start(seq), seed)
        users = features_of_events(events, th.train, th.attributes) if len(events) else S.USER_SCHEMA.empty_table().to_pandas()
        lens = np.array([len(h) for h in res.histories], np.int64)
        inter = events.assign(**{S.LABEL: 1, S.CONFIDENCE: np.repeat(np.asarray(res.confidence, np.float32), lens)})
        for df in (users, inter):
            df[S.IS_SYNTHETIC], df[S.RUN_ID], df[S.GENERATOR_VERSION] = True, run_id, GENERATOR_VERSION
        m = dict(res.metrics)
        if m.get("figure"):  # written to a temp folder by the pipeline; the run keeps it under plots/
            m["figure"] = "plots/sequences.png"
        m["c2st_auc"] = _feature_auc(users, ws, seed) if len(users) else None
        # the feature rows are gated as the histories are (same bar): what Feast serves must not be
        # told apart from real rows either
        if len(users) and (m["c2st_auc"] is None or m["c2st_auc"] > cfg.max_c2st_auc):  # None: too few rows to test
            m["gate_reasons"] = [*m["gate_reasons"], f"c2st_auc (feature rows) {m['c2st_auc']} > {cfg.max_c2st_auc}"]
            m["gate"] = "fail"
        m.update(rows_generated=m["generated"], rows_accepted=m["accepted"], interactions_accepted=int(len(inter)))
        manifest = {
            "gate": m["gate"], "gate_reasons": m["gate_reasons"], "config": asdict(cfg), "metrics": m,
            "lineage": {**th.lineage, "parent_run": synth_store.active_run(), "generator": GENERATOR,
                        "generator_version": GENERATOR_VERSION, "seed": seed, "segment": None,
                        **(lineage_extra or {})},
            "labeler_name": LABELER_NAME,
        }

        def extras(tmp: Path) -> None:
            _save_generator(res, cfg, tmp / "model")
            plots = tmp / "plots"
            plots.mkdir(exist_ok=True)
            if figures is not None and (figures / "sequences.png").exists():
                shutil.copy(figures / "sequences.png", plots / "sequences.png")
            _write_report(tmp / "report.md", run_id, m)

        run = synth_store.write_run(run_id, seq, users, manifest, extras, interactions=inter)
    except BaseException:
        synth_store.release_run_id(run_id)
        raise
    out: dict[str, Any] = {"run_id": run_id, "run_dir": str(run.path), "generator": GENERATOR,
                           **{k: m.get(k) for k in ("rows_generated", "rows_accepted", "interactions_accepted", "gate",
                                                    "gate_reasons", "c2st_auc", *SUMMARY_KEYS)},
                           "label_agreement": m.get("labeler", {}).get("agreement"), "segment": None, "activated": False,
                           "teacher": ((lineage_extra or {}).get("teacher") or {}).get("checkpoint")}
    if m["gate"] == "pass" and len(res.histories) and publish:
        out.update(activate_and_publish(ws, run_id))
    return out


def _feature_auc(users: pd.DataFrame, ws: Workspace, seed: int) -> float | None:
    """C2ST of the synthetic users' feature rows against the real ``user_features`` source rows
    (``seq_pipeline.feature_c2st``: point-in-time rows, matched on ``n_interactions``)."""
    from ecaug_feast.synth.seq_pipeline import feature_c2st

    real = feast_io.source_rows(feast_io.source_file(ws.feast_dir, feast_io.USER_VIEW), [S.USER_ID, *S.USER_SCALAR_COLUMNS])
    auc = feature_c2st(users, real, seed=seed)
    return round(float(auc), 4) if auc == auc else None


def _save_generator(res: SeqAugmentResult, cfg: SeqAugmentConfig, path: Path) -> None:
    """Generator weights (state dict), vocabulary (npz) and config + fit report (JSON); no pickles."""
    import torch

    gan = res.gan
    if gan is None:
        return
    path.mkdir(parents=True, exist_ok=True)
    torch.save(gan.gen.state_dict(), path / "generator.pt")
    np.savez(path / "vocab.npz", vocab=gan.vocab, tail=gan.tail, item_counts=gan.item_counts)
    (path / "gan.json").write_text(json.dumps({"version": GENERATOR_VERSION, "config": asdict(cfg.gan), "report": gan.report},
                                              indent=1, default=str))


def _write_report(path: Path, run_id: str, m: dict[str, Any]) -> None:
    """The run report: gate, the gates' figures and the labeler's agreement."""
    rows = [("gate", m["gate"] + (f" ({'; '.join(m['gate_reasons'])})" if m["gate_reasons"] else "")),
            ("histories generated / accepted", f"{m['generated']} / {m['accepted']} ({m['expanded']} expansions, {m['synthetic']} synthetic users)"),
            ("interactions accepted", m["interactions_accepted"]),
            ("C2ST AUC, histories (gate)", m.get("c2st_auc_sequences")),
            ("C2ST AUC, real vs real windows (the floor)", m.get("c2st_auc_sequences_real_vs_real")), ("C2ST AUC, feature rows", m.get("c2st_auc")),
            ("catalogue coverage", m.get("catalogue_coverage")), ("tail share (real)", f"{m.get('tail_share')} ({m.get('real_tail_share')})"),
            ("exact / near / trigram copies", f"{m.get('exact_copy_share')} / {m.get('near_copy_share')} / {m.get('trigram_copy_share')}"),
            ("dropped: low confidence / off segment / privacy",
             f"{m['dropped_low_confidence']} / {m['dropped_off_segment']} / {m['dropped_privacy']} (DCR threshold {m['privacy_threshold']})"),
            ("labeler agreement on held-out real users", m.get("labeler", {}).get("agreement")),
            ("sparse segments", ", ".join(m.get("sparse_segments", [])) or "none")]
    lines = [f"# Synthetic run {run_id} (sequence GAN)", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
    if m.get("figure"):
        lines += ["![histories: real vs generated](plots/sequences.png)", ""]
    path.write_text("\n".join(lines))
