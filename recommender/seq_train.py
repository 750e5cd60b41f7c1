"""Training loop of the sequence two-tower (``recommender.seq_model``).

Every position of every training history predicts its next item; early stopping on validation
NDCG@10 (full ranking, ``recommender.evaluate``). The loss (``SeqTrainConfig.loss``): the softmax
over the whole catalogue (``full``), or a sampled softmax with logQ correction (``sampled``,
:func:`recommender.seq_model.sampled_softmax_loss`) whose step cost does not grow with the
catalogue; ``auto`` (the default) takes the full softmax up to ``SAMPLED_ABOVE`` items. The item
table's optimizer (``SeqTrainConfig.table_optimizer``): Adam over every row with the rest
(``dense``), or lazy row-wise Adam on the rows a step looked up (``sparse``,
:class:`recommender.row_adam.RowAdam`), so a sampled step's cost no longer grows with the
catalogue through the optimizer either; ``auto`` takes ``sparse`` exactly when the sampled loss
runs on one process (:func:`resolve_table_optimizer`).

Where the histories come from: the ``recent_items`` list of each user's *serving* row of the Feast
view ``user_features`` (``TrainData.user_serving``: read with ``get_historical_features`` at the
last training event + 1 ms, or built in memory by the same builder). That one row per user holds
all the examples of the user: with a causal mask, position k sees only items 0..k, which is
exactly the ``recent_items`` of the user's Feast row at the time of item k+1 (a test checks this
point-in-time equality against the offline store).

Runs through TorchRec's ``DistributedModelParallel`` (one process: a private gloo group; under
``torchrun`` every rank takes its slice of each global batch and DMP all-reduces the gradients).
The tables use the data-parallel dense kernel, optimised with Adam with the rest (see the module
docstring of ``recommender.seq_model`` for why), the item table by row-wise Adam when sparse.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn
import torch.distributed as dist
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.optim import optimizers as trec_optim
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

from ecaug_feast.histories import Histories
from ecaug_feast.sampled_softmax import LOSSES, SAMPLED_ABOVE, resolve_loss  # noqa: F401  (re-exported: the trainer's rule)
from ecaug_feast.schema import RECENT_ITEMS

from recommender import distributed as D
from recommender.data import TrainData
from recommender.early_stopping import EarlyStopping, agree_to_stop
from recommender.evaluate import EvalSet, bucket_metrics, evaluate
from recommender.row_adam import SplitAdam
from recommender.seq_model import (NegativeSampler, SeqConfig, SeqTwoTower, full_softmax_loss, packed_target_batch, pad_batch,
                                   sampled_batch, sampled_softmax_loss)
from recommender.train import TrainResult, catalog_for

log = logging.getLogger(__name__)

# ``loss="auto"``: the full softmax up to SAMPLED_ABOVE items, the sampled one above (the rule and
# its reasons: ecaug_feast.sampled_softmax, shared with the generator). ``table_optimizer="auto"``
# follows it: row-wise sparse Adam for the item table where the sampled loss runs (one process),
# dense Adam where the full softmax does (resolve_table_optimizer).
# Per-worker budget of the item table (``sharding="auto"``): training holds it four times (weights,
# gradient, Adam's two moments), data-parallel on every rank. Above this many bytes for those four
# copies it is sharded row-wise across the ranks instead (one process keeps it whole: there is no
# other rank to hold the rest). 4 GiB = about 4M items at 64 dimensions.
SHARD_ABOVE_BYTES = 4 << 30
SHARDINGS = ("data_parallel", "row_wise", "table_wise", "auto")
TABLE_OPTIMIZERS = ("dense", "sparse", "auto")
ITEM_TABLE = "ec.embeddings.t_item.weight"  # the item table's parameter in the DMP model
BETAS = (0.9, 0.98)  # SASRec's Adam


def item_table_bytes(num_items: int, dim: int) -> int:
    """Bytes the item table takes in training: weights, gradient and Adam's two moments (float32)."""
    return (num_items + 1) * dim * 4 * 4


