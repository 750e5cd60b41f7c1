"""The train job (``ecaug train``, the demo's train step) and the helpers fine-tuning shares.

Plain functions that take a :class:`~ecaug_feast.jobs.workspace.Workspace` and return their
summary dict, so the job logic lives once, away from option parsing and printing.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ecaug_feast.errors import EcaugError
from ecaug_feast.jobs.workspace import Workspace
from ecaug_feast.schema import RECENT_ITEMS

EpochCallback = Callable[[int, dict[str, Any]], None]


def load_real(ws: Workspace, dataset: str, source: str = "feast", examples: bool = True):
    """TrainData of an ingested dataset (Feast offline store by default) + its valid/test eval sets.
    ``examples=False``: no per-event example join (the sequence model does not read it)."""
    from ecaug_feast.datasets.store import load_processed
    from recommender.data import build_in_memory, load_real_from_feast
    from recommender.evaluate import make_eval_set

    data_p = load_processed(dataset)
    if source == "feast":
        try:
            data = load_real_from_feast(dataset, store=ws.store(), examples=examples)
        except EcaugError:
            raise
        except Exception as exc:  # Feast registry missing, parquet unreadable...
            raise EcaugError(f"feast: could not read training examples ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                             "run `ecaug ingest` and `ecaug apply` first") from None
    elif source == "memory":
        data = build_in_memory(data_p.train, data_p.items, data_p.valid)
    else:
        raise EcaugError(f"--source must be feast or memory, got {source!r}")
    valid = make_eval_set(data_p.valid, [data_p.train])
    test = make_eval_set(data_p.test, [data_p.train, data_p.valid])
    return data, valid, test


MODELS = ("sequence", "bag")


def train_real(ws: Workspace, dataset: str = "beauty", name: str = "real", source: str = "feast", epochs: Optional[int] = None,
               batch_size: Optional[int] = None, embedding_dim: int = 64, seed: int = 0,
               progress: EpochCallback | None = None, log: Callable[[str], None] = lambda s: None,
               model: str = "sequence", max_seconds: Optional[float] = None, bf16: bool = False,
               lr: Optional[float] = None) -> dict[str, Any]:
    """Train a real-only model (early stopping on validation NDCG@10), save it, score test once.

    ``model``: ``sequence`` (self-attention user tower over the ordered history, the default) or
    ``bag`` (the mean-of-bags two-tower). Test metrics include ``buckets`` by history length."""
    from recommender.checkpoint import named_dir, save_checkpoint

    if model not in MODELS:
        raise EcaugError(f"--model must be one of {', '.join(MODELS)}, got {model!r}")
    out_dir = named_dir(name)  # a bad --name fails here, before any training
    data, valid, test = load_real(ws, dataset, source, examples=model == "bag")
    overrides = train_overrides(epochs, batch_size, seed)
    if max_seconds is not None:
        overrides["max_seconds"] = max_seconds
    if model == "sequence":
        from recommender.seq_train import SeqTrainConfig, config_dict, evaluate_seq, seq_config_for, train_seq

        mcfg = seq_config_for(data, embedding_dim=embedding_dim)
        tcfg = SeqTrainConfig(**overrides, bf16=bf16, **({"lr": lr} if lr is not None else {}))
        n_hist = data.user_serving[RECENT_ITEMS].map(len)
        log(f"training the sequence model on the histories of {len(n_hist):,} users ({int(n_hist.sum()):,} items, "
            f"{data.info.get('source')}), {data.num_items:,} items in the catalogue")
        res = run_training(lambda: train_seq(data, valid, mcfg, tcfg, progress=progress), dataset)
        test_m = evaluate_seq(res.model, data, test, "test", seed=seed, buckets=True)
    else:
        from ecaug_feast.jobs.presets import PRESETS
        from recommender.train import TrainConfig, config_dict, evaluate_model, model_config_for, train

        preset = PRESETS["full"]
        mcfg = model_config_for(data, **{**preset["model"], "embedding_dim": embedding_dim, "out_dim": embedding_dim})
        tcfg = TrainConfig(**{**preset["train"], **overrides})
        log(f"training the bag model on {len(data.examples):,} examples ({data.info.get('source')}), {data.num_items:,} items")
        res = run_training(lambda: train(data, valid, mcfg, tcfg, progress=progress), dataset)
        test_m = evaluate_model(res.model, data, test, "test", seed=seed, buckets=True)
    path = save_checkpoint(out_dir, res.state, mcfg, res.model.catalog,
                           train=config_dict(tcfg), metrics={"valid": res.best_valid, "test": test_m},
                           data={"dataset": dataset, "source": data.info.get("source"),
                                 **({"examples": len(data.examples)} if model == "bag" else {"histories": len(data.user_serving)})})
    return {"checkpoint": str(path), "dataset": dataset, "model": model, "epochs": res.best_epoch, "seconds": round(res.seconds, 1),
            "examples_per_s": round(res.examples_per_s), "valid": res.best_valid, "test": test_m}


def train_overrides(epochs: Optional[int], batch_size: Optional[int], seed: int) -> dict[str, Any]:
    """TrainConfig fields set on the command line (None = keep the preset's)."""
    d: dict[str, Any] = {"seed": seed}
    if epochs is not None:
        d["epochs"] = epochs
    if batch_size is not None:
        d["batch_size"] = batch_size
    return d


def run_training(fit: Callable[[], Any], dataset: str) -> Any:
    """``fit()``, with the trainer's "too little data" refusal turned into a one-line error."""
    try:
        return fit()
    except ValueError as exc:
        if "fewer than one batch" in str(exc):
            raise EcaugError(f"dataset '{dataset}': too small to train on ({exc}); ingest more data or pass a smaller --batch-size") from None
        raise
