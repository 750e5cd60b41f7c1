"""Training loop: DMP + fused RowWiseAdagrad for the tables, Adam for the MLPs, in-batch sampled
softmax with logQ correction, early stopping on validation NDCG@10 (full ranking).

Works unchanged under ``torchrun --nproc_per_node=N``: every rank walks the same shuffled order
and takes its slice of each global batch; item vectors are all-gathered (with gradient) so each
user is scored against the whole global batch, which makes N ranks x B/N equal one process x B.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_gather as ag_grad

from ecaug_feast.schema import USER_FEATURE_COLUMNS

from recommender import distributed as D
from recommender.batching import (
    Encoded,
    ItemCatalog,
    dense_stats,
    encode_items,
    encode_users,
    make_kjt,
    raw_item_dense,
    raw_user_dense,
)
from recommender.data import TrainData
from recommender.early_stopping import EarlyStopping, agree_to_stop
from recommender.evaluate import EvalSet, bucket_metrics, evaluate
from recommender.inference import embed_encoded
from recommender.model import ModelConfig, TwoTower, in_batch_softmax_loss

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 1024  # global batch (split across ranks)
    lr_dense: float = 1e-3
    lr_sparse: float = 0.05
    weight_decay: float = 0.0
    patience: int = 3  # epochs without a better validation NDCG@10 before stopping
    seed: int = 0
    random_negatives: int = 0  # extra uniformly sampled negatives per batch
    max_seconds: float | None = None  # wall-clock budget for the epochs
    finetune_mode: str | None = None  # None (from scratch) | full | towers | adapters
    eval_chunk: int = 2048
    # Intra-op threads per process. 1 by default: on a small shared machine OpenMP spinning across
    # oversubscribed cores made a step 15x slower (980 ms vs 59 ms at batch 1024, measured here).
    threads: int = 1
    sharding: str = "table_wise"  # table_wise | row_wise | column_wise | auto (see distributed.wrap_dmp)


@dataclass
class TrainResult:
    model: Any  # TwoTower / SeqTwoTower, best weights, plain CPU model in eval mode (rank 0; None elsewhere)
    cfg: Any  # ModelConfig / SeqConfig
    history: list[dict[str, Any]]
    best_epoch: int
    best_valid: dict[str, float]
    seconds: float
    examples_per_s: float
    state: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    rank: int = 0  # under torchrun: this process's rank (only rank 0 holds ``model``)
    world_size: int = 1


def model_config_for(data: TrainData, **overrides: Any) -> ModelConfig:
    """Vocabulary sizes from the catalogue, dense normalisation from the real examples."""
    cat = catalog_for(data)
    real = data.examples[~data.examples["is_synthetic"].astype(bool)]
    um, us = dense_stats(raw_user_dense(real))
    im, is_ = dense_stats(raw_item_dense(real))
    return ModelConfig(
        num_items=cat.num_items,
        num_attributes=cat.num_attributes,
        user_dense_mean=um,
        user_dense_std=us,
        item_dense_mean=im,
        item_dense_std=is_,
        **overrides,
    )


def catalog_for(data: TrainData) -> ItemCatalog:
    if "_catalog" not in data.info:
        data.info["_catalog"] = ItemCatalog.from_frame(data.items)
    return data.info["_catalog"]


def user_rows_for(data: TrainData, user_ids: np.ndarray, split: str = "valid") -> pd.DataFrame:
    """User features for scoring ``split`` (``valid``: serving rows; ``test``: rows that also saw the
    validation event); users without rows get empty features."""
    src = data.user_test if split == "test" and data.user_test is not None else data.user_serving
    us = src.set_index("user_id")
    rows = us.reindex(np.asarray(user_ids, dtype=np.int64))[USER_FEATURE_COLUMNS].reset_index()
    return rows.rename(columns={"index": "user_id"})


def model_scorer(model: TwoTower, data: TrainData, es: EvalSet, split: str = "valid") -> Callable[[np.ndarray], torch.Tensor]:
    """``score_fn`` for :func:`recommender.evaluate.evaluate`: user vectors x all item vectors."""
    cat = catalog_for(data)
    cfg = model.cfg
    ue = encode_users(user_rows_for(data, es.users, split), cat, user_buckets=cfg.user_buckets, mean=cfg.user_dense_mean, std=cfg.user_dense_std)
    U = torch.from_numpy(embed_encoded(model, ue, "user"))
    ie = encode_items(data.item_serving, cat, mean=cfg.item_dense_mean, std=cfg.item_dense_std)
    V = embed_encoded(model, ie, "item")
    full = torch.zeros(cat.num_items + 1, V.shape[1])
    full[torch.from_numpy(ie.ids)] = torch.from_numpy(V)
    return lambda pos: U[torch.from_numpy(pos)] @ full.T


def evaluate_model(
    model: TwoTower, data: TrainData, es: EvalSet, split: str = "valid", seed: int = 0, tie_break: str = "random",
    buckets: bool = False,
) -> dict[str, Any]:
    """Full-ranking metrics of ``model`` on ``es`` (``split`` picks the user-feature rows); with
    ``buckets`` also per kept training-history length (``recommender.evaluate.bucket_metrics``)."""
    m: dict[str, Any] = evaluate(model_scorer(model, data, es, split), es, catalog_for(data).num_items, seed=seed,
                                 tie_break=tie_break, per_user=buckets)
    if buckets:
        m["buckets"] = bucket_metrics(m.pop("_per_user"), es.users, data.train)
    return m


def _encode_examples(data: TrainData, cfg: ModelConfig) -> tuple[Encoded, Encoded]:
    cat = catalog_for(data)
    ex = data.examples
    ue = encode_users(ex, cat, user_buckets=cfg.user_buckets, mean=cfg.user_dense_mean, std=cfg.user_dense_std, source="examples")
    ie = encode_items(ex, cat, mean=cfg.item_dense_mean, std=cfg.item_dense_std, source="examples")
    return ue, ie


def train(
    data: TrainData,
    valid: EvalSet | None,
    cfg: ModelConfig,
    tcfg: TrainConfig,
    init_state: dict[str, torch.Tensor] | None = None,
    progress: Callable[[int, dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train (or fine-tune from ``init_state``) and return the best model by validation NDCG@10."""
    info = D.init_distributed()
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, tcfg.threads))
    try:
        return _train(data, valid, cfg, tcfg, init_state, progress, info)
    finally:
        torch.set_num_threads(prev_threads)
        D.shutdown(info)


