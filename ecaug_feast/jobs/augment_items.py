"""``ecaug augment-items``: generated item vectors for the items a sequence checkpoint never trained
on (cold items of the catalogue, new items added after training), written as a run of the
``item_features_synth`` view (:mod:`ecaug_feast.item_runs`) and materialized.

1. the checkpoint (default: the newest, the one ``ecaug serve`` serves) and its item matrix;
2. the catalogue as the Feast ``item_features`` view holds it (:func:`feast_io.item_catalog`),
   new items included;
3. warm items = the checkpoint's items with a positive training event in the Feast
   ``train_interactions`` source that was there when the checkpoint was written (events a refresh
   appended later are left out: the model never saw them); cold = every other catalogue item,
   items beyond the checkpoint's vocabulary included;
4. an item generator (``ecaug_feast.synth.item_gen.ITEM_GENERATORS``) fitted on the warm items'
   trained vectors (and user vectors of sampled training histories, what GAR's ranking signal
   reads), vectors generated for the cold ones;
5. one row per cold item (vector, the checkpoint's ``model_version``, the attributes it came from,
   lineage), checked (finite, the model's dimension), written as a run, activated and published.

:func:`refresh_items` is the step ``ecaug refresh --events`` (new items in the events) and
``ecaug ingest`` (a catalogue that grew) run: the same job with the active item run as parent and
its checkpoint and generator, under the ``refresh_items`` intent (redone by ``ecaug repair``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ecaug_feast import feast_io, intents, item_runs
from ecaug_feast import schema as S
from ecaug_feast.errors import DataValidationError, EcaugError
from ecaug_feast.features.append import APPENDED_LOG
from ecaug_feast.features.build import CURRENT, read_feature_meta
from ecaug_feast.jobs.workspace import Workspace

log = logging.getLogger(__name__)

VERSION = 1  # of this job's row layout (generator_version = "<generator>/<VERSION>")
INTENT = "refresh_items"
USER_SAMPLE = 2000  # training histories encoded for the generator's user vectors


def default_generator() -> str:
    """``gar`` (adversarial, GAR) when the library has it, else ``attr_mean``."""
    from ecaug_feast.synth.item_gen import ITEM_GENERATORS

    return "gar" if "gar" in ITEM_GENERATORS else "attr_mean"


def resolve_checkpoint(model: str | Path) -> Path:
    """A checkpoint folder: a path, a name under ``<state>/models``, or ``latest`` (what serve loads)."""
    from recommender.serving.wiring import resolve_model

    return resolve_model(model)


def _checkpoint_time(d: Path, meta: dict[str, Any]) -> pd.Timestamp:
    """The checkpoint's training-data cut-off: ``data.read_at`` of its ``config.json`` (when its job
    read the training data). A checkpoint written before that was recorded: its ``config.json``'s
    mtime, said in one log line (an mtime moves when the folder is copied or restored)."""
    from recommender.checkpoint import DATA_READ_AT, data_read_at

    at = data_read_at(meta)
    if at is not None:
        return pd.Timestamp(at)
    log.warning("%s: config.json records no data.%s (an older checkpoint); its mtime stands in for the training-data "
                "cut-off, which a copy or restore moves", d, DATA_READ_AT)
    return pd.Timestamp((d / "config.json").stat().st_mtime_ns, unit="ns", tz="UTC")


def warm_items(feast_dir: Path, num_items: int, written: pd.Timestamp) -> np.ndarray:
    """Item ids 1..``num_items`` with a positive training event the checkpoint could have seen:
    the ``train_interactions`` source minus the events appended after ``written`` (the checkpoint's
    training-data cut-off, :func:`_checkpoint_time`)."""
    ti = feast_io.source_rows(feast_io.source_file(feast_dir, feast_io.TRAIN_SOURCE), [S.USER_ID, S.ITEM_ID, S.EVENT_TIMESTAMP, S.LABEL])
    pos = ti[ti[S.LABEL] == 1]
    log_path = feast_dir / CURRENT / APPENDED_LOG
    if log_path.exists():
        app = pd.read_parquet(log_path)
        late = app[pd.to_datetime(app["appended_at"], utc=True) > written]
        if len(late):
            key = [S.USER_ID, S.ITEM_ID, S.EVENT_TIMESTAMP]
            pos = pos.assign(**{S.EVENT_TIMESTAMP: pd.to_datetime(pos[S.EVENT_TIMESTAMP], utc=True)})
            late = late.assign(**{S.EVENT_TIMESTAMP: pd.to_datetime(late[S.EVENT_TIMESTAMP], utc=True)})[key]
            pos = pos.merge(late.assign(_late=True), on=key, how="left")
            pos = pos[pos["_late"].isna()]
    ids = np.unique(pos[S.ITEM_ID].to_numpy(np.int64))
    return ids[(ids >= 1) & (ids <= num_items)]


def _user_vectors(model: Any, R: Any, feast_dir: Path, seed: int) -> np.ndarray:
    """The recommender's user vectors of up to ``USER_SAMPLE`` training histories (the serving rows'
    ``recent_items`` of the ``user_features`` source)."""
    from recommender.seq_model import SeqUserEncoder

    uf = feast_io.source_rows(feast_io.source_file(feast_dir, feast_io.USER_VIEW), [S.USER_ID, S.EVENT_TIMESTAMP, S.RECENT_ITEMS])
    last = uf.sort_values([S.USER_ID, S.EVENT_TIMESTAMP], kind="stable").groupby(S.USER_ID).tail(1)
    last = last[last[S.RECENT_ITEMS].map(lambda x: x is not None and len(x) > 0)]
    if len(last) > USER_SAMPLE:
        last = last.iloc[np.sort(np.random.default_rng(seed).choice(len(last), USER_SAMPLE, replace=False))]
    if not len(last):
        return np.zeros((0, int(R.shape[1])), np.float32)
    vecs = SeqUserEncoder(model, R)(list(last[S.RECENT_ITEMS]))
    return vecs[np.abs(vecs).sum(axis=1) > 0]


def _generator_config(name: str, config: dict[str, Any] | None) -> Any:
    from ecaug_feast.synth.item_gen import ITEM_GENERATORS

    if name not in ITEM_GENERATORS:
        raise EcaugError(f"--generator must be one of {', '.join(ITEM_GENERATORS)}, got {name!r}")
    cls = ITEM_GENERATORS[name]
    try:
        return cls.config_class(**(config or {}))
    except (TypeError, ValueError) as exc:
        raise EcaugError(f"item generator {name}: bad config ({exc})") from None


def _ingested_after(fmeta: dict[str, Any], written: pd.Timestamp) -> bool | None:
    """Whether the Feast sources were built (ingest) after the checkpoint was written; None when
    the feature meta cannot tell (an append rewrote ``written_at`` after the checkpoint)."""
    def ts(x: Any) -> pd.Timestamp | None:
        try:
            t = pd.Timestamp(x)
        except (TypeError, ValueError):
            return None
        return None if pd.isna(t) else (t if t.tzinfo else t.tz_localize("UTC"))

    appends = fmeta.get("appends") or []
    if not appends:  # written_at is the ingest's time
        t = ts(fmeta.get("written_at"))
        return None if t is None else bool(t > written)
    first = ts(appends[0].get("at") if isinstance(appends[0], dict) else None)
    return False if first is not None and first <= written else None  # the ingest came before the first append


def read_config_file(path: str | Path) -> dict[str, Any]:
    """``--config``: a JSON object of the generator's config fields (one line when it is not)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataValidationError(p, None, "not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataValidationError(p, None, f"not valid JSON ({type(exc).__name__}: {str(exc)[:100]})") from None
    if not isinstance(data, dict):
        raise DataValidationError(p, None, "must be a JSON object of the generator's config fields")
    return data