def resolve_table_optimizer(setting: str, loss: str, world: int = 1, item_sharding: str = "data_parallel") -> str:
    """``dense`` (Adam over every row of the item table, with the rest) or ``sparse`` (lazy
    row-wise Adam over the rows a step looked up, :class:`recommender.row_adam.RowAdam`).
    ``auto`` takes ``sparse`` exactly when the sampled loss runs (``loss``, resolved: above
    ``SAMPLED_ABOVE`` items under ``loss="auto"``) on one process with a data-parallel table:
    the full softmax gives every row a gradient each step, so there is nothing to skip, and
    Beauty-sized runs keep dense Adam as before. ``sparse`` is one process's: under torchrun a
    data-parallel table's rows would also need the other ranks' touched rows, and a sharded
    table already takes fbgemm's fused optimizer (``wrap_dmp``); both are refused."""
    if setting not in TABLE_OPTIMIZERS:
        raise ValueError(f"table_optimizer must be one of {', '.join(TABLE_OPTIMIZERS)}, got {setting!r}")
    one_dp = world == 1 and item_sharding == "data_parallel"
    if setting == "auto":
        return "sparse" if loss == "sampled" and one_dp else "dense"
    if setting == "sparse" and not one_dp:
        raise ValueError("table_optimizer sparse runs on one process with a data-parallel item table "
                         f"(here {world} process{'es' if world > 1 else ''}, item table {item_sharding}); "
                         "a sharded table is optimised row-wise by fbgemm's fused kernel already")
    return setting


def resolve_sharding(sharding: str, num_items: int, dim: int, world: int, device: str = "cpu") -> str:
    """How the item table is laid out: ``auto`` shards it when it exceeds the per-worker budget
    (``SHARD_ABOVE_BYTES``) on more than one rank, else ``data_parallel``. Sharded means
    ``row_wise`` on CUDA and ``table_wise`` on CPU: TorchRec 1.8's sharder of an
    ``EmbeddingCollection`` offers row-wise sharding on CUDA only (on CPU: data-parallel,
    table-wise, column-wise), so ``row_wise`` on CPU is refused here with that reason."""
    if sharding not in SHARDINGS:
        raise ValueError(f"sharding must be one of {', '.join(SHARDINGS)}, got {sharding!r}")
    if sharding == "auto":
        if world > 1 and item_table_bytes(num_items, dim) > SHARD_ABOVE_BYTES:
            return "row_wise" if device == "cuda" else "table_wise"
        return "data_parallel"
    if sharding == "row_wise" and device != "cuda":
        raise ValueError("sharding row_wise needs CUDA: TorchRec shards an EmbeddingCollection row-wise on CUDA only "
                         "(on CPU use table_wise)")
    return sharding


@dataclass
class SeqTrainConfig:
    epochs: int = 60
    batch_size: int = 128  # users per global batch (every position of each is a training example)
    # 2e-3, not SASRec's 1e-3: within .0003 valid NDCG@10 of it in half the epochs (README, "Hyper-parameters")
    lr: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 5  # epochs without a better validation NDCG@10 before stopping
    seed: int = 0
    max_seconds: float | None = None
    # 0 = torch's default (all cores). The bag model uses 1 because its steps are tiny; this model's
    # steps are large matrix products that do use both cores.
    threads: int = 0
    eval_every: int = 1
    bf16: bool = False  # bfloat16 autocast for the catalogue logits (CPUs with AMX / GPUs)
    # batches of similar history length, sorted inside windows of this many batches (0 = plain
    # shuffled batches, the default). Bucketing pads less, but it learned more slowly per epoch on
    # Beauty (valid NDCG@10 .0258 vs .0321 after 3 epochs, seed 0, benchmarks/seq_curve.py): Adam
    # takes one step of the same size for a batch of 128 positions of short users as for one of
    # thousands of positions of long users, so long histories were under-weighted.
    bucket_window: int = 0
    # each batch is cut into this many chunks of similar history length, each padded to its own
    # longest history (``seq_model.packed_target_batch``): same users per step, same loss, far
    # less padding (1 = one padded block per batch)
    pack_chunks: int = 8
    # full | sampled | auto (full softmax up to SAMPLED_ABOVE items); the sampled loss draws
    # ``negatives`` items per step on top of the batch's own targets, a ``neg_mix`` share in
    # proportion to count^``neg_alpha`` and the rest uniform (seq_model.NegativeSampler)
    loss: str = "auto"
    # 4096: Beauty 100 %, 3 seeds, NDCG@10 within 1.4 % of the full softmax (256: -7.8 %, 1024:
    # -5.3 %; validation ranks them alike; docs/results/seq-gan-linear); a step's candidates stay a
    # fixed number, so its cost stays flat in the catalogue
    negatives: int = 4096
    neg_mix: float = 0.0
    neg_alpha: float = 0.75
    # the item table's layout under DMP: data_parallel | row_wise | table_wise | auto (row_wise above
    # SHARD_ABOVE_BYTES on more than one rank); the attribute table stays data-parallel
    sharding: str = "auto"
    lr_sharded_cpu: float = 0.05  # a sharded item table on CPU: fused row-wise Adagrad's rate (wrap_dmp)
    # the data-parallel item table's optimizer on one process: dense | sparse | auto (sparse when
    # the sampled loss runs; see resolve_table_optimizer). Same lr, betas and weight decay as Adam.
    table_optimizer: str = "auto"


