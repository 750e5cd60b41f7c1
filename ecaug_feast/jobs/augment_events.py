"""``augment_events``: behaviour from a shop's own event log (issue 31 item 2, first part).

The repo file names the shop's interaction source and declares its twin with
:func:`ecaug_feast.plugin.synthetic_events` (user key, item key, their types). Then:

1. ``feast apply``; the source and its twin are found in the registry; the events are read by
   the shop's offline store (``pull_all_from_table_or_query``), their user keys checked to be of
   the declared type and outside the reserved synthetic key space (one line, before any fitting);
2. the split first, as for ecaug's own data (``datasets.split.event_log_split``, leave-last-out):
   validation and test events never reach the generator; the training events become one
   history per user (items numbered 1..n in first-seen order);
3. the product's sequence path expands them (``jobs.augment_seq.POOLS``: generator + labeler +
   gates, the history detector's C2ST, privacy and copy checks);
4. the accepted histories are written as the twin of the event source (synthetic user keys of
   the twin's key space, the shop's own item keys, timestamps ending where the source user's
   training history ends, one minute apart), a run in the twins' runs folder, activated when its
   gate passed (the views' twins keep their files, so the online store is not touched).

5. with views (``--view V``): each view's twin rows of the generated users, computed by the shop's
   own feature function the twin declaration names (``synthetic_twins(..., features={V: fn})``),
   stamped at each user's last generated event, written in the same run and materialized.

   Instead of a function, the declaration may name ecaug's own builder of each field
   (:mod:`ecaug_feast.jobs.repo_features`: counts, recent items, top item, active days).

``ecaug augment --repo R --events SOURCE [--view V] [--config FILE]`` runs it. With a trained
recommender of the shop (``<state>/repos/<project>/models/real``, ``ecaug train --repo``; its items
matched by key with ``recommender.item_keys``), the continuations are drawn from it under the
teacher's settings, as ``ecaug augment`` does on ecaug's own data; ``--no-teacher`` skips it; the
lineage's ``teacher_choice`` says which and why.

The run keeps what a refresh warm-starts from (:func:`save_generator`, ``<run>/model/``) and the
window of events it was built on (``lineage.fit_window``): ``ecaug drift|refresh --repo``
(:mod:`ecaug_feast.jobs.repo_refresh`). Not yet: item attributes ("top attributes").
"""

from __future__ import annotations

import importlib
import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from ecaug_feast import feast_io, plugin, synth_store
from ecaug_feast import schema as S
from ecaug_feast.datasets.split import event_log_split
from ecaug_feast.errors import EcaugError
from ecaug_feast.histories import Histories
from ecaug_feast.ids import DEFAULT_KEY_PREFIX
from ecaug_feast.jobs.augment_repo import _write_run
from ecaug_feast.jobs.augment_seq import (GENERATOR_VERSION, TrainingHistories, discriminator_rank, matched_draw,
                                          refine_teacher, require_forward, seq_config)
from ecaug_feast.jobs.repo_features import BUILTIN, builtin_function
from ecaug_feast.jobs.repo_keys import _KINDS, KeySpace
from ecaug_feast.jobs.repo_runs import publish_run, repo_store
from ecaug_feast.synth.seq_pipeline import HistoryTimes, SeqAugmentConfig

if TYPE_CHECKING:
    from feast import FeatureStore

    from ecaug_feast.synth.seq_gan import WarmStart

log = logging.getLogger(__name__)
STEP = pd.Timedelta(minutes=1)  # between the events of a synthetic history


