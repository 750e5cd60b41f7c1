"""The fine-tune job (``ecaug finetune``): continue training a checkpoint on real (+ synthetic) data.

Bag checkpoints mix in the accepted rows of a synthetic run (``mix_ratio`` synthetic rows per real
row); sequence checkpoints continue on the real histories only (see :func:`finetune_sequence`).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ecaug_feast import schema as S
from ecaug_feast.errors import EcaugError
from ecaug_feast.jobs.train import EpochCallback, load_real, run_training, train_overrides
from ecaug_feast.jobs.workspace import Workspace

MODES = ("full", "towers", "adapters")


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


def finetune(ws: Workspace, from_: str, mix_ratio: float = 0.5, mode: str = "full", run_id: Optional[str] = None,
             dataset: str = "beauty", name: Optional[str] = None, source: str = "feast", epochs: Optional[int] = None,
             seed: int = 0, progress: EpochCallback | None = None,
             log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Continue training checkpoint ``from_`` (early stopping on validation); returns the summary
    (``checkpoint``, ``from``, ``mode``, ``mix_ratio``, ``run_id``, ``valid_before``, ``valid``,
    ``test``, ``epochs``)."""
    from dataclasses import replace

    from recommender.checkpoint import load_checkpoint, named_dir, resolve, save_checkpoint
    from recommender.data import mix_examples
    from ecaug_feast.jobs.presets import PRESETS
    from recommender.train import TrainConfig, config_dict, evaluate_model, finetune_config, train

    if mode not in MODES:
        raise EcaugError(f"--mode must be full, towers or adapters, got {mode!r}")
    base, _meta = load_checkpoint(from_)
    if getattr(base.cfg, "kind", "bag") == "sequence":
        return finetune_sequence(ws, base, from_, dataset=dataset, name=name, source=source, mix_ratio=mix_ratio,
                                 epochs=epochs, seed=seed, progress=progress)
    out_dir = named_dir(name or f"{resolve(from_).name}-ft-{mode}")  # a bad --name fails before training
    data, valid, test = load_real(ws, dataset, source)
    if base.cfg.num_items != data.num_items:
        raise EcaugError(f"{resolve(from_)}: checkpoint has {base.cfg.num_items} items, dataset '{dataset}' has {data.num_items}")
    syn_id = None
    if mix_ratio > 0:
        syn, syn_id = synthetic_examples(ws, data, run_id, source=source)
        data = replace(data, examples=mix_examples(data.examples, syn, mix_ratio, seed))
    cfg = finetune_config(base.cfg, mode)
    tcfg = TrainConfig(**{**PRESETS["full"]["finetune"], **train_overrides(epochs, None, seed), "finetune_mode": mode})
    log(f"fine-tuning ({mode}) on {len(data.examples):,} examples ({int(data.examples['is_synthetic'].sum()):,} synthetic)")
    before = evaluate_model(base, data, valid, "valid", seed=seed)
    res = run_training(lambda: train(data, valid, cfg, tcfg, init_state=base.state_dict(), progress=progress), dataset)
    test_m = evaluate_model(res.model, data, test, "test", seed=seed)
    path = save_checkpoint(out_dir, res.state, cfg, res.model.catalog, train=config_dict(tcfg),
                           metrics={"valid_before": before, "valid": res.best_valid, "test": test_m},
                           data={"dataset": dataset, "from": str(resolve(from_)), "mix_ratio": mix_ratio, "run_id": syn_id,
                                 "examples": len(data.examples)})
    return {"checkpoint": str(path), "from": str(resolve(from_)), "model": "bag", "mode": mode, "mix_ratio": mix_ratio,
            "run_id": syn_id, "valid_before": before, "valid": res.best_valid, "test": test_m, "epochs": res.best_epoch}


def finetune_sequence(ws: Workspace, base: Any, from_: str, dataset: str, name: Optional[str], source: str, mix_ratio: float,
                      epochs: Optional[int], seed: int, progress: EpochCallback | None = None) -> dict[str, Any]:
    """Continue training a sequence checkpoint on the real histories (early stopping on validation).

    Mixing in synthetic data needs synthetic *histories*; the column GAN's runs hold feature rows,
    which this model does not read, so ``mix_ratio`` > 0 is refused rather than silently ignored."""
    from recommender.checkpoint import named_dir, resolve, save_checkpoint
    from recommender.seq_train import SeqTrainConfig, config_dict, evaluate_seq, train_seq

    if mix_ratio > 0:
        raise EcaugError("the sequence model fine-tunes on histories; synthetic runs of the column GAN hold feature rows. "
                         "Use --mix-ratio 0 (continue on real data) or a --model bag checkpoint")
    out_dir = named_dir(name or f"{resolve(from_).name}-ft")  # a bad --name fails before training
    data, valid, test = load_real(ws, dataset, source, examples=False)
    if base.cfg.num_items != data.num_items:
        raise EcaugError(f"{resolve(from_)}: checkpoint has {base.cfg.num_items} items, dataset '{dataset}' has {data.num_items}")
    tcfg = SeqTrainConfig(**{"epochs": 10, "patience": 2, **train_overrides(epochs, None, seed)})
    before = evaluate_seq(base, data, valid, "valid", seed=seed)
    res = run_training(lambda: train_seq(data, valid, base.cfg, tcfg, init_state=base.state_dict(), progress=progress), dataset)
    test_m = evaluate_seq(res.model, data, test, "test", seed=seed, buckets=True)
    path = save_checkpoint(out_dir, res.state, base.cfg, res.model.catalog, train=config_dict(tcfg),
                           metrics={"valid_before": before, "valid": res.best_valid, "test": test_m},
                           data={"dataset": dataset, "from": str(resolve(from_)), "mix_ratio": 0.0, "run_id": None})
    return {"checkpoint": str(path), "from": str(resolve(from_)), "model": "sequence", "mode": "full", "mix_ratio": 0.0,
            "run_id": None, "valid_before": before, "valid": res.best_valid, "test": test_m, "epochs": res.best_epoch}

