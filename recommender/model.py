"""TorchRec two-tower: one ``EmbeddingBagCollection`` feeding a user MLP and an item MLP.

Tables (mean pooling):
- ``t_user``: hashed user id (bucket 0 = unknown and synthetic users),
- ``t_item``: item id, shared by the candidate ``item_id``, the user's ``recent_items`` and its
  ``last_item`` (the most recent one, a bag of its own so order is not lost in the mean),
- ``t_attr``: attribute (brand/category) id, shared by ``attributes``, ``top_attributes`` and
  ``recent_attributes`` (attributes of the recent items).
Sharing lets a sparse user borrow the item vectors trained by every other user.

Score = <u, v> / temperature with u, v L2-normalised (cosine) when ``normalize`` is set, so an ANN
index over item vectors uses inner product on the normalised vectors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor
from torchrec.modules.embedding_configs import PoolingType

from ecaug_feast import schema as S

from recommender.batching import ITEM_DENSE, USER_DENSE, USER_SPARSE, ItemCatalog


class JsonConfig:
    """``to_dict`` / ``from_dict`` for the model config dataclasses saved in ``config.json``
    (unknown keys are refused, so a checkpoint of another shape fails loudly)."""

    # the model reads the ordered history: it scores the next item (a teacher), fine-tunes on
    # histories, serves with the self-attention encoder (recommender.checkpoint.MODEL_KINDS)
    sequential: ClassVar[bool] = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)


@dataclass
class ModelConfig(JsonConfig):
    """Everything needed to rebuild the model and encode its inputs (saved as JSON)."""

    kind: ClassVar[str] = "bag"  # not saved: older checkpoints carry no kind

    num_items: int
    num_attributes: int
    user_buckets: int = 32768
    embedding_dim: int = 64
    hidden_dim: int = 256
    out_dim: int = 64
    temperature: float = 0.05
    normalize: bool = True
    use_user_id: bool = True
    dropout: float = 0.0
    adapter_dim: int = 0  # >0: residual adapter layers on both towers (fine-tune --mode adapters)
    user_dense_mean: list[float] = field(default_factory=lambda: [0.0] * len(USER_DENSE))
    user_dense_std: list[float] = field(default_factory=lambda: [1.0] * len(USER_DENSE))
    item_dense_mean: list[float] = field(default_factory=lambda: [0.0] * len(ITEM_DENSE))
    item_dense_std: list[float] = field(default_factory=lambda: [1.0] * len(ITEM_DENSE))


def table_configs(cfg: ModelConfig) -> list[EmbeddingBagConfig]:
    d = cfg.embedding_dim
    return [
        EmbeddingBagConfig(name="t_user", embedding_dim=d, num_embeddings=cfg.user_buckets, feature_names=["user_id"], pooling=PoolingType.MEAN),
        EmbeddingBagConfig(name="t_item", embedding_dim=d, num_embeddings=cfg.num_items + 1, feature_names=["last_item", S.RECENT_ITEMS, "item_id"], pooling=PoolingType.MEAN),
        EmbeddingBagConfig(
            name="t_attr",
            embedding_dim=d,
            num_embeddings=cfg.num_attributes + 1,
            feature_names=["recent_attributes", S.TOP_ATTRIBUTES, S.ATTRIBUTES],
            pooling=PoolingType.MEAN,
        ),
    ]


class Adapter(nn.Module):
    """Residual bottleneck x + W2 relu(W1 x); W2 starts at zero so the wrapped tower is unchanged."""

    def __init__(self, dim: int, bottleneck: int):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(torch.relu(self.down(x)))


def _mlp(inp: int, hidden: int, out: int, dropout: float) -> nn.Sequential:
    # dropout on the input too: the pooled id embeddings are what overfits on sparse data
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(inp, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out))


class TwoTower(nn.Module):
    """``forward(kjt, user_dense, item_dense) -> (u, v)``; a side whose dense input is None is skipped."""

    def __init__(self, cfg: ModelConfig, device: torch.device | str | None = None, catalog: ItemCatalog | None = None):
        super().__init__()
        self.cfg = cfg
        self.ebc = EmbeddingBagCollection(tables=table_configs(cfg), device=torch.device(device or "cpu"))
        d = cfg.embedding_dim
        n_user_bags = 5 if cfg.use_user_id else 4
        self.user_mlp = _mlp(n_user_bags * d + len(USER_DENSE), cfg.hidden_dim, cfg.out_dim, cfg.dropout)
        self.item_mlp = _mlp(2 * d + len(ITEM_DENSE), cfg.hidden_dim, cfg.out_dim, cfg.dropout)
        if cfg.adapter_dim > 0:
            self.user_adapter = Adapter(cfg.out_dim, cfg.adapter_dim)
            self.item_adapter = Adapter(cfg.out_dim, cfg.adapter_dim)
        # Not a parameter and not saved: fine-tune modes set it (towers/adapters freeze the tables).
        self.freeze_embeddings = False
        # The item catalog (attributes per item) the user side needs; set by training/loading.
        self.catalog: ItemCatalog | None = catalog

    def forward(
        self, kjt: KeyedJaggedTensor, user_dense: torch.Tensor | None, item_dense: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        pooled = self.ebc(kjt).to_dict()
        if self.freeze_embeddings:
            # no gradient reaches the (fused) embedding kernels, so their rows stay as loaded
            pooled = {k: t.detach() for k, t in pooled.items()}
        u = v = None
        if user_dense is not None:
            u = self.user_head(torch.cat([pooled[k] for k in self.user_bag_keys()] + [user_dense], dim=1))
        if item_dense is not None:
            v = self.item_mlp(torch.cat([pooled["item_id"], pooled[S.ATTRIBUTES], item_dense], dim=1))
            if self.cfg.adapter_dim > 0:
                v = self.item_adapter(v)
            v = self.normalize(v)
        return u, v

    def user_bag_keys(self) -> list[str]:
        """The pooled user bags the user MLP reads, in its input order (then the dense features)."""
        return [k for k in USER_SPARSE if k != "user_id" or self.cfg.use_user_id]

    def user_head(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenated pooled user bags + dense features -> the user vector (MLP, adapter, norm);
        public so serving can pool the bags itself and still run the same head."""
        u = self.user_mlp(x)
        if self.cfg.adapter_dim > 0:
            u = self.user_adapter(u)
        return self.normalize(u)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """L2 row normalisation when ``cfg.normalize`` is set (the score is then a cosine)."""
        return nn.functional.normalize(x, dim=1) if self.cfg.normalize else x

    def set_finetune_mode(self, mode: str) -> None:
        """``full``: train everything; ``towers``: freeze embeddings; ``adapters``: train adapters only."""
        if mode not in ("full", "towers", "adapters"):
            raise ValueError(f"unknown fine-tune mode {mode!r}")
        self.freeze_embeddings = mode in ("towers", "adapters")
        for name, p in self.named_parameters():
            if name.startswith("ebc."):
                continue  # handled by freeze_embeddings (fused kernels ignore requires_grad)
            p.requires_grad_(mode != "adapters" or "_adapter." in name)


