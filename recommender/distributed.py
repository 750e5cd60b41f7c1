"""Process group + ``DistributedModelParallel`` plumbing (gloo on CPU, nccl on GPU).

A single process still goes through DMP (world size 1): that is what gives the fused
RowWiseAdagrad embedding kernels. Under ``torchrun --nproc_per_node=N`` the same code shards the
tables across N ranks and data-parallelises the MLPs.

Weights move between DMP and a plain :class:`~recommender.model.TwoTower` as full tensors:
:func:`load_into_dmp` writes the matching slice into each local shard, :func:`export_state`
gathers every sharded table onto rank 0.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed._shard.sharded_tensor import ShardedTensor
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad


@dataclass
class DistInfo:
    rank: int
    world_size: int
    device: torch.device
    owns_group: bool  # we created the group (single-process run) and should destroy it


def init_distributed() -> DistInfo:
    """Join the torchrun group if there is one, else create a private 1-process gloo group."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), _device(), False)
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        dev = _device()
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend)
        return DistInfo(dist.get_rank(), dist.get_world_size(), dev, True)
    # A file store: no port to collide with other runs (tests run several trainings in one process).
    fd, path = tempfile.mkstemp(prefix="ecaug-pg-")
    os.close(fd)
    os.unlink(path)
    dist.init_process_group(backend="gloo", init_method=f"file://{path}", rank=0, world_size=1)
    return DistInfo(0, 1, torch.device("cpu"), True)


def _device() -> torch.device:
    if torch.cuda.is_available() and os.environ.get("ECAUG_CPU", "") != "1":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def shutdown(info: DistInfo) -> None:
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap_dmp(module: torch.nn.Module, info: DistInfo, lr_sparse: float, eps: float = 1e-8, sharding: str = "table_wise") -> Any:
    """Fused RowWiseAdagrad on the embedding tables (applied inside backward), then DMP.

    ``sharding``: ``table_wise`` | ``row_wise`` | ``column_wise`` (every table, fused kernel), or
    ``auto`` (the planner's choice; for small tables on several ranks it picks data-parallel with
    the dense kernel, whose optimizer is not the fused one, so runs would not match 1 process).
    """
    apply_optimizer_in_backward(RowWiseAdagrad, module.ebc.parameters(), {"lr": lr_sparse, "eps": eps})
    topo = Topology(world_size=info.world_size, compute_device=info.device.type)
    constraints = None
    if sharding != "auto":
        if sharding not in ("table_wise", "row_wise", "column_wise"):
            raise ValueError(f"unknown sharding {sharding!r}")
        constraints = {
            t.name: ParameterConstraints(sharding_types=[sharding], compute_kernels=["fused"])
            for t in module.ebc.embedding_bag_configs()
        }
    planner = EmbeddingShardingPlanner(topology=topo, constraints=constraints)
    plan = planner.collective_plan(module, None, dist.GroupMember.WORLD)
    return DistributedModelParallel(module=module, device=info.device, plan=plan)


def plan_text(plan: Any, world: int) -> str:
    """The sharding plan as one readable block: per table, its layout, kernel and each rank's rows."""
    lines = [f"sharding plan ({world} rank{'s' if world > 1 else ''}):"]
    for path, params in sorted(plan.plan.items()):
        for name, ps in sorted(params.items()):
            shards = getattr(ps.sharding_spec, "shards", None) or []
            where = ", ".join(f"rank {sh.placement.rank()}: rows {sh.shard_offsets[0]}-{sh.shard_offsets[0] + sh.shard_sizes[0] - 1}"
                              f" x cols {sh.shard_offsets[1]}-{sh.shard_offsets[1] + sh.shard_sizes[1] - 1}" for sh in shards)
            lines.append(f"  {path}.{name}: {ps.sharding_type}, kernel {ps.compute_kernel}, "
                         + (where if where else f"whole on ranks {ps.ranks or list(range(world))}"))
    return "\n".join(lines)


def dense_optimizer(dmp: Any, lr: float, weight_decay: float = 0.0) -> Any:
    """Adam over every trainable non-embedding parameter, combined with DMP's fused optimizer."""
    params = {k: p for k, p in in_backward_optimizer_filter(dmp.named_parameters()) if p.requires_grad}
    dense = KeyedOptimizerWrapper(params, lambda ps: torch.optim.Adam(ps, lr=lr, weight_decay=weight_decay))
    return CombinedOptimizer([dmp.fused_optimizer, dense])


def _strip(k: str) -> str:
    # DMP/DDP prefixes differ between versions; the plain model has none
    for p in ("module.", "_dmp_wrapped_module."):
        while k.startswith(p):
            k = k[len(p) :]
    return k


@torch.no_grad()
def load_into_dmp(dmp: Any, state: dict[str, torch.Tensor]) -> None:
    """Copy a plain state dict into a DMP model (each rank writes its own shards)."""
    own = dmp.state_dict()
    for k, t in own.items():
        src = state[_strip(k)]
        if isinstance(t, ShardedTensor):
            for shard in t.local_shards():
                o = shard.metadata.shard_offsets
                s = shard.metadata.shard_sizes
                shard.tensor.copy_(src[o[0] : o[0] + s[0], o[1] : o[1] + s[1]])
        else:
            t.copy_(src)


@torch.no_grad()
def export_state(dmp: Any, info: DistInfo) -> dict[str, torch.Tensor] | None:
    """Full, unsharded CPU state dict on rank 0 (None on other ranks). Collective: call on all ranks."""
    out: dict[str, torch.Tensor] = {}
    for k, t in dmp.state_dict().items():
        if isinstance(t, ShardedTensor):
            if info.world_size == 1:
                full = torch.empty(t.size(), dtype=t.dtype)
                for shard in t.local_shards():
                    o, s = shard.metadata.shard_offsets, shard.metadata.shard_sizes
                    full[o[0] : o[0] + s[0], o[1] : o[1] + s[1]] = shard.tensor.cpu()
            else:
                full = torch.empty(t.size(), dtype=t.dtype, device=info.device) if info.rank == 0 else None
                t.gather(dst=0, out=full)
            if info.rank == 0:
                out[_strip(k)] = full.cpu().clone()
        elif info.rank == 0:
            out[_strip(k)] = t.detach().cpu().clone()
    return out if info.rank == 0 else None
