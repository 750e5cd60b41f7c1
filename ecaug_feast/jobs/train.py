"""The train job (``ecaug train``, the demo's train step) and the helpers fine-tuning shares.

Plain functions that take a :class:`~ecaug_feast.jobs.workspace.Workspace` and return their
summary dict, so the job logic lives once, away from option parsing and printing. ``MODELS`` maps
``--model`` to its trainer: ``sequence`` (the default) and ``bag``.

Under ``torchrun --nproc_per_node=N`` every rank runs the job (each reads the same examples
through Feast and takes its slice of each global batch); rank 0 scores test and writes the
checkpoint, the other ranks return ``{"rank": r, "world_size": N}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from ecaug_feast.datasets.store import load_processed
from ecaug_feast.errors import EcaugError
from ecaug_feast.jobs.presets import PRESETS
from ecaug_feast.jobs.train_data import build_in_memory, load_real_from_feast
from ecaug_feast.jobs.workspace import Workspace
from ecaug_feast.schema import RECENT_ITEMS
from recommender import seq_train, train as bag_train
from recommender.checkpoint import data_read_now, model_kind, named_dir, read_config, save_checkpoint
from recommender.data import TrainData
from recommender.evaluate import EvalSet, make_eval_set

EpochCallback = Callable[[int, dict[str, Any]], None]


def load_real(ws: Workspace, dataset: str, source: str = "feast", examples: bool = True):
    """TrainData of an ingested dataset (Feast offline store by default) + its valid/test eval sets.
    ``examples=False``: no per-event example join (the sequence model does not read it)."""
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


@dataclass
class TrainOptions:
    """``ecaug train``'s settings a trainer reads (None: the trainer's default)."""

    dataset: str
    overrides: dict[str, Any]  # TrainConfig / SeqTrainConfig fields from the command line
    embedding_dim: int = 64
    bf16: bool = False
    lr: Optional[float] = None
    loss: Optional[str] = None  # sequence model: full | sampled | auto (SeqTrainConfig.loss)
    progress: EpochCallback | None = None
    log: Callable[[str], None] = lambda s: None


@dataclass
class Fitted:
    """What a trainer hands back: the training result, its model and training configs, and what
    the checkpoint records about the data."""

    result: Any
    model_cfg: Any
    train_cfg: dict[str, Any]
    data_info: dict[str, Any]
    evaluate: Callable[..., dict[str, Any]]  # (model, data, eval_set, split, seed=, buckets=) -> metrics


@dataclass(frozen=True)
class ModelSpec:
    """One ``--model``: its trainer, whether it reads the per-event example join, the generator
    whose runs it trains on (a key of ``jobs.augment.GENERATORS``), and the defaults
    ``ecaug finetune`` uses on its checkpoints (the order and mix the study measured)."""

    fit: Callable[[TrainData, EvalSet, TrainOptions], Fitted]
    reads_examples: bool
    generator: str
    finetune_protocol: str
    finetune_mix_ratio: float


def fit_sequence(data: TrainData, valid: EvalSet, opts: TrainOptions) -> Fitted:
    """The self-attention two-tower (SASRec-style) on the ordered histories."""
    mcfg = seq_train.seq_config_for(data, embedding_dim=opts.embedding_dim)
    given = {"lr": opts.lr, "loss": opts.loss}
    tcfg = seq_train.SeqTrainConfig(**opts.overrides, bf16=opts.bf16, **{k: v for k, v in given.items() if v is not None})
    loss = seq_train.resolve_loss(tcfg.loss, mcfg.num_items)
    n_hist = data.user_serving[RECENT_ITEMS].map(len)
    opts.log(f"training the sequence model on the histories of {len(n_hist):,} users ({int(n_hist.sum()):,} items, "
             f"{data.info.get('source')}), {data.num_items:,} items in the catalogue, {loss} softmax")
    res = run_training(lambda: seq_train.train_seq(data, valid, mcfg, tcfg, progress=opts.progress), opts.dataset)
    return Fitted(res, mcfg, seq_train.config_dict(tcfg, mcfg.num_items, res.world_size), {"histories": len(data.user_serving)}, seq_train.evaluate_seq)


def fit_bag(data: TrainData, valid: EvalSet, opts: TrainOptions) -> Fitted:
    """The mean-of-bags two-tower on the per-event examples (the full preset's sizes)."""
    if opts.loss is not None:
        raise EcaugError("--loss applies to the sequence model (the bag model always trains with in-batch sampled softmax)")
    preset = PRESETS["full"]
    mcfg = bag_train.model_config_for(data, **{**preset["model"], "embedding_dim": opts.embedding_dim, "out_dim": opts.embedding_dim})
    tcfg = bag_train.TrainConfig(**{**preset["train"], **opts.overrides})
    opts.log(f"training the bag model on {len(data.examples):,} examples ({data.info.get('source')}), {data.num_items:,} items")
    res = run_training(lambda: bag_train.train(data, valid, mcfg, tcfg, progress=opts.progress), opts.dataset)
    return Fitted(res, mcfg, bag_train.config_dict(tcfg), {"examples": len(data.examples)}, bag_train.evaluate_model)


# ``--model``: name -> trainer. The first is the default (`ecaug train`, the demo).
MODELS: dict[str, ModelSpec] = {
    "sequence": ModelSpec(fit_sequence, reads_examples=False, generator="sequence", finetune_protocol="pretrain",
                          finetune_mix_ratio=3.0),
    "bag": ModelSpec(fit_bag, reads_examples=True, generator="column", finetune_protocol="finetune", finetune_mix_ratio=0.5),
}
DEFAULT_MODEL = next(iter(MODELS))


def model_spec(model: str) -> ModelSpec:
    """``MODELS[model]``; an unknown name: one-line error."""
    if model not in MODELS:
        raise EcaugError(f"--model must be one of {', '.join(MODELS)}, got {model!r}")
    return MODELS[model]


def finetune_defaults(from_: str, mix_ratio: Optional[float] = None, protocol: Optional[str] = None,
                      dataset: Optional[str] = None) -> dict[str, Any]:
    """``ecaug finetune``'s settings for checkpoint ``from_``, the unset ones (None) from its
    model's ``MODELS`` entry (sequence: pre-train on real + 3 synthetic histories per real one,
    then fine-tune on real, the order and mix the study measured) and the dataset it was trained on."""
    meta = read_config(from_)
    try:
        spec = MODELS[model_kind(meta.get("model"))]
    except (TypeError, ValueError) as exc:
        raise EcaugError(f"{from_}: bad model config ({exc})") from None
    trained_on = (meta.get("data") or {}).get("dataset")
    if dataset is None and not trained_on:
        raise EcaugError(f"{from_}: the checkpoint does not say which dataset it was trained on; pass --dataset")
    return {"mix_ratio": spec.finetune_mix_ratio if mix_ratio is None else mix_ratio,
            "protocol": spec.finetune_protocol if protocol is None else protocol,
            "dataset": dataset or trained_on}


def train_real(ws: Workspace, dataset: str = "beauty", name: str = "real", source: str = "feast", epochs: Optional[int] = None,
               batch_size: Optional[int] = None, embedding_dim: int = 64, seed: int = 0,
               progress: EpochCallback | None = None, log: Callable[[str], None] = lambda s: None,
               model: str = DEFAULT_MODEL, max_seconds: Optional[float] = None, bf16: bool = False,
               lr: Optional[float] = None, loss: Optional[str] = None) -> dict[str, Any]:
    """Train a real-only model (early stopping on validation NDCG@10), save it, score test once.

    ``model``: a key of ``MODELS``; ``loss``: the sequence model's full | sampled | auto. Test metrics include ``buckets`` by history length."""
    spec = model_spec(model)
    if loss is not None and loss not in seq_train.LOSSES:  # before reading any data
        raise EcaugError(f"--loss must be one of {', '.join(seq_train.LOSSES)}, got {loss!r}")
    out_dir = named_dir(name)  # a bad --name fails here, before any training
    read = data_read_now()  # the training-data cut-off (augment-items' warm items), before the read
    data, valid, test = load_real(ws, dataset, source, examples=spec.reads_examples)
    overrides = train_overrides(epochs, batch_size, seed, max_seconds)
    opts = TrainOptions(dataset, overrides, embedding_dim=embedding_dim, bf16=bf16, lr=lr, loss=loss, progress=progress, log=log)
    fitted = spec.fit(data, valid, opts)
    res = fitted.result
    if res.model is None:  # a rank other than 0 under torchrun: rank 0 scores and saves
        return {"rank": res.rank, "world_size": res.world_size}
    test_m = fitted.evaluate(res.model, data, test, "test", seed=seed, buckets=True)
    path = save_checkpoint(out_dir, res.state, fitted.model_cfg, res.model.catalog, train=fitted.train_cfg,
                           metrics={"valid": res.best_valid, "test": test_m},
                           data={"dataset": dataset, "source": data.info.get("source"), **fitted.data_info,
                                 "world_size": res.world_size, **read})
    return {"checkpoint": str(path), "dataset": dataset, "model": model, "epochs": res.best_epoch, "seconds": round(res.seconds, 1),
            "examples_per_s": round(res.examples_per_s), "world_size": res.world_size, "valid": res.best_valid, "test": test_m}


def train_overrides(epochs: Optional[int], batch_size: Optional[int], seed: int,
                    max_seconds: Optional[float] = None) -> dict[str, Any]:
    """TrainConfig fields set on the command line (None = keep the preset's); ``max_seconds``:
    the wall-clock budget of one training stage (the best epoch so far is kept)."""
    given = {"epochs": epochs, "batch_size": batch_size, "max_seconds": max_seconds}
    return {"seed": seed, **{k: v for k, v in given.items() if v is not None}}


def run_training(fit: Callable[[], Any], dataset: str) -> Any:
    """``fit()``, with the trainer's "too little data" refusal turned into a one-line error."""
    try:
        return fit()
    except ValueError as exc:
        if "fewer than one batch" in str(exc):
            raise EcaugError(f"dataset '{dataset}': too small to train on ({exc}); ingest more data or pass a smaller --batch-size") from None
        raise