def in_batch_softmax_loss(
    u: torch.Tensor,
    v: torch.Tensor,
    item_ids: torch.Tensor,
    log_q: torch.Tensor,
    temperature: float,
    pos_offset: int = 0,
    extra_v: torch.Tensor | None = None,
    extra_ids: torch.Tensor | None = None,
    extra_log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sampled softmax over in-batch items (plus optional random negatives) with logQ correction.

    ``u``: [B, d] users; ``v``: [N, d] the positives of the (global) batch, row i's positive at
    column ``pos_offset + i``; ``log_q``: [N] log sampling probability of each column (the logQ
    correction of Yi et al. 2019: popular items appear as negatives more often than the softmax
    assumes). Columns holding the row's own positive item (accidental hits) are masked.
    Returns the mean loss over the B rows.
    """
    B = u.shape[0]
    labels = torch.arange(B, device=u.device) + pos_offset
    logits = u @ v.T / temperature - log_q[None, :]
    pos_ids = item_ids[labels]
    hit = pos_ids[:, None] == item_ids[None, :]
    hit[torch.arange(B), labels] = False
    logits = logits.masked_fill(hit, float("-inf"))
    if extra_v is not None:
        assert extra_ids is not None and extra_log_q is not None
        extra = u @ extra_v.T / temperature - extra_log_q[None, :]
        extra = extra.masked_fill(pos_ids[:, None] == extra_ids[None, :], float("-inf"))
        logits = torch.cat([logits, extra], dim=1)
    return nn.functional.cross_entropy(logits, labels)