def check_vectors(vecs: np.ndarray, dim: int, warm_norm: float) -> list[str]:
    """Reasons a run's vectors must not be served (empty list: pass): non-finite values, the wrong
    dimension, or a mean norm far from the warm items' (x1/10..x10: another space)."""
    reasons = []
    if vecs.ndim != 2 or vecs.shape[1] != dim:
        reasons.append(f"vectors of shape {vecs.shape}, the model's dimension is {dim}")
    elif len(vecs):
        if not np.isfinite(vecs).all():
            reasons.append("non-finite values in the generated vectors")
        else:
            norm = float(np.linalg.norm(vecs, axis=1).mean())
            if warm_norm > 0 and not (warm_norm / 10 <= norm <= warm_norm * 10):
                reasons.append(f"mean vector norm {norm:.3g} is not within x10 of the warm items' {warm_norm:.3g}")
    return reasons


def augment_items(ws: Workspace, model: str | Path = "latest", generator: str | None = None, seed: int = 0,
                  config: dict[str, Any] | None = None, publish: bool = True, parent_run_id: str | None = None,
                  lineage_extra: dict[str, Any] | None = None, log_fn: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Fit an item generator on the checkpoint's warm items, generate every cold item's vector,
    write the run (activated and materialized when it passes and ``publish``). Returns the summary."""
    import torch

    from recommender.batching import ItemCatalog
    from recommender.checkpoint import load_checkpoint
    from recommender.serving.loader import model_version

    from ecaug_feast.synth.item_gen import ITEM_GENERATORS

    t0 = time.perf_counter()
    name = generator or default_generator()
    gcfg = _generator_config(name, config)
    d = resolve_checkpoint(model)
    net, meta = load_checkpoint(d)
    if not getattr(net.cfg, "sequential", False):
        raise EcaugError(f"{d}: augment-items needs a sequence checkpoint (its item matrix is what the vectors stand in for); "
                         f"this one is a {meta.get('model', {}).get('kind', 'bag')} model")
    version = model_version(d)
    store = ws.store()
    items, items_src = feast_io.item_catalog(store)
    fmeta = read_feature_meta(ws.feast_dir) or {}
    trained_on = (meta.get("data") or {}).get("dataset")
    if trained_on and fmeta.get("dataset") and trained_on != fmeta["dataset"]:
        raise EcaugError(f"{d}: trained on dataset {trained_on!r}, the Feast sources hold {fmeta['dataset']!r}: "
                         "its item space does not fit this catalogue")
    n_vocab = int(net.cfg.num_items)
    n_cat = int(items[S.ITEM_ID].max()) if len(items) else 0
    if n_cat < n_vocab:
        raise EcaugError(f"{d}: the checkpoint has {n_vocab} items, the Feast catalogue ({items_src}) only {n_cat}: "
                         "it was trained on another dataset")
    with torch.no_grad():
        item_vectors = getattr(net, "item_vectors", None)
        R = (item_vectors() if callable(item_vectors) else net.item_matrix()).detach().float()
    Rn = R.numpy()
    catalog = ItemCatalog.from_frame(items)  # rows 0..n_cat: the new items' attributes too
    written = _checkpoint_time(d, meta)
    warm = warm_items(ws.feast_dir, n_vocab, written)
    if not len(warm):
        raise EcaugError(f"{d}: no item of the checkpoint has a training event in "
                         f"{feast_io.source_file(ws.feast_dir, feast_io.TRAIN_SOURCE)}")
    cold = np.setdiff1d(items[S.ITEM_ID].to_numpy(np.int64), warm)
    users = _user_vectors(net, R, ws.feast_dir, seed)
    log_fn(f"item generator {name}: {len(warm):,} warm items, {len(cold):,} cold ({int((cold > n_vocab).sum()):,} new since "
           f"training), {len(users):,} user vectors, model {version}")
    torch.manual_seed(seed)
    np.random.seed(seed)
    gen = ITEM_GENERATORS[name](gcfg)
    gen.fit(catalog, warm, Rn[warm], user_vecs=users if len(users) else None)
    vecs = gen.generate(catalog, cold) if len(cold) else np.zeros((0, Rn.shape[1]), np.float32)
    warm_norm = float(np.linalg.norm(Rn[warm], axis=1).mean())
    reasons = check_vectors(vecs, int(Rn.shape[1]), warm_norm)
    attrs = items.set_index(S.ITEM_ID)[S.ATTRIBUTES]
    rows = pd.DataFrame({S.ITEM_ID: cold, S.ITEM_VECTOR: list(vecs), S.MODEL_VERSION: version,
                         S.ATTRIBUTES: [list(attrs.get(int(i), [])) for i in cold],
                         S.GENERATOR_VERSION: f"{name}/{VERSION}"})
    manifest = {
        "gate": "pass" if not reasons else "fail", "gate_reasons": reasons,
        "config": {"generator": name, "generator_config": _jsonable(getattr(gen, "report", {}).get("config")), "seed": seed},
        "metrics": {"rows_accepted": int(len(rows)), "warm_items": int(len(warm)), "cold_items": int(len(cold)),
                    "new_items": int((cold > n_vocab).sum()), "warm_mean_norm": round(warm_norm, 4),
                    "generated_mean_norm": round(float(np.linalg.norm(vecs, axis=1).mean()), 4) if len(vecs) else None,
                    "generator": _jsonable(getattr(gen, "report", {}))},
        "lineage": {"checkpoint": str(d), "model_version": version, "training_data_cutoff": written.isoformat(),
                    "dataset": (meta.get("data") or {}).get("dataset") or fmeta.get("dataset"),
                    "feature_version": fmeta.get("version"), "catalogue": str(items_src), "parent_run_id": parent_run_id,
                    # an ingest after the checkpoint: warm = a training event in the new sources (the appends
                    # a refresh made are told apart, a re-ingest's new events are not)
                    "sources_ingested_after_checkpoint": _ingested_after(fmeta, written),
                    "generator_version": f"{name}/{VERSION}", **(lineage_extra or {})},
    }
    run_id, seq = item_runs.new_run_id()
    try:
        run = item_runs.write_run(run_id, seq, rows, manifest)
    except BaseException:
        item_runs.release_run_id(run_id)
        raise
    out: dict[str, Any] = {"run_id": run.run_id, "run_dir": str(run.path), "generator": name, "model_version": version,
                           "checkpoint": str(d), "gate": manifest["gate"], "gate_reasons": reasons,
                           "rows": int(len(rows)), "warm_items": int(len(warm)), "cold_items": int(len(cold)),
                           "new_items": int((cold > n_vocab).sum()), "parent_run_id": parent_run_id, "activated": False}
    if publish and manifest["gate"] == "pass":
        out.update(activate_and_publish(ws, run.run_id))
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def activate_and_publish(ws: Workspace, run_id: str) -> dict[str, Any]:
    """Activate an item run and bring the online store in line, as one exclusive step."""
    with ws.online() as url, item_runs.lock():
        item_runs.activate(run_id)
        pub = item_runs.publish(ws.feast_repo(url), ws.state_dir)
    return {"activated": True, "materialized": pub.get("materialized"), "removed_keys": pub.get("removed_keys")}


def rollback_items(ws: Workspace, to: str | None = None) -> dict[str, Any]:
    """``ecaug runs rollback --items``: the previous item run (or ``to``, or none) and the online
    store brought in line, as one exclusive step."""
    with ws.online() as url, item_runs.lock():
        before = item_runs.active_run()
        now = item_runs.rollback(to)
        pub = item_runs.publish(ws.feast_repo(url), ws.state_dir)
    return {"previous": before, "active": now, "removed_keys": pub.get("removed_keys"), "materialized": pub.get("materialized")}


def uncovered_items(ws: Workspace, checkpoint: Path, parent: str | None) -> tuple[list[int], str]:
    """Catalogue items beyond ``checkpoint``'s vocabulary (new since it was trained) that the active
    item run ``parent`` has no row for in this checkpoint's space with the same attributes; and
    the checkpoint's version."""
    from recommender.checkpoint import read_config
    from recommender.serving.loader import model_version

    vocab = int(read_config(checkpoint)["model"]["num_items"])
    version = model_version(checkpoint)
    src = feast_io.source_rows(feast_io.source_file(ws.feast_dir, feast_io.ITEM_VIEW), [S.ITEM_ID, S.EVENT_TIMESTAMP, S.ATTRIBUTES])
    latest = src.sort_values(S.EVENT_TIMESTAMP, kind="stable").groupby(S.ITEM_ID).tail(1)
    beyond = latest[latest[S.ITEM_ID] > vocab]
    covered: set[tuple[int, tuple[int, ...]]] = set()
    if parent is not None and len(beyond):
        rows = item_runs.rows_of(item_runs.load_run(parent))
        rows = rows[rows[S.MODEL_VERSION] == version]
        # an id with other attributes is another item (a re-ingest may reuse ids): not covered
        covered = {(int(i), tuple(sorted(map(int, a)))) for i, a in zip(rows[S.ITEM_ID], rows[S.ATTRIBUTES])}
    todo = [int(i) for i, a in zip(beyond[S.ITEM_ID], beyond[S.ATTRIBUTES]) if (int(i), tuple(sorted(map(int, a)))) not in covered]
    return sorted(todo), version


def _beyond_vocabulary(ws: Workspace, model: str | Path) -> bool:
    """Whether the catalogue may hold items beyond the vocabulary of ``model`` (its config.json
    read as JSON: no torch). True when unsure (no readable checkpoint: the full check says why)."""
    from ecaug_feast.paths import models_dir

    d = Path(model)
    if str(model) == "latest":
        found = [p for p in models_dir().glob("*/config.json")] if models_dir().exists() else []
        if not found:
            return False  # no checkpoint: nothing to generate for
        d = max(found, key=lambda p: p.stat().st_mtime_ns).parent
    try:
        vocab = int(json.loads((d / "config.json").read_text())["model"]["num_items"])
        ids = feast_io.source_rows(feast_io.source_file(ws.feast_dir, feast_io.ITEM_VIEW), [S.ITEM_ID])[S.ITEM_ID]
    except (OSError, ValueError, KeyError, TypeError):
        return True
    return len(ids) > 0 and int(ids.max()) > vocab


def refresh_items(ws: Workspace, seed: int = 0, reason: str = "refresh") -> dict[str, Any]:
    """The item step of ``ecaug refresh --events`` and ``ecaug ingest``: when the catalogue holds
    items the served checkpoint never saw (new items) without a row of the active item run, a new
    item run (parent = the active one, its checkpoint and generator; none active: the newest
    checkpoint, the default generator) is written and materialized in the same command. Skipped,
    with the reason, when nothing is new or there is no sequence checkpoint. Under the
    ``refresh_items`` intent (``ecaug repair`` redoes it)."""
    parent = item_runs.active_run()
    pman = item_runs.load_run(parent).manifest if parent else {}
    model = (pman.get("lineage") or {}).get("checkpoint") or "latest"
    if not _beyond_vocabulary(ws, model):  # the usual case, answered without loading torch
        return {"skipped": "no item beyond the checkpoint's vocabulary", "active": parent}
    from recommender.checkpoint import CheckpointError, read_config, sequential

    try:
        d = resolve_checkpoint(model)
        if not sequential(read_config(d)):
            return {"skipped": f"{d} is not a sequence checkpoint: no item vectors to generate"}
        trained_on = (read_config(d).get("data") or {}).get("dataset")
        held = (read_feature_meta(ws.feast_dir) or {}).get("dataset")
        if trained_on and held and trained_on != held:
            return {"skipped": f"{d} was trained on {trained_on!r}, the Feast sources hold {held!r}"}
        todo, version = uncovered_items(ws, d, parent)
    except (EcaugError, CheckpointError) as exc:
        return {"skipped": f"no checkpoint to generate item vectors for ({exc})"}
    if not todo:
        return {"skipped": "no new item without a row in the active item run", "active": parent}
    gen = (pman.get("config") or {}).get("generator")
    with intents.intent(ws.state_dir, INTENT, seed=seed, reason=reason, new_items=todo[:1000]):
        return augment_items(ws, model=d, generator=gen, seed=seed, parent_run_id=parent,
                             lineage_extra={"reason": reason, "new_item_ids": todo[:1000]})


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
