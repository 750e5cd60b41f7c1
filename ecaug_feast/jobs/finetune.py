"""The fine-tune job (``ecaug finetune``): continue training a checkpoint on real (+ synthetic) data.

Bag checkpoints mix in the accepted rows of a synthetic run (``mix_ratio`` synthetic rows per real
row); sequence checkpoints mix in the accepted histories of a sequence run (``mix_ratio`` synthetic
histories per real one, read from the Feast offline store; see :func:`finetune_sequence`), either
continuing the checkpoint (``protocol="finetune"``) or, in the order the study measured with a
teacher's runs (``"pretrain"``), training a fresh model of the checkpoint's shape on real + synthetic
histories and then fine-tuning it on the real histories alone. Pre-train -> fine-tune is coded
here once: the study (``ecaug_feast.study``) runs this job for every method that uses it, and for
its ``real_twice`` control (``protocol="pretrain"`` with no run: pre-trained and fine-tuned on the
real histories, the same stages and epochs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from ecaug_feast import schema as S
from ecaug_feast.errors import EcaugError
from ecaug_feast.jobs.augment_seq import GENERATOR as SEQUENCE_GENERATOR
from ecaug_feast.jobs.train import EpochCallback, load_real, run_training, train_overrides
from ecaug_feast.jobs.workspace import Workspace

MODES = ("full", "towers", "adapters")
# sequence checkpoints: "finetune" continues the checkpoint on real + synthetic histories;
# "pretrain" trains a fresh model of its shape on them, then fine-tunes it on the real ones alone
PROTOCOLS = ("finetune", "pretrain")


def synthetic_examples(ws: Workspace, data: Any, run_id: Optional[str], source: str = "feast") -> tuple[Any, str]:
    """Accepted synthetic positives of a run (active run by default) with user and item features.

    ``source="feast"`` and the active run: the entity rows are the run's positive interactions and
    the user features come from the Feast view ``user_features_synth`` by ``get_historical_features``
    (point in time), the path every other training read takes. Otherwise (``memory``, or a run that
    is not active, which the views do not serve) the run's parquet files are joined in pandas;
    ``tests/recommender/test_train_cli.py`` holds the two paths equal row for row."""
    import pandas as pd

    from ecaug_feast import feast_io, synth_store
    from recommender.data import USER_FEATURE_COLUMNS, asof_join, complete_synthetic, normalise_lists

    rid = run_id or synth_store.active_run()
    if rid:
        synth_store.load_run(rid)  # raises a clear EcaugError for an unknown run id
    if not rid:
        raise EcaugError("no synthetic run: run `ecaug augment` first or pass --run RUN_ID")
    rdir = ws.runs_dir / str(rid)
    ui, uf = rdir / "interactions_synth.parquet", rdir / "user_features_synth.parquet"
    for p in (ui, uf):
        if not p.exists():
            raise EcaugError(f"{p}: synthetic run file missing")
    inter = pd.read_parquet(ui)
    inter = inter[inter["label"] == 1] if "label" in inter.columns else inter
    ent = inter[["user_id", "item_id", "event_timestamp"]].reset_index(drop=True)
    if source == "feast" and rid == synth_store.active_run():
        refs = S.refs("user_features_synth", USER_FEATURE_COLUMNS)
        joined = normalise_lists(feast_io.historical_features(ent, features=refs, store=ws.store()))[USER_FEATURE_COLUMNS]
    else:
        # each synthetic user's features as of its interaction (point-in-time, as Feast joins)
        joined = asof_join(inter, pd.read_parquet(uf), "user_id", USER_FEATURE_COLUMNS)
    rows = pd.concat([ent, joined.reset_index(drop=True)], axis=1)
    return complete_synthetic(rows, data), str(rid)


def synthetic_histories(ws: Workspace, run_id: Optional[str], source: str = "feast", dataset: Optional[str] = None
                        ) -> tuple[list[Any], str]:
    """Accepted histories (oldest first, the newest ``recent_items`` each) of a sequence run (the
    active run by default) and its id.

    ``source="feast"`` and the active run: each synthetic user's serving row (its last event +
    1 ms, as the real users' rows are read for training) of the Feast view ``user_features_synth``
    by ``get_historical_features``; its ``recent_items`` is the history, most recent first.
    Otherwise (``memory``, or a run that is not active, which the views do not serve) the same
    point-in-time rows are joined from the run's parquet file in pandas. A run of the column GAN
    (feature rows, no histories) is refused."""
    import numpy as np
    import pandas as pd

    from ecaug_feast import feast_io, synth_store
    from recommender.data import asof_join, normalise_lists

    rid = run_id or synth_store.active_run()
    if not rid:
        raise EcaugError("no synthetic run: run `ecaug augment --generator sequence` first or pass --run RUN_ID")
    run = synth_store.load_run(rid)  # raises a clear EcaugError for an unknown run id
    lineage = run.manifest.get("lineage", {})
    if lineage.get("generator") != SEQUENCE_GENERATOR:
        raise EcaugError(f"run {rid} holds feature rows of the column GAN (at most 3 recent items per user), not histories; "
                         "fine-tune a sequence model on a run of `ecaug augment --generator sequence` (--run RUN_ID)")
    if dataset and lineage.get("dataset") and dataset != lineage["dataset"]:
        raise EcaugError(f"run {rid} was generated from dataset {lineage['dataset']!r}, not {dataset!r}")
    for f in (synth_store.INTER_FILE, synth_store.USER_FILE):
        if not (run.path / f).exists():
            raise EcaugError(f"{run.path / f}: synthetic run file missing")
    inter = pd.read_parquet(run.path / synth_store.INTER_FILE, columns=[S.USER_ID, S.EVENT_TIMESTAMP])
    ent = inter.groupby(S.USER_ID, sort=True)[S.EVENT_TIMESTAMP].max().reset_index()
    ent[S.EVENT_TIMESTAMP] = pd.to_datetime(ent[S.EVENT_TIMESTAMP], utc=True) + pd.Timedelta(milliseconds=1)
    if source == "feast" and rid == synth_store.active_run():
        got = feast_io.historical_features(ent, features=S.refs(synth_store.VIEWS[0], [S.RECENT_ITEMS]), store=ws.store())
        got = got.sort_values(S.USER_ID, kind="stable").reset_index(drop=True)  # Feast may reorder the entity rows
        recent = normalise_lists(got)[S.RECENT_ITEMS]
    else:
        recent = normalise_lists(asof_join(ent, run.user_features(), S.USER_ID, [S.RECENT_ITEMS]))[S.RECENT_ITEMS]
    return [np.asarray(r[::-1], dtype=np.int64) for r in recent], str(rid)


def cap_histories(extra: list[Any], ratio: float, n_real: int, seed: int) -> list[Any]:
    """At most ``round(ratio * n_real)`` of ``extra``, drawn without replacement (seeded), in their order."""
    import numpy as np

    if ratio < 0:
        raise EcaugError(f"mix ratio must be >= 0, got {ratio}")
    n = min(int(round(ratio * n_real)), len(extra))
    pick = np.sort(np.random.default_rng(seed).choice(len(extra), size=n, replace=False)) if n else []
    return [extra[i] for i in pick]


def finetune(ws: Workspace, from_: str, mix_ratio: float = 0.5, mode: str = "full", run_id: Optional[str] = None,
             dataset: str = "beauty", name: Optional[str] = None, source: str = "feast", epochs: Optional[int] = None,
             seed: int = 0, progress: EpochCallback | None = None,
             log: Callable[[str], None] = lambda s: None, protocol: str = "finetune",
             pretrain_epochs: Optional[int] = None, batch_size: Optional[int] = None,
             max_seconds: Optional[float] = None) -> dict[str, Any]:
    """Continue training checkpoint ``from_`` (early stopping on validation); returns the summary
    (``checkpoint``, ``from``, ``mode``, ``mix_ratio``, ``run_id``, ``valid_before``, ``valid``,
    ``test``, ``epochs``). ``protocol`` (sequence checkpoints): see the module docstring;
    ``pretrain_epochs`` / ``batch_size``: the pre-training stage's epochs (default: ``epochs``) and
    the users per batch of every stage (sequence checkpoints; default: the trainer's)."""
    from dataclasses import replace

    from recommender.checkpoint import data_read_now, load_checkpoint, named_dir, resolve, save_checkpoint
    from recommender.data import mix_examples
    from ecaug_feast.jobs.presets import PRESETS
    from recommender.train import TrainConfig, config_dict, evaluate_model, finetune_config, train

    if mode not in MODES:
        raise EcaugError(f"--mode must be full, towers or adapters, got {mode!r}")
    if protocol not in PROTOCOLS:
        raise EcaugError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    base, _meta = load_checkpoint(from_)
    if base.cfg.sequential:
        return finetune_sequence(ws, base, from_, dataset=dataset, name=name, source=source, mix_ratio=mix_ratio,
                                 epochs=epochs, seed=seed, progress=progress, run_id=run_id, log=log, protocol=protocol,
                                 pretrain_epochs=pretrain_epochs, batch_size=batch_size, max_seconds=max_seconds)
    if protocol != "finetune":
        raise EcaugError(f"--protocol {protocol}: sequence checkpoints only; {resolve(from_)} is a bag checkpoint")
    out_dir = named_dir(name or f"{resolve(from_).name}-ft-{mode}")  # a bad --name fails before training
    read = data_read_now()  # the training-data cut-off, before the read
    data, valid, test = load_real(ws, dataset, source)
    if base.cfg.num_items != data.num_items:
        raise EcaugError(f"{resolve(from_)}: checkpoint has {base.cfg.num_items} items, dataset '{dataset}' has {data.num_items}")
    syn_id = None
    if mix_ratio > 0:
        syn, syn_id = synthetic_examples(ws, data, run_id, source=source)
        data = replace(data, examples=mix_examples(data.examples, syn, mix_ratio, seed))
    cfg = finetune_config(base.cfg, mode)
    tcfg = TrainConfig(**{**PRESETS["full"]["finetune"], **train_overrides(epochs, None, seed, max_seconds), "finetune_mode": mode})
    log(f"fine-tuning ({mode}) on {len(data.examples):,} examples ({int(data.examples['is_synthetic'].sum()):,} synthetic)")
    before = evaluate_model(base, data, valid, "valid", seed=seed)
    res = run_training(lambda: train(data, valid, cfg, tcfg, init_state=base.state_dict(), progress=progress), dataset)
    test_m = evaluate_model(res.model, data, test, "test", seed=seed)
    path = save_checkpoint(out_dir, res.state, cfg, res.model.catalog, train=config_dict(tcfg),
                           metrics={"valid_before": before, "valid": res.best_valid, "test": test_m},
                           data={"dataset": dataset, "from": str(resolve(from_)), "mix_ratio": mix_ratio, "run_id": syn_id,
                                 "examples": len(data.examples), **read})
    return {"checkpoint": str(path), "from": str(resolve(from_)), "model": "bag", "mode": mode, "mix_ratio": mix_ratio,
            "run_id": syn_id, "valid_before": before, "valid": res.best_valid, "test": test_m, "epochs": res.best_epoch}


def finetune_sequence(ws: Workspace, base: Any, from_: str, dataset: str, name: Optional[str], source: str, mix_ratio: float,
                      epochs: Optional[int], seed: int, progress: EpochCallback | None = None, run_id: Optional[str] = None,
                      log: Callable[[str], None] = lambda s: None, protocol: str = "finetune",
                      pretrain_epochs: Optional[int] = None, batch_size: Optional[int] = None,
                      max_seconds: Optional[float] = None) -> dict[str, Any]:
    """Continue training a sequence checkpoint (early stopping on validation) on the real
    histories, plus, with ``mix_ratio`` > 0, up to ``mix_ratio`` x as many accepted histories of a
    sequence run (:func:`synthetic_histories`, read from the Feast offline store) under synthetic
    user ids. Runs of the column GAN hold feature rows, not histories: refused.

    ``protocol="pretrain"`` (ASReP's order; with a teacher's run it is what lifted the study):
    a fresh model of the checkpoint's shape trained on real + synthetic histories, then fine-tuned
    on the real histories alone. The checkpoint itself then gives the shape and ``valid_before``.
    With ``mix_ratio`` 0 both stages read the real histories alone (the study's ``real_twice``)."""
    from recommender.checkpoint import data_read_now, named_dir, resolve, save_checkpoint

    if mix_ratio < 0:
        raise EcaugError(f"mix ratio must be >= 0, got {mix_ratio}")
    out_dir = named_dir(name or f"{resolve(from_).name}-{'pt' if protocol == 'pretrain' else 'ft'}")  # a bad --name fails before training
    extra, syn_id = [], None
    if mix_ratio > 0:  # the run is checked (sequence, known) before the real data is read
        extra, syn_id = synthetic_histories(ws, run_id, source, dataset)
    read = data_read_now()  # the real training data's cut-off, before the read
    data, valid, test = load_real(ws, dataset, source, examples=False)
    if base.cfg.num_items != data.num_items:
        raise EcaugError(f"{resolve(from_)}: checkpoint has {base.cfg.num_items} items, dataset '{dataset}' has {data.num_items}")
    st = sequence_stages(data, valid, test, base, extra, syn_id, protocol=protocol, mix_ratio=mix_ratio, seed=seed, epochs=epochs,
                         pretrain_epochs=pretrain_epochs, batch_size=batch_size, max_seconds=max_seconds, progress=progress,
                         log=log, label=dataset)
    info = {"dataset": dataset, "from": str(resolve(from_)), "mix_ratio": mix_ratio, "run_id": syn_id, "protocol": protocol,
            **st.info, **read}
    path = save_checkpoint(out_dir, st.result.state, base.cfg, st.result.model.catalog, train=st.train, metrics=st.metrics, data=info)
    return {"checkpoint": str(path), "from": str(resolve(from_)), "model": "sequence", "mode": "full", "protocol": protocol,
            "mix_ratio": mix_ratio, "run_id": syn_id, "synthetic_histories": st.info["synthetic_histories"], **st.metrics,
            "epochs": st.result.best_epoch}


@dataclass
class Stages:
    """What :func:`sequence_stages` hands back: the final stage's result, the metrics
    (``valid_before``, [``valid_pretrain``, ``pretrain_epochs``], ``valid``, ``test``), the
    training settings and the data facts a checkpoint records."""

    result: Any
    metrics: dict[str, Any]
    train: dict[str, Any]
    info: dict[str, Any]


def sequence_stages(data: Any, valid: Any, test: Any, base: Any, extra: list[Any], syn_id: Optional[str], *, protocol: str,
                    mix_ratio: float, seed: int, epochs: Optional[int], pretrain_epochs: Optional[int] = None,
                    batch_size: Optional[int] = None, max_seconds: Optional[float] = None,
                    progress: EpochCallback | None = None, log: Callable[[str], None] = lambda s: None,
                    label: str = "") -> Stages:
    """The sequence protocol, once for every caller (``ecaug finetune``, the study, a shop's repo):
    ``base``'s shape and weights, the real histories of ``data`` (training events) plus up to
    ``mix_ratio`` x as many ``extra`` histories (item ids, oldest first) under synthetic user ids;
    ``protocol`` ``finetune`` continues ``base`` on the mix, ``pretrain`` trains a fresh model on
    the mix then fine-tunes it on the real histories alone (see :func:`finetune_sequence`).
    Early stopping on ``valid``; ``test`` scored once. ``label``: names the data in errors."""
    from recommender.seq_train import SeqTrainConfig, config_dict, evaluate_seq, histories_for, train_seq

    real = histories_for(data, base.cfg, "valid")  # training events only
    extra = cap_histories(extra, mix_ratio, len(real.user_ids), seed)
    hist = combine_histories(real, extra, base.cfg.max_len) if extra else real
    tcfg = SeqTrainConfig(**{"epochs": 10, "patience": 2, **train_overrides(epochs, batch_size, seed, max_seconds)})
    before = evaluate_seq(base, data, valid, "valid", seed=seed)
    pre_out: dict[str, Any] = {}
    pre_train: dict[str, Any] = {}  # the pre-training stage's budget, saved with the checkpoint
    if protocol == "pretrain":  # a fresh model on the mix (train_real's budget), then real histories only
        log(f"pre-training a fresh sequence model on {len(hist.user_ids):,} histories ({len(extra):,} synthetic, run {syn_id})")
        pcfg = SeqTrainConfig(**train_overrides(pretrain_epochs or epochs, batch_size, seed, max_seconds))
        pre_train = {"pretrain_train": config_dict(pcfg, base.cfg.num_items)}
        pre = run_training(lambda: train_seq(data, valid, base.cfg, pcfg, progress=progress, histories=hist), label)
        pre_out = {"valid_pretrain": pre.best_valid, "pretrain_epochs": pre.best_epoch}
        log(f"fine-tuning it on the {len(real.user_ids):,} real histories")
        res = run_training(lambda: train_seq(data, valid, base.cfg, tcfg, init_state=pre.state, progress=progress,
                                             histories=real), label)
    else:
        log(f"fine-tuning the sequence model on {len(hist.user_ids):,} histories ({len(extra):,} synthetic, run {syn_id})")
        res = run_training(lambda: train_seq(data, valid, base.cfg, tcfg, init_state=base.state_dict(), progress=progress,
                                             histories=hist), label)
    test_m = evaluate_seq(res.model, data, test, "test", seed=seed, buckets=True)
    return Stages(res, {"valid_before": before, **pre_out, "valid": res.best_valid, "test": test_m},
                  config_dict(tcfg, base.cfg.num_items),
                  {"histories": int(len(hist.user_ids)), "synthetic_histories": len(extra), **pre_train})


def combine_histories(hist: Any, extra: list[Any], max_len: int) -> Any:
    """Real histories + ``extra`` ones (newest ``max_len`` each) under synthetic user ids."""
    import numpy as np

    from ecaug_feast.histories import Histories
    from ecaug_feast.ids import SYNTHETIC_USER_ID_BASE

    ids = SYNTHETIC_USER_ID_BASE + np.arange(len(extra), dtype=np.int64)
    return Histories.concat([hist, Histories.from_lists(ids, extra).truncate(max_len)])