def training_histories(events: pd.DataFrame, user: str, item: str, ts: str, max_len: int) -> tuple[TrainingHistories, pd.DataFrame, np.ndarray]:
    """Split first (leave-last-out), then one training history per user. Returns the histories,
    the users (row order) and the item keys (index = item id)."""
    ev = events.rename(columns={ts: S.EVENT_TIMESTAMP}).copy()
    ev[S.EVENT_TIMESTAMP] = pd.to_datetime(ev[S.EVENT_TIMESTAMP], utc=True)
    items, codes = np.unique(ev[item].to_numpy(), return_inverse=True)
    users, ucodes = np.unique(ev[user].to_numpy(), return_inverse=True)
    ev[S.ITEM_ID], ev[S.USER_ID] = codes.astype(np.int64) + 1, ucodes.astype(np.int64)
    ev = ev.sort_values([S.USER_ID, S.EVENT_TIMESTAMP], kind="stable").reset_index(drop=True)
    labels = event_log_split(ev[S.USER_ID], ev[S.EVENT_TIMESTAMP])  # the split train --repo and training_rows use
    train = ev[labels == "train"].reset_index(drop=True)
    lists = train.groupby(S.USER_ID, sort=True)[S.ITEM_ID].apply(lambda s: s.to_numpy()[-max_len:])
    hist = Histories.from_lists(lists.index.to_numpy(np.int64), list(lists.to_numpy()))
    th = TrainingHistories(hist, HistoryTimes.of(train, hist.user_ids), train[[S.USER_ID, S.ITEM_ID, S.EVENT_TIMESTAMP]],
                           {}, {"real_events": int(len(ev)), "train_events": int(len(train)),
                                "held_out_events": int((labels != "train").sum())}, int(len(items)))
    return th, pd.Series(users[lists.index.to_numpy()]), np.concatenate([[None], items])


def feature_functions(store: "FeatureStore", views: Sequence[str], events: KeySpace, item: str,
                      ts: str) -> dict[str, tuple[Any, Any]]:
    """view -> (its twin, the shop's feature function the twin names), checked before any fitting:
    the view's key must be the events' user key, of the same type, and its twin's reserved key
    prefix the event twin's (else a rollback by the run's keys would miss the view's rows)."""
    user, kind = events.column, events.kind
    repo = Path(store.config.repo_path)
    out = {}
    for name in views:
        try:
            view = store.get_feature_view(name)
        except Exception:  # noqa: BLE001 - Feast's not-found error: one line
            raise EcaugError(f"--view {name}: no such feature view in {repo}") from None
        twin = plugin.find_twin(store, name)
        space = KeySpace.of(view, twin)
        if (space.column, space.kind) != (user, kind):
            raise EcaugError(f"--view {name}: keyed by {space.column!r} ({space.kind}), the events' users by {user!r} ({kind})")
        if space.prefix != events.prefix:
            raise EcaugError(f"--view {name}: its twin's key_prefix {space.prefix!r} differs from the event twin's "
                             f"{events.prefix!r}; declare both with the same SynthTwinConfig(key_prefix=...)")
        ref = (twin.tags or {}).get(plugin.FEATURE_FN_TAG)
        if not ref:
            raise EcaugError(f"--view {name}: its twin names no feature function; declare one with "
                             f"synthetic_twins([...], features={{{name!r}: your_function}})")
        mod, fn = ref.split(":", 1)
        if ref.startswith(BUILTIN):  # ecaug's own builders, one named per field
            fields = [f.name for f in view.features]
            out[name] = (twin, builtin_function(name, fields, fn, user, item, ts))
            continue
        with feast_io._repo_import_context(repo):
            try:
                func = getattr(importlib.import_module(mod), fn)
            except (ImportError, AttributeError) as exc:
                raise EcaugError(f"--view {name}: feature function {ref} cannot be loaded ({exc})") from None
        out[name] = (twin, func)
    return out


def view_rows(name: str, twin: Any, func: Any, events: pd.DataFrame, user: str, ts: str, run_id: str) -> tuple[pd.DataFrame, int]:
    """The twin's rows of the generated users: the shop's function on their events, stamped at
    each user's last event unless the function gives a time, with the lineage columns; and the
    number of rows dropped because their key is none of the generated users' (a real key would be
    written to the twin and materialized onto a real entity)."""
    rows = func(events.copy())
    want = [user, *(f.name for f in twin.features if f.name not in {"is_synthetic", "run_id", "generator_version"})]
    missing = [c for c in want if not isinstance(rows, pd.DataFrame) or c not in rows.columns]
    if missing:
        raise EcaugError(f"--view {name}: its feature function returned no column(s) {', '.join(missing)}")
    ours = rows[user].isin(set(events[user]))
    dropped = int((~ours).sum())
    if dropped:
        log.warning("--view %s: dropped %d row(s) of its feature function keyed by no generated user", name, dropped)
    rows = rows[ours].copy()
    tts = twin.batch_source.timestamp_field
    if tts not in rows.columns:
        rows[tts] = rows[user].map(pd.to_datetime(events[ts], utc=True).groupby(events[user]).max())
    rows["is_synthetic"], rows["run_id"], rows["generator_version"] = True, run_id, GENERATOR_VERSION
    return rows, dropped


