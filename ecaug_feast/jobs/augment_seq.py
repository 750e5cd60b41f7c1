"""``ecaug augment --generator sequence`` end to end: real training histories from Feast -> sequence
GAN (expansions + whole synthetic users, labeler, gates) -> run dir -> Feast views.

1. the real TRAINING histories as the sequence trainer reads them: each user's serving row of
   ``user_features`` (``recent_items`` as of the last training event + 1 ms) through Feast
   ``get_historical_features`` (``recommender.data.train_data_from_store`` +
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
sampling settings (the study's ``--seq-teacher recommender``), and the lineage names the teacher.
The teacher reads the same Feast training histories as the generator, nothing else.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecaug_feast import schema as S
from ecaug_feast.errors import DataValidationError, EcaugError
from ecaug_feast.histories import Histories
from ecaug_feast.jobs.augment import activate_and_publish, check_dataset, source_lineage
from ecaug_feast.jobs.workspace import Workspace
from ecaug_feast.synth.seq_pipeline import HistoryTimes, SeqAugmentConfig, SeqAugmentResult

GENERATOR = "sequence"  # lineage ``generator``: what `ecaug finetune` checks before reading histories
GENERATOR_VERSION = "ecaug-seq-gan/1"
LABELER_NAME = "ecaug-seq-labeler/1"
MIN_HISTORIES = 10  # the generator refuses fewer (SequenceGAN.fit)
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
    from recommender.data import normalise_lists, train_data_from_store
    from recommender.seq_train import histories_for, seq_config_for

    meta = read_feature_meta() or {}
    src, item_src = ws.feast_dir / "train_interactions.parquet", ws.feast_dir / "item_features.parquet"
    for p in (src, item_src):
        if not p.exists():
            raise DataValidationError(p, None, "missing: run `ecaug ingest` first")
    ent = pd.read_parquet(src, columns=[S.USER_ID, S.ITEM_ID, S.EVENT_TIMESTAMP, S.LABEL])
    pos = ent[ent[S.LABEL] == 1].reset_index(drop=True)
    n_users = pos[S.USER_ID].nunique()
    if n_users < MIN_HISTORIES:
        raise DataValidationError(src, S.LABEL, f"{n_users} users with training events (label 1); the sequence "
                                                f"generator needs at least {MIN_HISTORIES} histories")
    item_rows = pd.read_parquet(item_src)
    items = normalise_lists(item_rows.drop_duplicates(S.ITEM_ID)[[S.ITEM_ID, S.ATTRIBUTES]].reset_index(drop=True))
    train = pos[[S.USER_ID, S.ITEM_ID, S.EVENT_TIMESTAMP]]
    data = train_data_from_store(ws.store(), pos, train, None, items, item_rows, {"source": "feast"}, examples=False)
    hist = histories_for(data, seq_config_for(data, max_len=max_len))
    attrs = item_attributes(items)
    return TrainingHistories(hist, HistoryTimes.of(data.train, hist.user_ids), data.train, attrs,
                             source_lineage(src, ent, meta), int(data.num_items))


# ``--teacher``'s defaults: the settings the study measured with the teacher (README, Beauty and
# Toys at 25 %: 2 items continued, 3 independent expansions of each short history, no whole
# synthetic users); a --config file's fields override them
TEACHER_DEFAULTS: dict[str, Any] = {"n_new": 2, "synthetic_share": 0.0, "expansions": 3, "gan": {"reverse": False}}


def seq_config(overrides: Any = None, seed: int = 0, source: str = "--config",
               defaults: dict[str, Any] | None = None) -> SeqAugmentConfig:
    """A ``SeqAugmentConfig`` from JSON-like overrides: its fields, with ``gan`` and ``labeler``
    taking ``SeqGANConfig`` / ``SeqLabelerConfig`` fields. ``seed`` seeds all three unless the
    overrides set it; ``defaults`` (same shape) stand under the overrides. Not an object or an
    unknown field: one-line error naming ``source``."""
    from ecaug_feast.label.seq_labeler import SeqLabelerConfig
    from ecaug_feast.synth.seq_gan import SeqGANConfig

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
                    teacher: str | Path | None = None) -> dict[str, Any]:
    """Run ``ecaug augment --generator sequence``; returns the summary printed with ``--json``.
    ``teacher``: a sequence checkpoint whose next-item scores draw the continuations (see the
    module docstring); the config's generator must then run forward (``gan.reverse`` false)."""
    from ecaug_feast.synth.seq_pipeline import augment_histories

    cfg = config or SeqAugmentConfig(seed=seed)
    if teacher is not None and cfg.gan.reverse:
        raise EcaugError("--teacher continues histories: the generator must run forward (set gan.reverse false in --config)")
    th = load_training_histories(ws, cfg.gan.max_len)
    check_dataset(dataset, th.lineage)
    score, extra = None, dict(lineage_extra or {})
    if teacher is not None:
        score, extra["teacher"] = load_teacher(teacher, th)
    with tempfile.TemporaryDirectory(prefix="ecaug-seq-") as rep:
        res = augment_histories(th.histories.values, th.histories.offsets, cfg, report_dir=rep, times=th.times, attributes=th.attributes,
                                teacher=score)
        return write_sequence_run(ws, res, th, cfg, publish=publish, lineage_extra=extra, figures=Path(rep))


def load_teacher(path: str | Path, th: TrainingHistories) -> tuple[Any, dict[str, Any]]:
    """``(next-item scorer, lineage)`` of a sequence checkpoint trained on the dataset ``th`` holds.
    A bag checkpoint, another catalogue or another dataset: one-line error."""
    from recommender.checkpoint import load_checkpoint, resolve
    from recommender.seq_train import next_item_scorer

    model, meta = load_checkpoint(path)
    where = resolve(path)
    if getattr(model.cfg, "kind", "bag") != "sequence":
        raise EcaugError(f"--teacher {where}: a bag checkpoint; the teacher must be a sequence model (`ecaug train --model sequence`)")
    if model.cfg.num_items != th.num_items:
        raise EcaugError(f"--teacher {where}: scores {model.cfg.num_items} items, the Feast sources hold {th.num_items}")
    trained_on = (meta.get("data") or {}).get("dataset")
    if trained_on and th.lineage.get("dataset") and trained_on != th.lineage["dataset"]:
        raise EcaugError(f"--teacher {where}: trained on {trained_on!r}, the Feast sources hold {th.lineage['dataset']!r}")
    valid = (meta.get("metrics") or {}).get("valid") or {}
    return next_item_scorer(model), {"checkpoint": str(where), "dataset": trained_on, "valid_ndcg@10": valid.get("ndcg@10"),
                                     "run_id": (meta.get("data") or {}).get("run_id")}


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

    real = pd.read_parquet(ws.feast_dir / "user_features.parquet", columns=[S.USER_ID, *S.USER_SCALAR_COLUMNS])
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