def _merged_init(cfg: ModelConfig, seed: int, init_state: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Seeded fresh weights, overwritten by ``init_state`` where it has them (adapters stay fresh)."""
    torch.manual_seed(seed)
    state = TwoTower(cfg).state_dict()
    if init_state:
        for k, t in init_state.items():
            if k not in state:
                raise ValueError(f"initial state has unexpected key {k}")
            if state[k].shape != t.shape:
                raise ValueError(f"initial state {k}: shape {tuple(t.shape)} vs model {tuple(state[k].shape)}")
            state[k] = t
    return state


class _Step:
    """One optimiser step of the bag trainer on this rank's slice of a global batch: in-batch
    sampled softmax with logQ correction, item vectors all-gathered (with gradient) across ranks,
    plus ``tcfg.random_negatives`` uniformly drawn items when set."""

    def __init__(self, data: TrainData, cfg: ModelConfig, tcfg: TrainConfig, dmp: Any, opt: Any, info: D.DistInfo) -> None:
        self.cfg, self.dmp, self.opt, self.info = cfg, dmp, opt, info
        self.rank, self.world = info.rank, info.world_size
        self.local = tcfg.batch_size // self.world
        self.ue, self.ie = _encode_examples(data, cfg)
        self.n = self.ue.n
        if self.n < tcfg.batch_size:
            raise ValueError(f"{self.n} training examples is fewer than one batch of {tcfg.batch_size}")
        counts = np.bincount(self.ie.ids, minlength=cfg.num_items + 1).astype(np.float64)
        # logQ: log of the expected count of each item among the B in-batch negatives
        self.log_q_item = torch.from_numpy(np.log(np.maximum(counts, 1.0) / self.n * tcfg.batch_size)).to(torch.float32)
        self.rng_neg = np.random.default_rng(tcfg.seed + 7919 * (self.rank + 1))
        self.n_neg = tcfg.random_negatives
        self.neg_items = None
        if self.n_neg > 0:
            self.neg_items = encode_items(data.item_serving, catalog_for(data), mean=cfg.item_dense_mean, std=cfg.item_dense_std)

    def __call__(self, rows: np.ndarray) -> float:
        """Forward, loss, backward and update on ``rows`` (this rank's examples); the loss."""
        local, cfg = self.local, self.cfg
        us, ud = self.ue.take(rows)
        its, idn = self.ie.take(rows)
        ids = torch.from_numpy(self.ie.ids[rows])
        bsz, nrows = local, None
        if self.neg_items is not None:
            nrows = self.rng_neg.integers(0, self.neg_items.n, size=self.n_neg)
            ns, nd = self.neg_items.take(nrows)
            its = {k: (np.concatenate([its[k][0], ns[k][0]]), np.concatenate([its[k][1], ns[k][1]])) for k in its}
            us = {k: (v, np.concatenate([ln, np.zeros(len(nrows), dtype=np.int64)])) for k, (v, ln) in us.items()}
            ud = np.concatenate([ud, np.zeros((len(nrows), ud.shape[1]), dtype=np.float32)])
            idn = np.concatenate([idn, nd])
            bsz = local + len(nrows)
        dev = self.info.device
        u, v = self.dmp(make_kjt(us, its, bsz).to(dev), torch.from_numpy(ud).to(dev), torch.from_numpy(idn).to(dev))
        u = u[:local]
        extra = {}
        if nrows is not None:
            extra = dict(extra_v=v[local:], extra_ids=torch.from_numpy(self.neg_items.ids[nrows]),
                         extra_log_q=torch.full((len(nrows),), float(np.log(len(nrows) / cfg.num_items))))
            v = v[:local]
        if self.world > 1:
            v_all = torch.cat(ag_grad(v.contiguous()))
            id_list = [torch.empty_like(ids) for _ in range(self.world)]
            dist.all_gather(id_list, ids)
            ids_all = torch.cat(id_list)
        else:
            v_all, ids_all = v, ids
        loss = in_batch_softmax_loss(u, v_all, ids_all, self.log_q_item[ids_all], cfg.temperature, pos_offset=self.rank * local,
                                     **extra)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return float(loss.detach())


def _train(data, valid, cfg, tcfg, init_state, progress, info) -> TrainResult:
    t_start = time.time()
    rank, world = info.rank, info.world_size
    if tcfg.batch_size % world:
        raise ValueError(f"batch size {tcfg.batch_size} not divisible by world size {world}")
    local = tcfg.batch_size // world
    init = _merged_init(cfg, tcfg.seed, init_state)

    module = TwoTower(cfg, device="meta", catalog=catalog_for(data))
    if tcfg.finetune_mode:
        module.set_finetune_mode(tcfg.finetune_mode)
    dmp = D.wrap_dmp(module, info, tcfg.lr_sparse, sharding=tcfg.sharding)
    D.load_into_dmp(dmp, init)
    step_fn = _Step(data, cfg, tcfg, dmp, D.dense_optimizer(dmp, tcfg.lr_dense, tcfg.weight_decay), info)
    n = step_fn.n
    eval_model = TwoTower(cfg, catalog=catalog_for(data))

    es = EarlyStopping(tcfg.patience, valid is not None, tcfg.max_seconds, progress, t_start)
    steps_per_epoch = n // tcfg.batch_size
    seen, train_time = 0, 0.0
    for epoch in range(tcfg.epochs):
        dmp.train()
        perm = np.random.default_rng(tcfg.seed * 1000 + epoch).permutation(n)
        t0 = time.time()
        total = 0.0
        for step in range(steps_per_epoch):
            total += step_fn(perm[step * tcfg.batch_size + rank * local : step * tcfg.batch_size + (rank + 1) * local])
        train_time += time.time() - t0
        seen += steps_per_epoch * tcfg.batch_size
        state = D.export_state(dmp, info)
        mean_loss = torch.tensor([total / max(steps_per_epoch, 1)])
        if world > 1:  # report the global mean, not rank 0's half
            dist.all_reduce(mean_loss)
            mean_loss /= world
        rec: dict[str, Any] = {"epoch": epoch + 1, "loss": float(mean_loss), "train_s": round(time.time() - t0, 2)}
        stop = False
        if rank == 0:
            m = None
            if valid is not None:
                eval_model.load_state_dict(state)
                m = evaluate_model(eval_model, data, valid, seed=tcfg.seed)
            stop = es.end_epoch(epoch + 1, rec, state, m)
        if agree_to_stop(stop, world):
            break
    result_model = None
    if rank == 0:
        result_model = TwoTower(cfg, catalog=catalog_for(data))
        result_model.load_state_dict(es.best_state)
        result_model.eval()
    return TrainResult(model=result_model, cfg=cfg, history=es.history, best_epoch=es.best_epoch, best_valid=es.best_valid,
                       seconds=time.time() - t_start, examples_per_s=seen / max(train_time, 1e-9), state=es.best_state,
                       rank=rank, world_size=world)


def finetune_config(base: ModelConfig, mode: str, adapter_dim: int = 16) -> ModelConfig:
    """The model config for a fine-tune run: adapters add layers, other modes keep the shape."""
    if mode not in ("full", "towers", "adapters"):
        raise ValueError(f"unknown fine-tune mode {mode!r} (full|towers|adapters)")
    if mode == "adapters" and base.adapter_dim == 0:
        return replace(base, adapter_dim=adapter_dim)
    return base


def config_dict(tcfg: TrainConfig) -> dict[str, Any]:
    return asdict(tcfg)