# the result of either trainer: best model by validation NDCG@10, its state, history, speed
SeqTrainResult = TrainResult


def seq_config_for(data: TrainData, **overrides: Any) -> SeqConfig:
    cat = catalog_of(data)
    return SeqConfig(num_items=cat.num_items, num_attributes=cat.num_attributes, **overrides)


catalog_of = catalog_for  # one cached ItemCatalog per TrainData, shared with the bag trainer


def histories_for(data: TrainData, cfg: SeqConfig, split: str = "valid") -> Histories:
    """Histories for training/validation (``valid``: serving rows) or test (``test``: rows that
    also saw the validation event), from the ``recent_items`` feature."""
    src = data.user_test if split == "test" and data.user_test is not None else data.user_serving
    key = f"_hist_{split}_{cfg.max_len}"
    if key not in data.info:
        data.info[key] = Histories.from_recent_items(src["user_id"].to_numpy(), src[RECENT_ITEMS], cfg.max_len, cfg.num_items)
    return data.info[key]


@torch.no_grad()
def user_vectors(model: SeqTwoTower, R: torch.Tensor, hist: Histories, user_ids: np.ndarray, chunk: int = 2048) -> torch.Tensor:
    """[n, d] user-tower outputs for ``user_ids`` (users without a history get a zero vector)."""
    pos = pd.Series(np.arange(len(hist.user_ids)), index=hist.user_ids)
    rows = pos.reindex(np.asarray(user_ids, dtype=np.int64)).to_numpy()
    known = ~np.isnan(rows)
    out = torch.zeros(len(user_ids), R.shape[1])
    kr = rows[known].astype(np.int64)
    kr_ok = hist.lengths[kr] > 0
    idx = np.flatnonzero(known)[kr_ok]
    kr = kr[kr_ok]
    by_len = np.argsort(hist.lengths[kr], kind="stable")  # chunks of similar length pad less
    idx, kr = idx[by_len], kr[by_len]
    for s in range(0, len(kr), chunk):
        x, ln = pad_batch(hist, kr[s : s + chunk])
        out[torch.from_numpy(idx[s : s + chunk])] = model.last_state(R, torch.from_numpy(x), torch.from_numpy(ln)).float()
    return out


def seq_scorer(model: SeqTwoTower, data: TrainData, es: EvalSet, split: str = "valid",
               inputs: Histories | None = None) -> Callable[[np.ndarray], torch.Tensor]:
    """``score_fn`` for :func:`recommender.evaluate.evaluate`: user states x the item matrix.
    ``inputs``: the histories the user tower reads (default: the split's real ones)."""
    was = model.training
    model.eval()
    with torch.no_grad():
        R = model.item_vectors().float()
        U = user_vectors(model, R, histories_for(data, model.cfg, split) if inputs is None else inputs, es.users)
    model.train(was)
    return lambda pos: U[torch.from_numpy(pos)] @ R.T