@dataclass
class EventsInput:
    """What :func:`prepare` found in the shop's repo, before any fitting: the store, the event
    source and its twin, the synthetic key space, the item key and its type, every event, the
    views' feature functions and the twins' runs folder."""

    repo: Path
    store: Any
    events: str
    source: Any
    twin: Any
    space: KeySpace
    item: str
    item_dtype: str
    ev: pd.DataFrame
    fns: dict[str, tuple[Any, Any]]
    root: Path
    views: tuple[str, ...] = ()


def prepare(repo: str | Path, events: str, views: Sequence[str] = (), apply: bool = True) -> EventsInput:
    """``feast apply`` (unless ``apply`` is false: a refresh reads the registry as it is), the
    source and its twin found, the events read and their keys checked, the views' functions
    loaded: everything that can be wrong is found here, before any fitting."""
    repo = Path(repo).expanduser().resolve()
    repo_store(repo)  # one line when it is not a Feast repo
    if apply:
        feast_io.apply(repo)
    store = feast_io.get_store(repo)
    source, twin, (user, item, user_type, item_type) = plugin.find_event_twin(store, events)
    if user_type not in _KINDS:
        raise EcaugError(f"{twin.name}: user key type {user_type}; synthetic keys are Int64, Int32 or String")
    space = KeySpace(user, _KINDS[user_type], twin.tags.get(plugin.KEY_PREFIX_TAG, DEFAULT_KEY_PREFIX))
    ev = plugin.read_events(store, source, user, item)
    space.check_real(events, ev[user])
    fns = feature_functions(store, views, space, item, twin.timestamp_field)
    return EventsInput(repo, store, events, source, twin, space, item, _KINDS.get(item_type, "string"), ev, fns,
                       plugin.runs_root_of(twin, repo), tuple(views))


def augment_events(repo: str | Path, events: str, seed: int = 0, config: "SeqAugmentConfig | dict[str, Any] | None" = None,
                   publish: bool = True, views: Sequence[str] = (),
                   teacher_for: "Callable[[np.ndarray], Teacher | None] | None" = None,
                   teacher_choice: str | None = None, recipe: str | None = None) -> dict[str, Any]:
    """Expand the shop's event source ``events`` (see the module docstring); the run's summary.
    ``config``: a ``SeqAugmentConfig`` or its JSON-like fields (``ecaug augment --config``).
    ``teacher_for``: the shop's trained recommender drawing the continuations (:func:`repo_teacher`);
    ``teacher_choice``: why it was (or no teacher was) chosen, ``recipe``: the study's name for the
    settings drawn with it (``augment_seq.TEACHER_RECIPE``), both for the lineage."""
    inp = prepare(repo, events, views)
    cfg = config if isinstance(config, SeqAugmentConfig) else seq_config(config, seed=seed, source="config")
    return build_run(inp, cfg, publish=publish, teacher_for=teacher_for,
                     lineage_extra={k: v for k, v in (("teacher_choice", teacher_choice), ("recipe", recipe)) if v} or None)


@dataclass
class Teacher:
    """A next-item scorer over the run's item ids and its lineage (``checkpoint``, ``choice``);
    the model behind it and its item numbering (``to_model``: run item id -> model index, 0 for an
    item it does not know), which the adversarial stage refines (``discriminator``: the stage's)."""

    score: Any
    lineage: dict[str, Any]
    model: Any = None
    to_model: np.ndarray | None = None
    discriminator: Any = None


def refined_teacher(teacher: Teacher, th: TrainingHistories, cfg: SeqAugmentConfig) -> Teacher:
    """The adversarial stage on a shop's repo (config ``refine``, as ``ecaug augment`` runs it on
    ecaug's own repo): the teacher's model refined against a discriminator under a KL penalty to
    itself, on the shop's training histories in the model's item numbering (items it does not
    know left out); the lineage's ``refinement`` holds the stage's report."""
    if teacher.model is None or teacher.to_model is None:
        raise EcaugError("config 'refine' (the adversarial stage): the teacher has no model to refine")
    values, offsets = _in_model(teacher.to_model, th.histories.values, th.histories.offsets)
    model, report, disc = refine_teacher(teacher.model, values, offsets, cfg)
    return Teacher(_mapped_scorer(model, teacher.to_model), {**teacher.lineage, "refinement": report}, model,
                   teacher.to_model, disc)


