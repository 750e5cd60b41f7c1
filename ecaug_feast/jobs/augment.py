"""``ecaug augment``: the generators (``GENERATORS``) and the column GAN's job.

``GENERATORS`` maps ``--generator`` to what runs: ``sequence`` (the default, item histories:
:mod:`ecaug_feast.jobs.augment_seq`; continuations drawn by the real-only recommender of
``ecaug train`` when it exists) and ``column`` (per-user feature rows of the column GAN, what the
bag model reads; also a shop's own Feast repo, :mod:`ecaug_feast.jobs.augment_repo`).

The column GAN's job, end to end:

1. entity rows = the training interactions source (``train_interactions.parquet``), subsampled to
   what the GAN learns from; their ``user_features`` via Feast ``get_historical_features``
   (point-in-time, the same path the recommender trains from);
2. ``augment_frame`` (GAN, labeler, gates);
3. the run directory (parquet, manifest with lineage, report + plots, GAN weights) written to a
   temp dir and renamed;
4. gate passed: under the runs lock, ``runs/active`` points at the run, ``feast apply`` registers
   the synthetic views, the previous run's synthetic keys leave Redis and only the synthetic views
   are materialized. Gate failed: the run stays on disk for inspection, nothing is
   activated or materialized.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ecaug_feast import feast_io, synth_store
from ecaug_feast.errors import DataValidationError, EcaugError
from ecaug_feast.jobs import repair
from ecaug_feast.features.build import read_feature_meta
from ecaug_feast.jobs.augment_events import augment_events, repo_teacher
from ecaug_feast.jobs.augment_repo import augment_repo
from ecaug_feast.jobs.augment_seq import TEACHER_DEFAULTS, TEACHER_RECIPE, augment_seq_run, seq_config_file
from ecaug_feast.jobs.runs import activate_and_publish, check_dataset, materialized, source_lineage
from ecaug_feast.jobs.workspace import Workspace
from ecaug_feast.quality.gates import GateConfig
from ecaug_feast.quality.report import write_report
from ecaug_feast.schema import USER_FEATURE_COLUMNS
from ecaug_feast.synth.gan import GANConfig
from ecaug_feast.synth.pipeline import AugmentConfig, augment_frame
from recommender.checkpoint import CheckpointError, read_config, sequential

log = logging.getLogger(__name__)
USER_FEATURES = USER_FEATURE_COLUMNS
DEFAULT_TEACHER = "real"  # the checkpoint name `ecaug train` writes by default (<state>/models/real)


@dataclass
class AugmentRequest:
    """What ``ecaug augment`` (or the demo's augment step) asks of a generator; None: its default.
    The fields after ``publish`` belong to one generator each (``Generator.options``)."""

    dataset: str | None = None
    seed: int = 0
    steps: int | None = None
    max_c2st: float | None = None
    publish: bool = True
    rows: int | None = None          # column
    segment: str | None = None       # column
    repo: str | None = None          # column: a shop's own Feast repo (with entity, view, service)
    entity: str | None = None
    view: str | None = None
    service: str | None = None
    events: str | None = None        # sequence: with repo, the shop's event source (behaviour from its log)
    config: Path | None = None       # sequence: a JSON file of SeqAugmentConfig fields
    teacher: str | None = None       # sequence: a real-only sequence checkpoint (default: models/real)
    no_teacher: bool = False         # sequence: the generator's own network draws
    progress: Callable[[int, int, str], None] | None = None  # (step, total, text) while the GAN fits
    log: Callable[[str], None] = log.info


@dataclass(frozen=True)
class Generator:
    """One ``--generator``: the job that makes its run, the request fields only it reads, and the
    summary's headline."""

    run: Callable[[Workspace, AugmentRequest], dict[str, Any]]
    options: tuple[str, ...]
    headline: Callable[[dict[str, Any]], str]


def augment(ws: Workspace, generator: str, req: AugmentRequest) -> dict[str, Any]:
    """Run ``generator`` (a key of ``GENERATORS``) on ``req``; an option of another generator, or
    an unknown name: one-line error before anything is fitted."""
    spec = GENERATORS.get(generator)
    if spec is None:
        raise EcaugError(f"--generator must be one of {', '.join(GENERATORS)}, got {generator!r}")
    for name, other in GENERATORS.items():
        for opt in set(other.options) - set(spec.options):
            if getattr(req, opt) not in (None, False):
                raise EcaugError(f"{_flag(opt)} goes with the {name} generator (--generator {name}), not with {generator}")
    return spec.run(ws, req)


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def load_training_examples(ws: Workspace, max_rows: int | None = None, seed: int = 0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Real training examples through Feast (entity rows from the training interactions source)."""
    meta = read_feature_meta() or {}
    src = feast_io.source_file(ws.feast_dir, feast_io.TRAIN_SOURCE)
    if not src.exists():
        raise DataValidationError(src, None, "missing: run `ecaug ingest` first")
    ent = feast_io.source_rows(src, ["user_id", "item_id", "event_timestamp", "label"])
    if len(ent) == 0:
        raise DataValidationError(src, None, "no training interactions")
    if max_rows and len(ent) > max_rows:
        rng = np.random.default_rng(seed)
        ent = ent.iloc[np.sort(rng.choice(len(ent), max_rows, replace=False))].reset_index(drop=True)
    feats = [f"user_features:{c}" for c in USER_FEATURES]
    df = feast_io.historical_features(ent, features=feats, store=ws.store())
    return df, source_lineage(src, ent, meta)


def augment_run(ws: Workspace, rows: int = 10_000, segment: str | None = None, seed: int = 0, dataset: str | None = None,
                config: Any = None, progress: Callable[[dict[str, float]], None] | None = None,
                publish: bool = True, lineage_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``ecaug augment``; returns the summary printed with ``--json``. ``lineage_extra`` is
    added to the manifest's lineage (``ecaug refresh``: ``parent_run_id``, the appended versions).
    Redis is started (or attached) only to publish a run that passed its gate."""
    cfg = config or AugmentConfig()
    cfg.segment = segment
    examples, lineage = load_training_examples(ws, cfg.max_fit_rows + cfg.holdout_rows, seed)
    check_dataset(dataset, lineage)
    run_id, seq = synth_store.new_run_id()  # under the runs lock: distinct number and id range
    cfg.run_id, cfg.user_id_start = run_id, synth_store.user_id_start(seq)
    try:
        res = augment_frame(examples, rows, seed=seed, config=cfg, progress=progress, source=lineage.get("source"))
    except BaseException:
        synth_store.release_run_id(run_id)
        raise
    m = res.metrics
    prev = synth_store.active_run()
    manifest = {
        "gate": m["gate"], "gate_reasons": m["gate_reasons"], "config": cfg.to_json(), "metrics": m,
        "lineage": {**lineage, "parent_run": prev, "generator_version": res.accepted["generator_version"].iloc[0] if len(res.accepted) else None,
                    "seed": seed, "segment": segment, "warm_started": bool(getattr(res.gan, "warm_started", False)),
                    **(lineage_extra or {})},
        "labeler_name": "ecaug-cluster-hgb/1",
    }
    cols = list(res.real_flat.columns.drop(["user_tier", "item_tier"]))
    discrete = [c for c in cols if c.startswith(("recent_item_", "top_attr_")) or c in ("item_id", "label")]

    def extras(tmp: Any) -> None:
        res.gan.save(tmp / "model")
        acc = res.synth_flat[res.synth_flat["keep"]]
        write_report(tmp, run_id, res.real_flat[cols], acc[cols], discrete, m, res.gan.history)

    run = synth_store.write_run(run_id, seq, res.accepted, manifest, extras)
    out: dict[str, Any] = {"run_id": run_id, "run_dir": str(run.path), **{k: m[k] for k in (
        "rows_generated", "rows_accepted", "gate", "gate_reasons", "c2st_auc", "column_shapes", "pair_trends",
        "privacy_dropped", "label_agreement", "fit_seconds", "sample_seconds", "segment")}, "activated": False}
    if res.gate_passed and len(res.accepted) and publish:
        out.update(activate_and_publish(ws, run_id))
    return out


def rollback(ws: Workspace, to: str | None = None) -> dict[str, Any]:
    """``ecaug runs rollback``: point the synthetic views at ``to`` (default: the previous passing
    run, or none) and bring the online store in line, as one exclusive step."""
    with ws.online() as url, synth_store.runs_lock():
        repair.redo_pending(ws, skip=("publish",))
        before = synth_store.active_run()
        now = synth_store.rollback(to)
        pub = synth_store.publish(now, ws.feast_repo(url))
    return {"previous": before, "active": now, "removed_keys": pub.get("removed_keys"), "materialized": materialized(pub)}


def run_column(ws: Workspace, req: AugmentRequest) -> dict[str, Any]:
    """``--generator column``: the column GAN's feature rows (``req.rows``, default 10000), of
    ecaug's own repo (:func:`augment_run`) or of one view of a shop's repo (``req.repo``)."""
    rows = 10_000 if req.rows is None else req.rows
    if req.steps is not None and req.steps < 50:
        raise EcaugError(f"--steps {req.steps}: the column GAN needs at least 50")
    if req.repo is not None or req.entity is not None or req.view is not None or req.service is not None:
        if not (req.repo and req.entity and req.view):
            raise EcaugError("--repo, --entity and --view go together (and --service with them)")
        if req.dataset or req.segment:
            raise EcaugError("--dataset and --segment apply to ecaug's own repo, not with --repo")
        return augment_repo(req.repo, req.entity, req.view, req.service, rows=rows, seed=req.seed, steps=req.steps,
                            max_c2st=req.max_c2st, publish=req.publish)
    gan = GANConfig(**({"max_steps": req.steps} if req.steps else {}))
    gates = GateConfig(seed=req.seed, **({"max_c2st_auc": req.max_c2st} if req.max_c2st is not None else {}))
    show = req.progress
    progress = None if show is None else (lambda r: show(r["step"], gan.max_steps, f"fidelity {r['fidelity']:.3f}"))
    return augment_run(ws, rows=rows, segment=req.segment, seed=req.seed, dataset=req.dataset,
                       config=AugmentConfig(gan=gan, gates=gates), publish=req.publish, progress=progress)


def run_sequence(ws: Workspace, req: AugmentRequest) -> dict[str, Any]:
    """``--generator sequence`` (the default): the sequence generator on the real training
    histories, its expansions drawn by the teacher :func:`pick_teacher` chose (under
    ``TEACHER_DEFAULTS``), else by its own network; the lineage records which and why."""
    if req.repo is not None or req.events is not None or req.view is not None:
        return run_repo_events(req)
    teacher, why = pick_teacher(ws, req)
    req.log(f"augment: continuations from the teacher {teacher} ({why})" if teacher is not None
            else f"augment: no teacher ({why}); the generator's own network draws the expansions")
    cfg = seq_config_file(req.config, seed=req.seed, defaults=TEACHER_DEFAULTS if teacher is not None else None)
    if req.steps is not None:
        cfg.gan.adv_steps = req.steps
    if req.max_c2st is not None:
        cfg.max_c2st_auc = req.max_c2st
    extra = {"teacher_choice": why, **({"recipe": recipe} if (recipe := _recipe(teacher, req, cfg)) else {})}
    return augment_seq_run(ws, cfg, seed=req.seed, dataset=req.dataset, publish=req.publish, teacher=teacher,
                           lineage_extra=extra)


def _recipe(teacher: Any, req: AugmentRequest, cfg: Any) -> str | None:
    """The study's name for what a teacher draws (the lineage's ``recipe``): ``gan_disc_select``
    when the adversarial stage runs (config ``refine``) and its discriminator picks what is kept
    (``keep``), ``gan_augmented`` with the stage alone, ``distill_priors`` (``TEACHER_RECIPE``)
    with neither; marked when
    --config or --steps (which moves only the generator's own adversarial phase) changed the
    settings. None without a teacher."""
    if teacher is None:
        return None
    base = "gan_disc_select" if cfg.keep == "discriminator" else "gan_augmented" if cfg.refine is not None else TEACHER_RECIPE
    changed = req.config is not None or (req.steps is not None and cfg.gan.adversarial)
    return f"{base}, changed by --config/--steps" if changed else base


def run_repo_events(req: AugmentRequest) -> dict[str, Any]:
    """``--repo R --events SOURCE``: the sequence path on a shop's own event log
    (:mod:`ecaug_feast.jobs.augment_events`), its continuations drawn by the shop's trained
    recommender when there is one (:func:`~ecaug_feast.jobs.augment_events.repo_teacher`, under
    ``TEACHER_DEFAULTS``), else by the generator's own network; the lineage records which and why."""
    if not (req.repo and req.events):
        raise EcaugError("--repo and --events go together for the sequence generator (--entity/--view: --generator column)")
    if req.dataset:
        raise EcaugError("--dataset applies to ecaug's own repo, not with --repo")
    teacher_for, why = repo_teacher(req.repo, req.events, req.no_teacher, req.teacher)
    req.log(f"augment: continuations from the shop's recommender ({why})" if teacher_for is not None
            else f"augment: no teacher ({why}); the generator's own network draws the expansions")
    cfg = seq_config_file(req.config, seed=req.seed, defaults=TEACHER_DEFAULTS if teacher_for is not None else None)
    if req.steps is not None:
        cfg.gan.adv_steps = req.steps
    if req.max_c2st is not None:
        cfg.max_c2st_auc = req.max_c2st
    return augment_events(req.repo, req.events, seed=req.seed, config=cfg, publish=req.publish,
                          views=[req.view] if req.view else [], teacher_for=teacher_for, teacher_choice=why,
                          recipe=_recipe(teacher_for, req, cfg))


def pick_teacher(ws: Workspace, req: AugmentRequest) -> tuple[str | None, str]:
    """``(checkpoint or None, why)``: ``--teacher``; none with ``--no-teacher``; else the
    real-only checkpoint ``ecaug train`` wrote (``models/real``) when it is a sequence model
    trained on the dataset the Feast sources hold."""
    if req.teacher is not None and req.no_teacher:
        raise EcaugError("--teacher and --no-teacher exclude each other")
    if req.teacher is not None:
        return req.teacher, "--teacher"
    if req.no_teacher:
        return None, "--no-teacher"
    where = ws.models_dir / DEFAULT_TEACHER
    try:
        meta = read_config(where)
    except CheckpointError:
        return None, f"no real-only checkpoint at {where}: run `ecaug train` first to have one"
    if not sequential(meta):
        return None, f"{where} is a bag model; the teacher must be a sequence model"
    held = (read_feature_meta(ws.feast_dir) or {}).get("dataset")
    trained_on = (meta.get("data") or {}).get("dataset")
    if held and trained_on and held != trained_on:
        return None, f"{where} was trained on {trained_on!r}, the Feast sources hold {held!r}"
    return str(where), f"default: {where}, the real-only model `ecaug train` wrote"


def _column_headline(out: dict[str, Any]) -> str:
    if "twin" in out:  # a shop's repo
        return f"run {out['run_id']} of {out['twin']}: gate {out['gate']}, {out['rows_accepted']}/{out['rows_generated']} rows accepted"
    return (f"run {out['run_id']}: gate {out['gate']}, {out['rows_accepted']}/{out['rows_generated']} rows accepted, "
            f"C2ST AUC {out['c2st_auc']:.3f}, shapes {out['column_shapes']:.3f}, trends {out['pair_trends']:.3f}")


def _sequence_headline(out: dict[str, Any]) -> str:
    if "events" in out:  # a shop's event log
        return (f"run {out['run_id']} of {out['twin']}: gate {out['gate']}, {out['histories_accepted']} histories "
                f"({out['events_written']} events), C2ST AUC histories {out['c2st_auc_sequences']}")
    return (f"run {out['run_id']} (sequence{', teacher ' + out['teacher'] if out.get('teacher') else ''}): gate {out['gate']}, "
            f"{out['rows_accepted']}/{out['rows_generated']} histories accepted ({out['interactions_accepted']} interactions), "
            f"C2ST AUC histories {out['c2st_auc_sequences']}, features {out['c2st_auc']}, catalogue coverage "
            f"{out['catalogue_coverage']}, tail share {out['tail_share']}")


# ``--generator``: name -> what runs. The first is the default (`ecaug augment`, the demo).
GENERATORS: dict[str, Generator] = {
    "sequence": Generator(run_sequence, ("config", "teacher", "no_teacher", "repo", "events", "view"), _sequence_headline),
    "column": Generator(run_column, ("rows", "segment", "repo", "entity", "view", "service"), _column_headline),
}
DEFAULT_GENERATOR = next(iter(GENERATORS))