def next_item_scorer(model: SeqTwoTower, chunk: int = 2048) -> Callable[[np.ndarray, np.ndarray], torch.Tensor]:
    """The model as a next-item teacher (:meth:`SequenceGAN.expand`'s ``teacher``): a CSR of
    histories (item ids, oldest first; the newest ``max_len`` are read) -> logits
    [histories, num_items + 1], column = item id (the padding column 0 is -inf). Its parts are
    attributes too: ``score.user_vectors(values, offsets)`` [histories, d] and
    ``score.item_vectors`` [num_items + 1, d] (logits = their product)."""
    model.eval()
    with torch.no_grad():
        R = model.item_vectors().float()

    def score(values: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        ids = np.arange(len(offsets) - 1, dtype=np.int64)
        hist = Histories(ids, np.asarray(values, np.int64), np.asarray(offsets, np.int64)).truncate(model.cfg.max_len)
        S = user_vectors(model, R, hist, ids, chunk) @ R.T
        S[:, 0] = -float("inf")
        return S

    def vectors(values: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        ids = np.arange(len(offsets) - 1, dtype=np.int64)
        hist = Histories(ids, np.asarray(values, np.int64), np.asarray(offsets, np.int64)).truncate(model.cfg.max_len)
        return user_vectors(model, R, hist, ids, chunk)

    # the parts of the score, for a generator drawing from candidate sets (a FAISS search of the
    # user vector among the item vectors, then exact scores: ecaug_feast.synth.seq_candidates)
    score.user_vectors, score.item_vectors = vectors, R  # type: ignore[attr-defined]
    return score


class NextItemPolicy(nn.Module):
    """The model as a differentiable next-item policy (``synth.seq_refine``'s interface):
    ``policy(hist [B, L] item ids right-padded with 0, lengths [B])`` -> logits [B, num_items + 1]
    after each row's newest item (at most ``max_len`` newest read; column 0, the padding, -inf)."""

    def __init__(self, model: SeqTwoTower) -> None:
        super().__init__()
        self.model = model
        self._items: tuple[tuple[int, ...], torch.Tensor] | None = None

    def item_matrix(self) -> torch.Tensor:
        """The item tower; without autograd, computed once per set of weights (sampling and the
        frozen reference call it every step: a TorchRec lookup of the whole catalogue)."""
        if torch.is_grad_enabled():
            return self.model.item_matrix()
        version = tuple(p._version for p in self.model.parameters())  # an optimizer step bumps it
        if self._items is None or self._items[0] != version:
            self._items = (version, self.model.item_matrix())
        return self._items[1]

    def forward(self, hist: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        L = self.model.cfg.max_len
        if hist.shape[1] > L:  # the newest max_len items of each row, still right-padded
            start = (lengths - L).clamp(min=0)
            hist = hist.gather(1, (start[:, None] + torch.arange(L)[None, :]).clamp(max=hist.shape[1] - 1))
            hist = hist * (torch.arange(L)[None, :] < (lengths - start)[:, None])
            lengths = lengths - start
        R = self.item_matrix()
        S = self.model.last_state(R, hist, lengths) @ R.T
        return torch.cat([torch.full_like(S[:, :1], -float("inf")), S[:, 1:]], 1)


def evaluate_seq(model: SeqTwoTower, data: TrainData, es: EvalSet, split: str = "valid", seed: int = 0,
                 tie_break: str = "random", buckets: bool = False, inputs: Histories | None = None) -> dict[str, Any]:
    """Full-ranking metrics; with ``buckets`` also per kept training-history length (the REAL
    training history's, whatever ``inputs`` the user tower reads; see :func:`seq_scorer`)."""
    n = catalog_of(data).num_items
    m = evaluate(seq_scorer(model, data, es, split, inputs), es, n, seed=seed, tie_break=tie_break, per_user=buckets)
    if buckets:
        m["buckets"] = bucket_metrics(m.pop("_per_user"), es.users, data.train)
    return m


def train_seq(
    data: TrainData,
    valid: EvalSet | None,
    cfg: SeqConfig,
    tcfg: SeqTrainConfig,
    init_state: dict[str, torch.Tensor] | None = None,
    progress: Callable[[int, dict[str, Any]], None] | None = None,
    histories: Histories | None = None,
    excluded_items: np.ndarray | None = None,
) -> SeqTrainResult:
    """Train (or continue from ``init_state``); returns the best model by validation NDCG@10.
    ``histories``: training histories (default: the real users' serving rows of ``data``).
    ``excluded_items``: item ids that are never a training candidate (the cold items of a
    cold-item split: unknown when the model trains, so not pushed down as negatives either)."""
    info = D.init_distributed()
    prev = torch.get_num_threads()
    if tcfg.threads > 0:
        torch.set_num_threads(tcfg.threads)
    try:
        return _train(data, valid, cfg, tcfg, init_state, progress, info, histories, excluded_items)
    finally:
        torch.set_num_threads(prev)
        D.shutdown(info)


def length_buckets(rows: np.ndarray, lengths: np.ndarray, batch_size: int, rng: np.random.Generator, window: int = 32) -> list[np.ndarray]:
    """Shuffled batches of users of similar history length: shuffle, sort by length inside
    windows of ``window`` batches, cut, shuffle the batch order. Padding shrinks to the longest
    history of each batch instead of the longest of a random batch (mostly 50), which is where
    the self-attention time went; every user still appears once per epoch."""
    perm = rows[rng.permutation(len(rows))]
    if window <= 0:
        return [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]
    out: list[np.ndarray] = []
    span = batch_size * window
    for s in range(0, len(perm), span):
        w = perm[s : s + span]
        w = w[np.argsort(lengths[w], kind="stable")]
        out.extend(w[i : i + batch_size] for i in range(0, len(w), batch_size))
    return [out[i] for i in rng.permutation(len(out))]


def wrap_dmp(module: SeqTwoTower, info: Any, sharding: str = "data_parallel", lr: float = 2e-3, weight_decay: float = 0.0,
             lr_sharded_cpu: float = 0.05) -> Any:
    """DMP: the attribute table data-parallel on TorchRec's dense kernel (gradients are dense here,
    optimised by Adam with the rest), the item table as ``sharding`` says (``resolve_sharding``).
    A sharded item table takes TorchRec's fused kernel, the only one its sharders offer for a
    sharded table, with its optimizer applied inside backward by fbgemm: Adam (``lr``, SASRec's
    betas) on CUDA; on CPU fbgemm has no fused Adam, so row-wise Adagrad (``lr_sharded_cpu``, as
    the bag model's tables). Rank 0 prints the plan TorchRec's planner made, one block."""
    item = resolve_sharding(sharding, module.cfg.num_items, module.cfg.embedding_dim, info.world_size, info.device.type)
    kernel = "dense"
    if item != "data_parallel":
        kernel = "fused"
        if info.device.type == "cuda":
            opt, kw = trec_optim.Adam, {"lr": lr, "beta1": BETAS[0], "beta2": BETAS[1], "eps": 1e-8, "weight_decay": weight_decay}
        else:
            opt, kw = RowWiseAdagrad, {"lr": lr_sharded_cpu, "eps": 1e-8}
        apply_optimizer_in_backward(opt, module.ec.parameters(), kw)
    cons = {"t_item": ParameterConstraints(sharding_types=[item], compute_kernels=[kernel]),
            "t_attr": ParameterConstraints(sharding_types=["data_parallel"], compute_kernels=["dense"])}
    planner = EmbeddingShardingPlanner(topology=Topology(world_size=info.world_size, compute_device=info.device.type), constraints=cons)
    plan = planner.collective_plan(module, None, dist.GroupMember.WORLD)
    if info.rank == 0 and (info.world_size > 1 or item != "data_parallel"):
        print(D.plan_text(plan, info.world_size), file=sys.stderr, flush=True)  # stderr: --json output stays JSON
    return DistributedModelParallel(module=module, device=info.device, plan=plan)


class SeqOptimizer(SplitAdam):
    """The trainer's optimizer: Adam on everything trainable outside the fused (sharded) tables,
    the item table included (``dense``) or left to :class:`RowAdam` over the rows each step
    looked up (``sparse``). ``step(rows)``: ``rows`` = the item ids the step touched (None = all)."""

    def __init__(self, dmp: Any, table: str, lr: float, weight_decay: float = 0.0) -> None:
        named = [(k, p) for k, p in in_backward_optimizer_filter(dmp.named_parameters()) if p.requires_grad]
        item: list[torch.Tensor] = []
        if table == "sparse":
            item = [p for k, p in named if k.endswith(ITEM_TABLE)]  # DMP/DDP prefix it
            if len(item) != 1:
                raise ValueError(f"no data-parallel item table {ITEM_TABLE} to optimise row-wise")
        super().__init__([p for _, p in named if not item or p is not item[0]], item[0] if item else None, lr,
                         betas=BETAS, weight_decay=weight_decay)


def target_counts(hist: Histories, num_items: int) -> np.ndarray:
    """[num_items + 1] how often each item is a next-item target in ``hist`` (the in-batch
    candidates' sampling distribution)."""
    is_target = np.ones(len(hist.values), dtype=bool)
    is_target[hist.offsets[:-1][hist.lengths > 0]] = False  # a history's first item predicts, never is predicted
    if hist.targets is not None:
        is_target &= hist.targets
    return np.bincount(hist.values[is_target], minlength=num_items + 1)[: num_items + 1]


def _initial_state(cfg: SeqConfig, cat: Any, seed: int, init_state: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Seeded fresh weights, replaced by ``init_state`` (which must match the model) where given."""
    torch.manual_seed(seed)
    init = SeqTwoTower(cfg, catalog=cat).state_dict()
    for k, t in (init_state or {}).items():
        if k not in init or init[k].shape != t.shape:
            raise ValueError(f"initial state {k} does not match the model")
        init[k] = t
    return init


def _train(data, valid, cfg, tcfg, init_state, progress, info, histories, excluded_items=None) -> SeqTrainResult:
    t_start = time.time()
    rank, world = info.rank, info.world_size
    if tcfg.batch_size % world:
        raise ValueError(f"batch size {tcfg.batch_size} not divisible by world size {world}")
    local = tcfg.batch_size // world
    cat = catalog_of(data)
    loss_kind = resolve_loss(tcfg.loss, cfg.num_items)
    item_sharding = resolve_sharding(tcfg.sharding, cfg.num_items, cfg.embedding_dim, world, info.device.type)
    table_opt = resolve_table_optimizer(tcfg.table_optimizer, loss_kind, world, item_sharding)
    dmp = wrap_dmp(SeqTwoTower(cfg, device="meta", catalog=cat), info, tcfg.sharding, tcfg.lr, tcfg.weight_decay, tcfg.lr_sharded_cpu)
    D.load_into_dmp(dmp, _initial_state(cfg, cat, tcfg.seed, init_state))
    # a sharded item table is optimised inside backward (wrap_dmp): Adam here takes the rest
    opt = SeqOptimizer(dmp, table_opt, tcfg.lr, tcfg.weight_decay)

    hist = histories if histories is not None else histories_for(data, cfg, "valid")
    trainable = np.flatnonzero(hist.lengths >= 2)  # a single item has no next item to predict
    if len(trainable) < tcfg.batch_size:
        raise ValueError(f"{len(trainable)} users with at least 2 training events is fewer than one batch of {tcfg.batch_size}")
    sampler = None
    if loss_kind == "sampled":
        sampler = NegativeSampler(target_counts(hist, cfg.num_items), tcfg.negatives, tcfg.neg_mix, tcfg.neg_alpha)
    neg_rng = np.random.default_rng([tcfg.seed, rank, 7919])
    excluded = None if excluded_items is None or len(excluded_items) == 0 else np.unique(np.asarray(excluded_items, np.int64))
    eval_model = SeqTwoTower(cfg, catalog=cat)
    es = EarlyStopping(tcfg.patience, valid is not None, tcfg.max_seconds, progress, t_start)
    seen, train_time = 0, 0.0
    for epoch in range(tcfg.epochs):
        dmp.train()
        batches = length_buckets(trainable, hist.lengths, tcfg.batch_size, np.random.default_rng(tcfg.seed * 1000 + epoch),
                                 window=tcfg.bucket_window)
        t0, total, n_pos = time.time(), 0.0, 0
        if world > 1:  # every rank needs a non-empty slice of each global batch
            batches = [g for g in batches if len(g) == tcfg.batch_size]
        steps = len(batches)
        for g in batches:
            rows = g[rank * local : (rank + 1) * local] if world > 1 else g
            parts = packed_target_batch(hist, rows, tcfg.pack_chunks)
            n_local = sum(int((p[1] > 0).sum()) for p in parts)
            loss, touched = step_loss(dmp, parts, sampler, neg_rng, info.device, tcfg.bf16, excluded)
            share = _global_share(n_local, world)
            opt.zero_grad()
            (loss * share * world).backward()  # DDP averages over ranks: the mean over the GLOBAL batch's positions
            opt.step(touched)
            total += float(loss.detach()) * share
            n_pos += n_local
        train_time += time.time() - t0
        seen += n_pos
        if world > 1:  # the global batches' mean loss, not rank 0's share
            t = torch.tensor([total], dtype=torch.float64)
            dist.all_reduce(t)
            total = float(t[0])
        rec: dict[str, Any] = {"epoch": epoch + 1, "loss": total / steps, "train_s": round(time.time() - t0, 2)}
        state = D.export_state(dmp, info)
        stop = False
        if rank == 0:
            evaluate_now = valid is not None and (epoch + 1) % tcfg.eval_every == 0
            m = None
            if evaluate_now:
                eval_model.load_state_dict(state)
                m = evaluate_seq(eval_model, data, valid, "valid", seed=tcfg.seed)
            stop = es.end_epoch(epoch + 1, rec, state, m)
        if agree_to_stop(stop, world):
            break
    result = None
    if rank == 0:
        if es.best_state is None:  # budget hit before the first evaluation
            es.best_state, es.best_epoch = D.export_state(dmp, info), len(es.history)
        result = SeqTwoTower(cfg, catalog=cat)
        result.load_state_dict(es.best_state)
        result.eval()
    return SeqTrainResult(
        model=result, cfg=cfg, history=es.history, best_epoch=es.best_epoch, best_valid=es.best_valid,
        seconds=time.time() - t_start, examples_per_s=seen / max(train_time, 1e-9), state=es.best_state,
        rank=rank, world_size=world,
    )


def _global_share(n_local: int, world: int) -> float:
    """This rank's share of the global batch's target positions (1 with one process): its mean loss
    times the share, summed over the ranks, is the global batch's mean (ranks hold users, whose
    histories differ in length, so their position counts differ)."""
    if world == 1:
        return 1.0
    t = torch.tensor([float(n_local)], dtype=torch.float64)
    dist.all_reduce(t)
    return n_local / max(float(t[0]), 1.0)


def batch_loss(dmp: Any, parts: list, sampler: NegativeSampler | None, rng: np.random.Generator, dev: torch.device,
          bf16: bool, excluded: np.ndarray | None = None) -> torch.Tensor:
    """One batch's loss: the full softmax, or (with a ``sampler``) the sampled one over the rows
    the batch touches. One call through DMP's forward, so DDP syncs gradients under torchrun.
    ``excluded``: sorted item ids that are no candidate."""
    return step_loss(dmp, parts, sampler, rng, dev, bf16, excluded)[0]


def step_loss(dmp: Any, parts: list, sampler: NegativeSampler | None, rng: np.random.Generator, dev: torch.device,
              bf16: bool, excluded: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`batch_loss` and the item ids whose rows the step looked up (the rows a sparse table
    optimizer updates; None = the whole catalogue, the full softmax)."""
    ids = cand = log_q = None
    if sampler is not None:
        ids_np, xs_np, ys_np, cand_np, lq = sampled_batch(parts, sampler, rng)
        if excluded is not None:
            cand_np = cand_np[~np.isin(ids_np[cand_np], excluded)]
        parts = [(x, y, p[2]) for x, y, p in zip(xs_np, ys_np, parts)]
        ids, cand, log_q = torch.from_numpy(ids_np), torch.from_numpy(cand_np).to(dev), torch.from_numpy(lq).float().to(dev)
    xs, ys, ls = ([torch.from_numpy(p[i]).to(dev) for p in parts] for i in range(3))
    H, R = dmp(xs, ls, ids)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        if sampler is None:
            return full_softmax_loss(H, R, ys, None if excluded is None else torch.from_numpy(excluded).to(dev)), None
        return sampled_softmax_loss(H, R, ys, cand, log_q), ids


def config_dict(tcfg: SeqTrainConfig, num_items: int | None = None, world: int = 1) -> dict[str, Any]:
    """The training settings as the checkpoint records them; with ``num_items`` the ``loss`` is
    the one that ran (``auto`` resolved), the setting kept as ``loss_setting``, and on one process
    (``world``) so is ``table_optimizer`` (setting: ``table_optimizer_setting``)."""
    d = asdict(tcfg)
    if num_items is not None:
        d["loss_setting"], d["loss"] = tcfg.loss, resolve_loss(tcfg.loss, num_items)
        if world == 1:
            item = "data_parallel" if tcfg.sharding in ("auto", "data_parallel") else tcfg.sharding  # auto: whole on one process
            d["table_optimizer_setting"], d["table_optimizer"] = tcfg.table_optimizer, resolve_table_optimizer(
                tcfg.table_optimizer, d["loss"], 1, item)
    return d
