"""Sequence two-tower: a causal self-attention user tower over the ordered item history (SASRec
style, Kang & McAuley 2018) and an item tower that is the item id embedding plus its attributes.

Score = <h_u, r_i> (no normalisation, no temperature), trained with a softmax over the whole
catalogue at every position of every training history (Klenitskiy & Vasilev 2023: cross-entropy
over all items is what makes SASRec strong), or, for catalogues too large for that, with a sampled
softmax with logQ correction (:func:`sampled_softmax_loss`) whose step looks up only the items it
touches (:meth:`SeqTwoTower.item_rows`).

Sparse parts are TorchRec modules:
- ``ec``: an ``EmbeddingCollection`` (one vector per id, no pooling) holding ``t_item``; the key
  ``catalog`` looks up every item 1..I once per step (the item tower),
- ``ebc``: an ``EmbeddingBagCollection`` holding ``t_attr`` (mean of an item's attribute vectors).
The item tower ``r_i = E_item[i] + mean(E_attr[attrs(i)])`` is computed for the whole catalogue,
and the user tower reads its input vectors from the same matrix (tied input/output embeddings, as
SASRec), so one catalogue lookup serves both towers. At serving time the item matrix is the FAISS
index, and the user tower indexes into it: no table lookup on the request path.

Why the dense kernel and Adam (not a fused row-wise optimizer): with a full softmax every item row
receives a gradient at every step, so the table gradient is dense; fbgemm's CPU kernels offer
only Adagrad/SGD fused, and SASRec is tuned for Adam. ``recommender.seq_train`` therefore shards
the tables data-parallel with TorchRec's dense kernel under DMP. With the sampled loss only the
rows a step looks up get a gradient, and the item table may take lazy row-wise Adam on those rows
(``SeqTrainConfig.table_optimizer``, ``recommender.row_adam``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, EmbeddingCollection, EmbeddingConfig, KeyedJaggedTensor
from torchrec.modules.embedding_configs import PoolingType

from ecaug_feast import schema as S
from ecaug_feast.histories import Histories, gather_index
# the one sampled loss (shared with the generator, ecaug_feast.synth.seq_gan)
from ecaug_feast.sampled_softmax import NegativeSampler, sampled_logits, sampled_softmax_loss, target_states  # noqa: F401

from recommender.batching import ItemCatalog
from recommender.model import JsonConfig


@dataclass
class SeqConfig(JsonConfig):
    """Everything needed to rebuild the sequence model (saved as JSON in the checkpoint)."""

    num_items: int
    num_attributes: int
    max_len: int = 50
    embedding_dim: int = 64
    num_blocks: int = 2
    num_heads: int = 1
    dropout: float = 0.5
    use_attributes: bool = True
    kind: str = "sequence"
    # the item tower (issue 34): "id" = id embedding (+ attribute mean); "attr" = DropoutNet-style:
    # attribute bag -> MLP, plus the id embedding only for items with a trained id (``id_known``),
    # dropped at random in training with probability ``id_dropout`` so the attributes alone rank
    item_tower: str = "id"
    id_dropout: float = 0.0
    sequential: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.item_tower not in ITEM_TOWERS:
            raise ValueError(f"item_tower must be one of {', '.join(ITEM_TOWERS)}, got {self.item_tower!r}")
        if not 0.0 <= self.id_dropout < 1.0:
            raise ValueError(f"id_dropout must lie in [0, 1), got {self.id_dropout}")
        if self.item_tower == "attr" and not self.use_attributes:
            raise ValueError("item_tower 'attr' reads the attributes: use_attributes must be true")

    def to_dict(self) -> dict[str, Any]:
        # the item-tower settings at their defaults are left out, so an id-tower checkpoint's
        # config.json stays byte-for-byte what it was before the option existed
        d = super().to_dict()
        for k in ("item_tower", "id_dropout"):
            if d[k] == _TOWER_DEFAULTS[k]:
                del d[k]
        return d


ITEM_TOWERS = ("id", "attr")
_TOWER_DEFAULTS: dict[str, Any] = {"item_tower": "id", "id_dropout": 0.0}


class _Block(nn.Module):
    """SASRec block: Q = LN(x), causal attention over x, residual from Q; LN; point-wise FFN with
    residual. Padding sits on the right, so with a causal mask no real position sees a pad."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        if d % heads:
            raise ValueError(f"embedding_dim {d} not divisible by num_heads {heads}")
        self.h, self.p = heads, dropout
        self.ln_q = nn.LayerNorm(d, eps=1e-8)
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)
        self.ln_f = nn.LayerNorm(d, eps=1e-8)
        self.ff1 = nn.Linear(d, d)
        self.ff2 = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        qn = self.ln_q(x)
        q = self.q(qn).view(B, L, self.h, d // self.h).transpose(1, 2)
        k, v = self.kv(x).view(B, L, 2, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.p if self.training else 0.0)
        x = qn + self.out(a.transpose(1, 2).reshape(B, L, d))
        x = self.ln_f(x)
        x = x + self.drop(self.ff2(self.drop(F.relu(self.ff1(x)))))
        return x * keep


class SeqTwoTower(nn.Module):
    """``item_matrix()`` -> [I+1, d] item tower; ``encode(R, hist, lengths)`` -> [B, L, d] user
    states (row b, position k = the user after its first k+1 items)."""

    def __init__(self, cfg: SeqConfig, device: torch.device | str | None = None, catalog: ItemCatalog | None = None):
        super().__init__()
        self.cfg = cfg
        dev = torch.device(device or "cpu")
        d = cfg.embedding_dim
        self.ec = EmbeddingCollection(
            tables=[EmbeddingConfig(name="t_item", embedding_dim=d, num_embeddings=cfg.num_items + 1, feature_names=["catalog"])],
            device=dev,
        )
        self.ebc = EmbeddingBagCollection(
            tables=[EmbeddingBagConfig(name="t_attr", embedding_dim=d, num_embeddings=cfg.num_attributes + 1,
                                       feature_names=[S.ATTRIBUTES], pooling=PoolingType.MEAN)],
            device=dev,
        )
        self.pos = nn.Embedding(cfg.max_len, d)
        self.emb_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([_Block(d, cfg.num_heads, cfg.dropout) for _ in range(cfg.num_blocks)])
        self.ln_out = nn.LayerNorm(d, eps=1e-8)
        if cfg.item_tower == "attr":
            # only for the attribute tower, so the id tower's state dict keeps its keys
            self.attr_mlp = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
            # items whose id embedding was trained (set from the warm items through the initial
            # state): a cold item's row is its attribute vector alone
            self.register_buffer("id_known", torch.ones(cfg.num_items + 1, dtype=torch.bool))
        self.catalog: ItemCatalog | None = catalog
        self._catalog_kjts: tuple[KeyedJaggedTensor, KeyedJaggedTensor] | None = None
        # rows of the scored item table replaced from outside (set_item_vectors): not weights,
        # not saved in a checkpoint
        self._override: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- item tower -------------------------------------------------------------------------
    def catalog_kjts(self) -> tuple[KeyedJaggedTensor, KeyedJaggedTensor]:
        """The two KJTs that look up every item 0..I (ids and attribute bags), built once."""
        if self._catalog_kjts is None:
            if self.catalog is None:
                raise ValueError("the sequence model needs its item catalog (attributes per item)")
            n = self.cfg.num_items + 1
            with torch.inference_mode(False):  # cached: must stay usable outside inference mode
                self._catalog_kjts = self._build_catalog_kjts(n)
        return self._catalog_kjts

    def _build_catalog_kjts(self, n: int) -> tuple[KeyedJaggedTensor, KeyedJaggedTensor]:
        return self._item_kjts(np.arange(n, dtype=np.int64))

    def _item_kjts(self, ids: np.ndarray) -> tuple[KeyedJaggedTensor, KeyedJaggedTensor]:
        """The id and attribute-bag KJTs that look up the items ``ids`` (one row each)."""
        if self.catalog is None:
            raise ValueError("the sequence model needs its item catalog (attributes per item)")
        n = len(ids)
        kjt_ids = KeyedJaggedTensor(keys=["catalog"], values=torch.from_numpy(ids), lengths=torch.ones(n, dtype=torch.int64))
        av, alen = self.catalog.attributes_of(ids)
        if not self.cfg.use_attributes:
            av, alen = av[:0], np.zeros_like(alen)
        av = np.where((av >= 1) & (av <= self.cfg.num_attributes), av, 0)
        attrs = KeyedJaggedTensor(keys=[S.ATTRIBUTES], values=torch.from_numpy(av.astype(np.int64)), lengths=torch.from_numpy(alen.astype(np.int64)))
        return kjt_ids, attrs

    def _tower(self, ids: KeyedJaggedTensor, attrs: KeyedJaggedTensor, ec: nn.Module | None = None,
               ebc: nn.Module | None = None) -> torch.Tensor:
        dev = self.pos.weight.device
        e = (ec or self.ec)(ids.to(dev))["catalog"].values()
        if self.cfg.item_tower == "attr":
            a = (ebc or self.ebc)(attrs.to(dev))[S.ATTRIBUTES]
            a = a + self.attr_mlp(a)
            keep = self.id_known.to(dev)[ids.values().to(dev)].to(e.dtype)
            if self.training and self.cfg.id_dropout > 0:
                # DropoutNet (Volkovs et al., NeurIPS 2017): drop an item's id vector at random,
                # the same item in the input and the output of this step
                keep = keep * (torch.rand(keep.shape, device=dev) >= self.cfg.id_dropout).to(e.dtype)
            return e * keep.unsqueeze(1) + a
        if self.cfg.use_attributes:
            e = e + (ebc or self.ebc)(attrs.to(dev))[S.ATTRIBUTES]
        return e

    def item_matrix(self, ec: nn.Module | None = None, ebc: nn.Module | None = None) -> torch.Tensor:
        """Item tower for the whole catalogue, row i = item id i (row 0 = padding, kept at zero
        input so it never scores). ``ec``/``ebc``: the sharded modules when wrapped by DMP."""
        return self._tower(*self.catalog_kjts(), ec, ebc)

    def item_vectors(self) -> torch.Tensor:
        """The item table the model scores against, [I+1, d]: the item tower of every item, with
        the rows given to :meth:`set_item_vectors` in place of the tower's."""
        R = self.item_matrix()
        if self._override is None:
            return R
        idx, vecs = self._override
        R = R.clone()
        R[idx] = vecs.to(R.dtype)
        return R

    def set_item_vectors(self, idx: np.ndarray | torch.Tensor, vecs: np.ndarray | torch.Tensor) -> None:
        """Score the items ``idx`` with ``vecs`` [len(idx), d] from now on (e.g. generated vectors
        for cold items, whose id rows never trained); later calls replace the same rows again."""
        idx_t = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        v = torch.as_tensor(np.asarray(vecs, dtype=np.float32))
        d = self.cfg.embedding_dim
        if idx_t.ndim != 1 or v.shape != (len(idx_t), d):
            raise ValueError(f"set_item_vectors: expected idx [n] and vectors [n, {d}], got {tuple(idx_t.shape)} and {tuple(v.shape)}")
        if len(idx_t) and (int(idx_t.min()) < 1 or int(idx_t.max()) > self.cfg.num_items):
            raise ValueError(f"set_item_vectors: item ids must lie in 1..{self.cfg.num_items}")
        if not torch.isfinite(v).all():
            raise ValueError("set_item_vectors: vectors must be finite")
        if self._override is not None:
            old_i, old_v = self._override
            keep = ~torch.isin(old_i, idx_t)
            idx_t, v = torch.cat([old_i[keep], idx_t]), torch.cat([old_v[keep], v])
        self._override = (idx_t, v)

    def item_rows(self, ids: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Item tower of the items ``ids`` only, [len(ids), d] (the sampled loss: a step looks up
        the rows it touches, not the catalogue, so only those rows receive a gradient)."""
        ids = ids.cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
        return self._tower(*self._item_kjts(ids.astype(np.int64)))

    # -- user tower -------------------------------------------------------------------------
    def encode(self, R: torch.Tensor, hist: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``hist`` [B, L] item ids, right-padded with 0; ``lengths`` [B] (>= 1 real items)."""
        B, L = hist.shape
        keep = (hist > 0).unsqueeze(-1).to(R.dtype)
        # absolute positions as in SASRec's left-padded window: the newest item sits at max_len-1
        k = torch.arange(L, device=hist.device)[None, :]
        pos = (self.cfg.max_len - lengths[:, None] + k).clamp(0, self.cfg.max_len - 1)
        x = R[hist] * math.sqrt(self.cfg.embedding_dim) + self.pos(pos)
        x = self.emb_drop(x) * keep
        for blk in self.blocks:
            x = blk(x, keep)
        return self.ln_out(x)

    def last_state(self, R: torch.Tensor, hist: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, d]: the user vector after the whole history (what serving and evaluation score)."""
        H = self.encode(R, hist, lengths)
        return H[torch.arange(len(lengths), device=H.device), (lengths - 1).clamp(min=0)]

    def forward(self, hist: torch.Tensor | Sequence[torch.Tensor], lengths: torch.Tensor | Sequence[torch.Tensor],
                ids: torch.Tensor | None = None) -> tuple[Any, torch.Tensor]:
        """User states and the item matrix. ``hist``/``lengths`` may be lists of chunks of one
        batch (see :func:`packed_target_batch`): the item tower is computed once for all of them,
        and one forward call keeps DDP's one-forward-per-backward rule under DMP. With ``ids``
        (sorted item ids, ``ids[0] == 0``) the item tower covers those items only and ``hist``
        holds rows of it (:func:`sampled_batch`), not item ids."""
        R = self.item_matrix() if ids is None else self.item_rows(ids)
        if isinstance(hist, (list, tuple)):
            return [self.encode(R, h, n) for h, n in zip(hist, lengths)], R
        return self.encode(R, hist, lengths), R


def full_softmax_loss(H: torch.Tensor | Sequence[torch.Tensor], R: torch.Tensor, targets: torch.Tensor | Sequence[torch.Tensor],
                      excluded: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy over items 1..I at every position whose target is an item (target 0 = pad),
    averaged over all such positions (of all chunks, when ``H``/``targets`` are lists).
    ``excluded``: item ids that are no candidate (cold items, unknown at training time)."""
    h, y = target_states(H, targets)
    logits = h @ R.T
    logits[:, 0] = float("-inf")
    if excluded is not None:
        logits[:, excluded] = float("-inf")
    return F.cross_entropy(logits, y)


def sampled_batch(parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], sampler: NegativeSampler,
                  rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray]:
    """A packed batch (:func:`packed_target_batch`) rewritten for the sampled loss: the sorted item
    ids the step touches (``ids[0] = 0``: histories, targets, sampled negatives), the inputs and
    targets as rows of ``ids`` (0 stays the pad), the candidate rows (targets and negatives, once
    each) and logQ per row of ``ids``."""
    ys = np.concatenate([p[1][p[1] > 0] for p in parts])
    neg = sampler.sample(rng)
    ids = np.unique(np.concatenate([[0], *(p[0].ravel() for p in parts), ys, neg]))
    xs = [np.searchsorted(ids, p[0]) for p in parts]
    ts = [np.searchsorted(ids, p[1]) for p in parts]
    cand = np.searchsorted(ids, np.unique(np.concatenate([ys, neg])))
    log_q = np.zeros(len(ids))
    log_q[1:] = sampler.log_q(ids[1:], len(ys))
    return ids, xs, ts, cand, log_q


# ------------------------------------------------------------------------------------------------
# histories as CSR (chronological), padded batches


def pad_batch(h: Histories, rows: np.ndarray, drop_last: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded [B, L] ids of ``rows`` (L = longest in the batch) and lengths; with
    ``drop_last`` each history loses its newest item (the training input for next-item targets)."""
    starts = h.offsets[rows]
    lens = h.offsets[rows + 1] - starts - (1 if drop_last else 0)
    lens = np.maximum(lens, 0)
    L = max(int(lens.max(initial=0)), 1)
    out = np.zeros((len(rows), L), dtype=np.int64)
    r = np.repeat(np.arange(len(rows)), lens)
    c = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    out[r, c] = h.values[gather_index(starts, lens)]
    return out, lens.astype(np.int64)


def target_batch(h: Histories, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training input, next-item targets (0 = no target, also where ``h.targets`` is False) and
    input lengths for ``rows``."""
    x, lens = pad_batch(h, rows, drop_last=True)
    starts = h.offsets[rows] + 1
    y = np.zeros_like(x)
    r = np.repeat(np.arange(len(rows)), lens)
    c = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    at = gather_index(starts, lens)
    y[r, c] = h.values[at] if h.targets is None else np.where(h.targets[at], h.values[at], 0)
    return x, y, lens


def packed_target_batch(h: Histories, rows: np.ndarray, chunks: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`target_batch` of ``rows`` cut into ``chunks`` groups of similar history length,
    each padded only to its own longest history. The batch (and so each optimizer step) is the
    same set of users; only the padding shrinks (Beauty, 128 random users: 7.6 padded positions
    per real one in one block, 1.6 in 8 chunks), and with it the self-attention and dropout time.
    """
    rows = np.asarray(rows)
    if chunks <= 1 or len(rows) <= 1:
        return [target_batch(h, rows)]
    order = rows[np.argsort(h.lengths[rows], kind="stable")]
    return [target_batch(h, part) for part in np.array_split(order, min(chunks, len(rows))) if len(part)]


class SeqUserEncoder:
    """Serving: online ``recent_items`` rows (most recent first) -> user vectors, with the item
    matrix computed once at load. The request path is an index into that matrix plus the
    transformer over at most ``max_len`` positions; no TorchRec lookup, no pandas."""

    def __init__(self, model: SeqTwoTower, R: torch.Tensor | None = None) -> None:
        self.model = model.eval()
        with torch.no_grad():
            self.R = (R if R is not None else model.item_vectors()).detach().float()

    def histories(self, recent: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Padded chronological ids [n, L] and lengths from ``recent_items`` lists."""
        n, L, I = len(recent), self.model.cfg.max_len, self.model.cfg.num_items
        rows = []
        for r in recent:
            a = np.zeros(0, np.int64) if r is None or (isinstance(r, float) and np.isnan(r)) else np.asarray(r, np.int64).reshape(-1)
            a = a[(a >= 1) & (a <= I)][:L][::-1]  # newest max_len known items, oldest first
            rows.append(a)
        lens = np.array([len(a) for a in rows], dtype=np.int64)
        x = np.zeros((n, max(int(lens.max(initial=0)), 1)), dtype=np.int64)
        for i, a in enumerate(rows):
            x[i, : len(a)] = a
        return x, lens

    def __call__(self, recent: list[Any]) -> np.ndarray:
        x, lens = self.histories(recent)
        out = np.zeros((len(recent), self.R.shape[1]), dtype=np.float32)
        ok = lens > 0  # no known item: a zero vector (callers treat such users as cold)
        if ok.any():
            with torch.inference_mode():
                u = self.model.last_state(self.R, torch.from_numpy(x[ok]), torch.from_numpy(lens[ok]))
            out[ok] = u.numpy()
        return out