def _in_model(to_model: np.ndarray, values: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR histories of run item ids in a model's numbering, the items it does not know left out."""
    mv = to_model[np.asarray(values, np.int64)]
    keep = mv > 0
    rows = np.repeat(np.arange(len(offsets) - 1), np.diff(np.asarray(offsets, np.int64)))
    lens = np.bincount(rows[keep], minlength=len(offsets) - 1)
    return mv[keep], np.r_[0, np.cumsum(lens)].astype(np.int64)


def _mapped_scorer(model: Any, to_model: np.ndarray) -> Callable[[np.ndarray, np.ndarray], Any]:
    """``model``'s next-item scores over the run's item ids; an item it does not know is never drawn."""
    import torch

    from recommender.seq_train import next_item_scorer

    known = np.flatnonzero(to_model > 0)
    scorer = next_item_scorer(model)

    def score(values: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        s = scorer(*_in_model(to_model, values, offsets))
        out = torch.full((s.shape[0], len(to_model)), -float("inf"), dtype=s.dtype)
        out[:, torch.from_numpy(known)] = s[:, torch.from_numpy(to_model[known])]
        return out

    return score


def build_run(inp: EventsInput, cfg: SeqAugmentConfig, publish: bool = True,
              warm_for: "Callable[[np.ndarray], WarmStart | None] | None" = None,
              lineage_extra: dict[str, Any] | None = None, teacher: "Teacher | None" = None,
              teacher_for: "Callable[[np.ndarray], Teacher | None] | None" = None) -> dict[str, Any]:
    """Fit, generate, gate, write the run (its generator's weights and vocabulary under
    ``model/``), publish it when its gate passed. ``warm_for`` / ``teacher_for``: ``item_keys ->
    WarmStart / Teacher`` (both need this run's item numbering, known only here): a refresh
    continues from the active run's generator instead of a random start."""
    from ecaug_feast.synth.seq_pipeline import augment_histories

    twin, space, item = inp.twin, inp.space, inp.item
    th, users, item_keys = training_histories(inp.ev, space.column, item, inp.source.timestamp_field, cfg.gan.max_len)
    if teacher is None and teacher_for is not None:
        teacher = teacher_for(item_keys)
    warm = warm_for(item_keys) if warm_for is not None else None
    require_forward(cfg, teacher)
    if cfg.refine is not None:  # the adversarial stage, before a run id is taken
        if teacher is None:
            raise EcaugError("config 'refine' (the adversarial stage) refines the shop's recommender: train one first "
                             "(`ecaug train --repo R --events E`) or give --teacher")
        teacher = refined_teacher(teacher, th, cfg)
    rank = discriminator_rank(teacher.discriminator, cfg, teacher.to_model) \
        if teacher is not None and cfg.keep == "discriminator" else None
    run_id, seq = synth_store.new_run_id(inp.root)
    try:
        # no figure: nothing of the report folder is kept for a shop's run
        def draw(c: SeqAugmentConfig) -> Any:
            return augment_histories(th.histories.values, th.histories.offsets, c, report_dir=None, times=th.times,
                                     attributes=th.attributes, teacher=None if teacher is None else teacher.score, warm=warm)

        # the study's size rule when the config asks; keep: discriminator, the highest by its realness
        res = matched_draw(draw, cfg, th.histories.lengths, cfg.match_size, rank)
        df = _event_rows(res, space, seq, run_id, item_keys, item, twin.timestamp_field)
        m = {k: v for k, v in res.metrics.items() if isinstance(v, (int, float, str, bool, type(None)))}
        m["labeler_k"] = (res.metrics.get("labeler") or {}).get("k")
        m["generator"] = {k: v for k, v in (res.metrics.get("generator") or {}).items() if k != "mle_heldout_nll"}
        gate = "pass" if res.gate_passed and len(df) else "fail"
        ts = inp.ev[inp.source.timestamp_field]
        manifest = {"run_id": run_id, "seq": seq, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "gate": gate, "gate_reasons": list(res.metrics.get("gate_reasons", [])), "metrics": m,
                    "config": {"seq": str(cfg), "seq_config": asdict(cfg), "twin": twin.name, "key_space": space.describe()},
                    "lineage": {"repo": str(inp.repo), "events": inp.events, "twin": twin.name, "generator": "sequence",
                                "generator_version": GENERATOR_VERSION, "parent_run": synth_store.active_run(inp.root),
                                "real_users": int(len(users)), "views": list(inp.views),
                                # the events this run was built on: what `ecaug drift --repo` compares recent events with
                                "fit_window": {"start": ts.min().isoformat(), "end": ts.max().isoformat()} if len(ts) else None,
                                **({"teacher": teacher.lineage} if teacher is not None else {}),
                                **th.lineage, **(lineage_extra or {})},
                    "files": {twin.name: f"{twin.name}.parquet"}}
        schema = pa.schema([pa.field(space.column, pa.from_numpy_dtype(np.int64) if space.kind == "int64" else
                                     pa.int32() if space.kind == "int32" else pa.string()),
                            pa.field(item, pa.array(df[item].head(1).tolist()).type if len(df) else pa.string()),
                            pa.field(twin.timestamp_field, pa.timestamp("us", tz="UTC")), pa.field("kind", pa.string()),
                            pa.field("is_synthetic", pa.bool_()), pa.field("run_id", pa.string()),
                            pa.field("generator_version", pa.string())])
        files = {f"{twin.name}.parquet": (df, schema)}
        for name, (vtwin, func) in inp.fns.items():  # features follow the generated behaviour, the shop's way
            rows, dropped = view_rows(name, vtwin, func, df, space.column, twin.timestamp_field, run_id)
            manifest["lineage"].setdefault("view_rows_dropped", {})[vtwin.name] = dropped
            files[plugin.source_path(vtwin, inp.repo).name] = (rows, plugin.arrow_schema(vtwin))
            manifest["files"][vtwin.name] = plugin.source_path(vtwin, inp.repo).name
        run = _write_run(inp.root, run_id, files, manifest, synth_store.active_run(inp.root),
                         extras=lambda tmp: save_generator(res.gan, cfg, item_keys, inp.item_dtype, tmp / MODEL_DIR))
    except BaseException:
        synth_store.release_run_id(run_id, inp.root)
        raise
    out = {"repo": str(inp.repo), "events": inp.events, "twin": twin.name, "run_id": run_id, "run_dir": str(run.path),
           "gate": gate, "gate_reasons": manifest["gate_reasons"], "histories_accepted": int(df[space.column].nunique()) if len(df) else 0,
           "events_written": int(len(df)), "key_space": space.describe(), "activated": False, **th.lineage,
           **{k: m.get(k) for k in ("c2st_auc_sequences", "exact_copy_share", "catalogue_coverage", "dropped_privacy", "fit_seconds")},
           "view_rows_dropped": manifest["lineage"].get("view_rows_dropped", {}),
           "teacher": (teacher.lineage.get("checkpoint") if teacher is not None else None)}
    if gate == "pass" and publish:
        pub = publish_run(inp.store, inp.root, run_id, manifest)
        out.update(activated=True, previous_run=pub["previous"], materialized=pub["materialized"])
    return out


MODEL_DIR = "model"  # in a run folder: the generator's weights, its item keys, its config (what a refresh warm-starts from)


def save_generator(gan: Any, cfg: SeqAugmentConfig, item_keys: np.ndarray, item_dtype: str, path: Path) -> None:
    """``generator.pt`` and ``discriminator.pt`` (state dicts), ``item_keys.json`` (the shop's key
    of each generator vocabulary entry, in vocabulary order: ``recommender.item_keys``) and
    ``gan.json`` (config and fit report). No pickles."""
    import torch

    from recommender.item_keys import ItemKeys

    if gan is None:
        return
    path.mkdir(parents=True, exist_ok=True)
    state = gan.state()
    torch.save(state["gen"], path / "generator.pt")
    torch.save(state["disc"], path / "discriminator.pt")
    ItemKeys(tuple(item_keys[np.asarray(gan.vocab, np.int64)]), item_dtype).save(path)
    (path / "gan.json").write_text(json.dumps({"version": GENERATOR_VERSION, "config": asdict(cfg.gan), "report": gan.report},
                                              indent=1, default=str))


def _event_rows(res: Any, space: KeySpace, seq: int, run_id: str, item_keys: np.ndarray, item: str, ts: str) -> pd.DataFrame:
    """One row per item of each accepted history: a synthetic user key, the shop's item key, a time."""
    hists = [np.asarray(h, np.int64) for h in res.histories]
    keys = space.keys(seq, run_id, len(hists))
    ends = pd.to_datetime(np.asarray(res.end_ns, np.int64), utc=True)
    rows: dict[str, list[Any]] = {space.column: [], item: [], ts: [], "kind": []}
    for k, h, end, kind in zip(keys, hists, ends, res.kind):
        rows[space.column] += [k] * len(h)
        rows[item] += list(item_keys[h])
        rows[ts] += list(end - STEP * np.arange(len(h) - 1, -1, -1))
        rows["kind"] += [str(kind)] * len(h)
    df = pd.DataFrame(rows)
    df["is_synthetic"], df["run_id"], df["generator_version"] = True, run_id, GENERATOR_VERSION
    return df


# ------------------------------------------------------------------ the shop's trained recommender as teacher
TEACHER_NAME = "real"  # <state>/repos/<project>/models/real: the checkpoint `ecaug train --repo` writes


def repo_teacher(repo: str | Path, events: str, no_teacher: bool = False, teacher: str | Path | None = None
                 ) -> tuple["Callable[[np.ndarray], Teacher] | None", str]:
    """``(item_keys -> Teacher, why)`` or ``(None, why)``: ``--teacher``; none with ``--no-teacher``;
    else the shop's trained recommender (``<state>/repos/<project>/models/real``) when it is a
    sequence model trained from ``events`` with its ``item_keys.json``. The lineage's
    ``teacher_choice`` is ``why``."""
    from recommender.checkpoint import CheckpointError, read_config, sequential

    if teacher is not None and no_teacher:
        raise EcaugError("--teacher and --no-teacher exclude each other")
    if no_teacher:
        return None, "--no-teacher"
    from ecaug_feast.jobs.workspace import Workspace

    where = Path(teacher).expanduser() if teacher is not None else Workspace.from_env(repo=repo).models_dir / TEACHER_NAME
    why = "--teacher" if teacher is not None else f"default: {where}, the recommender `ecaug train --repo` wrote"
    try:
        meta = read_config(where)
    except CheckpointError as exc:
        if teacher is not None:
            raise EcaugError(f"--teacher {where}: {exc}") from None
        return None, f"no trained recommender at {where}: run `ecaug train --repo {repo} --events {events}` first to have one"
    if not sequential(meta):
        return None, f"{where} is a bag model; the teacher must be a sequence model"
    if not (where / "item_keys.json").exists():
        return None, f"{where} has no item_keys.json (not trained from a shop's repo)"
    trained_on = ((meta.get("data") or {}).get("repo") or {}).get("events")
    if trained_on and trained_on != events:
        return None, f"{where} was trained from {trained_on!r}, not {events!r}"
    return (lambda item_keys: load_repo_teacher(where, item_keys, why)), why


def load_repo_teacher(where: Path, item_keys: np.ndarray, why: str) -> Teacher:
    """The checkpoint at ``where`` as a next-item scorer over this run's item ids (``item_keys[i]``:
    the shop's key of id ``i``), its items matched by key (``recommender.item_keys.ItemKeys``): a
    history's items the model does not know are left out of its input, and the items it does
    not know are never drawn."""
    from recommender.checkpoint import load_checkpoint
    from recommender.item_keys import ItemKeys

    model, meta = load_checkpoint(where)
    keys = ItemKeys.load(where)
    assert keys is not None  # repo_teacher checked the file
    to_model = np.r_[0, keys.index_of(item_keys[1:])].astype(np.int64)  # run item id -> model index (0: unknown)
    known = np.flatnonzero(to_model > 0)

    valid = (meta.get("metrics") or {}).get("valid") or {}
    return Teacher(_mapped_scorer(model, to_model),
                   {"checkpoint": str(where), "items_known": int(len(known)), "items": int(len(to_model) - 1),
                    "valid_ndcg@10": valid.get("ndcg@10"), "choice": why}, model, to_model)
