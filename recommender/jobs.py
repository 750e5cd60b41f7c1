"""Train / fine-tune jobs as plain functions returning their summary dict.

The ``ecaug train`` / ``ecaug finetune`` commands and ``ecaug demo`` call these, so the job logic
lives once, away from option parsing and printing.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ecaug_feast.errors import EcaugError

EpochCallback = Callable[[int, dict[str, Any]], None]


def load_real(dataset: str, source: str = "feast"):
    """TrainData of an ingested dataset (Feast offline store by default) + its valid/test eval sets."""
    from ecaug_feast.datasets.store import load_processed
    from recommender.data import build_in_memory, load_real_from_feast
    from recommender.evaluate import make_eval_set

    data_p = load_processed(dataset)
    if source == "feast":
        try:
            data = load_real_from_feast(dataset)
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


def train_real(dataset: str = "beauty", name: str = "real", source: str = "feast", epochs: Optional[int] = None,
               batch_size: Optional[int] = None, embedding_dim: int = 64, seed: int = 0,
               progress: EpochCallback | None = None, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Train the real-only two-tower (early stopping on validation NDCG@10), save it, score test once."""
    from ecaug_feast.paths import models_dir
    from recommender.checkpoint import save_checkpoint
    from recommender.experiment import PRESETS
    from recommender.train import TrainConfig, config_dict, evaluate_model, model_config_for, train

    data, valid, test = load_real(dataset, source)
    preset = PRESETS["full"]
    mcfg = model_config_for(data, **{**preset["model"], "embedding_dim": embedding_dim, "out_dim": embedding_dim})
    tcfg = TrainConfig(**{**preset["train"], **train_overrides(epochs, batch_size, seed)})
    log(f"training on {len(data.examples):,} examples ({data.info.get('source')}), {data.num_items:,} items")
    res = run_training(lambda: train(data, valid, mcfg, tcfg, progress=progress), dataset)
    test_m = evaluate_model(res.model, data, test, "test", seed=seed)
    path = save_checkpoint(models_dir() / name, res.state, mcfg, res.model.catalog,
                           train=config_dict(tcfg), metrics={"valid": res.best_valid, "test": test_m},
                           data={"dataset": dataset, "source": data.info.get("source"), "examples": len(data.examples)})
    return {"checkpoint": str(path), "dataset": dataset, "epochs": res.best_epoch, "seconds": round(res.seconds, 1),
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
