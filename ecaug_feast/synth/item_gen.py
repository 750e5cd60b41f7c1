"""Item-side generators: an item's vector in the recommender's item space from its attributes alone,
for items the recommender never trained on (new or cold items; issue 34, docs/CONTRACT.md §8).

Interface (SDV-like: the base owns the checks, a subclass only ``_fit`` / ``_generate``)::

    gen = ITEM_GENERATORS[name](config)          # config: the class's own dataclass (None: defaults)
    gen.fit(attrs, warm_idx, warm_vecs, user_vecs=None)
    vecs = gen.generate(attrs, idx)              # float32 [len(idx), d]

``attrs`` is the catalogue's attribute CSR, row = item index (``recommender.batching.ItemCatalog``:
its ``attr_values`` / ``attr_offsets``, row 0 the padding item), given as that object or as a
``(values, offsets)`` pair. ``warm_idx``: int64 rows of ``attrs`` whose trained vectors are
``warm_vecs`` (float32 [n_warm, d]). ``user_vecs``: float32 [m, d] user vectors (e.g. the
recommender's states of sampled training histories); what GAR's ranking signal reads.

Attribute ids that ``fit`` never saw (a new brand) are ignored by ``generate``; an item with no
known attribute gets the warm items' mean vector (``attr_mean``) or the generator's output for an
empty bag (``gar``).

Numpy and torch only (a library: no job, no Feast).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ecaug_feast.errors import EcaugError
from ecaug_feast.histories import csr_take, gather_index, offsets_of


def attr_csr(attrs: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(values, offsets)`` int64 of an attribute CSR given as an ``ItemCatalog``-like object
    (``attr_values`` / ``attr_offsets``) or a pair; malformed: one-line :class:`EcaugError`."""
    if hasattr(attrs, "attr_values") and hasattr(attrs, "attr_offsets"):
        values, offsets = attrs.attr_values, attrs.attr_offsets
    elif isinstance(attrs, (tuple, list)) and len(attrs) == 2:
        values, offsets = attrs
    else:
        raise EcaugError(f"item generator: attrs must be an ItemCatalog or a (values, offsets) pair, got {type(attrs).__name__}")
    values, offsets = np.asarray(values), np.asarray(offsets)
    for name, a in (("values", values), ("offsets", offsets)):
        if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
            raise EcaugError(f"item generator: attrs {name} must be a 1-D integer array, got shape {a.shape} dtype {a.dtype}")
    if len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(values) or (np.diff(offsets) < 0).any():
        raise EcaugError(f"item generator: attrs offsets must start at 0, not decrease and end at len(values) = {len(values)}")
    if len(values) and values.min() < 0:
        raise EcaugError("item generator: attrs values (attribute ids) must be >= 0")
    return values.astype(np.int64, copy=False), offsets.astype(np.int64, copy=False)


def _vectors(name: str, x: Any, rows: int | None, dim: int | None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.floating):
        raise EcaugError(f"item generator: {name} must be a 2-D float array, got shape {a.shape} dtype {a.dtype}")
    if rows is not None and a.shape[0] != rows:
        raise EcaugError(f"item generator: {name} has {a.shape[0]} rows, expected {rows}")
    if dim is not None and a.shape[1] != dim:
        raise EcaugError(f"item generator: {name} has dimension {a.shape[1]}, the warm vectors {dim}")
    if not np.isfinite(a).all():
        raise EcaugError(f"item generator: {name} holds NaN or infinite values")
    return a.astype(np.float32, copy=False)


def _index(name: str, x: Any, n_rows: int) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
        raise EcaugError(f"item generator: {name} must be a 1-D integer array, got shape {a.shape} dtype {a.dtype}")
    a = a.astype(np.int64, copy=False)
    if len(a) and (a.min() < 0 or a.max() >= n_rows):
        raise EcaugError(f"item generator: {name} must index the {n_rows} rows of attrs (0..{n_rows - 1}), "
                         f"got {int(a.min())}..{int(a.max())}")
    return a


def unique_bags(values: np.ndarray, offsets: np.ndarray, idx: np.ndarray, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """The attribute bags of rows ``idx`` as ``(row, attr)`` pairs (row = position in ``idx``),
    each attribute once per item and only ids below ``vocab`` (those ``fit`` saw)."""
    vals, lens = csr_take(values, offsets, idx)
    row = np.repeat(np.arange(len(idx), dtype=np.int64), lens)
    keep = vals < vocab
    row, vals = row[keep], vals[keep]
    if len(vals):
        key = np.unique(row * vocab + vals)  # sorted by row, then attribute: duplicates once
        row, vals = key // vocab, key % vocab
    return row, vals


class ItemGenerator:
    """Base of the item generators: validates inputs and outputs; subclasses implement
    :meth:`_fit` and :meth:`_generate` on checked arrays. ``report`` holds what ``fit`` measured."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type] = object

    def __init__(self, config: Any = None) -> None:
        if config is None:
            config = self.config_class()
        if not isinstance(config, self.config_class):
            raise EcaugError(f"item generator {self.name}: config must be a {self.config_class.__name__}, got {type(config).__name__}")
        self.config: Any = config
        self.dim: int | None = None
        self.vocab = 0   # attribute ids 0..vocab-1 were seen by fit
        self.report: dict[str, Any] = {}

    def fit(self, attrs: Any, warm_idx: Any, warm_vecs: Any, user_vecs: Any = None) -> "ItemGenerator":
        """Learn the map attributes -> vector from the warm items (see the module docstring)."""
        values, offsets = attr_csr(attrs)
        n = len(offsets) - 1
        idx = _index("warm_idx", warm_idx, n)
        if len(idx) == 0:
            raise EcaugError("item generator: warm_idx is empty (no warm item to learn from)")
        if len(np.unique(idx)) != len(idx):
            raise EcaugError("item generator: warm_idx holds an item more than once")
        vecs = _vectors("warm_vecs", warm_vecs, len(idx), None)
        if vecs.shape[1] == 0:
            raise EcaugError("item generator: warm_vecs has dimension 0")
        users = None if user_vecs is None else _vectors("user_vecs", user_vecs, None, vecs.shape[1])
        if users is not None and len(users) == 0:
            users = None
        self.dim = int(vecs.shape[1])
        warm_attrs, _ = csr_take(values, offsets, idx)
        self.vocab = int(warm_attrs.max(initial=-1)) + 1
        t0 = time.time()
        self._fit(values, offsets, idx, vecs, users)
        self.report = {"generator": self.name, "config": asdict(self.config), "warm_items": int(len(idx)), "dim": self.dim,
                       "attributes_seen": self.vocab, "user_vectors": 0 if users is None else int(len(users)),
                       "fit_seconds": round(time.time() - t0, 3), **self.report}
        return self

    def generate(self, attrs: Any, idx: Any) -> np.ndarray:
        """float32 [len(idx), d]: the vector of each item of ``idx`` from its attributes."""
        if self.dim is None:
            raise EcaugError(f"item generator {self.name}: generate before fit")
        values, offsets = attr_csr(attrs)
        rows = _index("idx", idx, len(offsets) - 1)
        if len(rows) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = np.asarray(self._generate(values, offsets, rows))
        if out.shape != (len(rows), self.dim):  # a subclass bug, not the caller's: fail loudly
            raise RuntimeError(f"{type(self).__name__}._generate returned shape {out.shape}, expected {(len(rows), self.dim)}")
        if not np.isfinite(out).all():
            raise RuntimeError(f"{type(self).__name__}._generate returned NaN or infinite values")
        return out.astype(np.float32, copy=False)

    # subclasses ------------------------------------------------------------------------------
    def _fit(self, values: np.ndarray, offsets: np.ndarray, warm_idx: np.ndarray, warm_vecs: np.ndarray,
             user_vecs: np.ndarray | None) -> None:
        raise NotImplementedError

    def _generate(self, values: np.ndarray, offsets: np.ndarray, idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# attr_mean: the cheap baseline


WEIGHTINGS = ("idf", "uniform", "count")


@dataclass
class AttrMeanConfig:
    """``weighting`` of an item's attributes: ``idf`` (rarer attributes, e.g. a brand, weigh more:
    ``log((1 + n_warm) / (1 + n_a)) + 1``), ``uniform``, or ``count`` (``n_a``: the plain mean over
    every warm item sharing an attribute, an item counted once per shared attribute)."""

    weighting: str = "idf"

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}")


class AttrMean(ItemGenerator):
    """An item's vector = the weighted mean over its attributes ``a`` of ``m_a``, the mean trained
    vector of the warm items that have ``a``; no known attribute: the mean of all warm vectors."""

    name = "attr_mean"
    config_class = AttrMeanConfig

    def _fit(self, values: np.ndarray, offsets: np.ndarray, warm_idx: np.ndarray, warm_vecs: np.ndarray,
             user_vecs: np.ndarray | None) -> None:
        row, att = unique_bags(values, offsets, warm_idx, self.vocab)
        count = np.bincount(att, minlength=self.vocab).astype(np.float64)
        sums = np.zeros((self.vocab, warm_vecs.shape[1]), np.float64)
        np.add.at(sums, att, warm_vecs[row].astype(np.float64))
        self.means = sums / np.maximum(count, 1)[:, None]
        self.sums, self.count = sums, count
        w = self.config.weighting
        self.weights = (np.log((1 + len(warm_idx)) / (1 + count)) + 1 if w == "idf" else
                        np.ones(self.vocab) if w == "uniform" else count.copy())
        self.weights[count == 0] = 0.0
        self.fallback = warm_vecs.astype(np.float64).mean(axis=0)
        self.report = {"attributes_used": int((count > 0).sum())}

    def _generate(self, values: np.ndarray, offsets: np.ndarray, idx: np.ndarray) -> np.ndarray:
        row, att = unique_bags(values, offsets, idx, self.vocab)
        w = self.weights[att]
        out = np.zeros((len(idx), self.means.shape[1]), np.float64)
        np.add.at(out, row, w[:, None] * self.means[att])
        total = np.bincount(row, weights=w, minlength=len(idx))
        known = total > 0
        out[known] /= total[known, None]
        out[~known] = self.fallback
        return out.astype(np.float32)

    def leave_one_out(self, values: np.ndarray, offsets: np.ndarray, warm_idx: np.ndarray, warm_vecs: np.ndarray) -> np.ndarray:
        """The vectors of the warm items ``fit`` saw, each as if it had been cold: its own trained
        vector left out of every attribute mean (an attribute only it has: not used). What a model
        trained on these inputs meets for a cold item."""
        row, att = unique_bags(values, offsets, warm_idx, self.vocab)
        others = self.count[att] - 1
        w = np.where(others > 0, self.weights[att], 0.0)
        loo = (self.sums[att] - warm_vecs[row].astype(np.float64)) / np.maximum(others, 1)[:, None]
        out = np.zeros((len(warm_idx), warm_vecs.shape[1]), np.float64)
        np.add.at(out, row, w[:, None] * loo)
        total = np.bincount(row, weights=w, minlength=len(warm_idx))
        known = total > 0
        out[known] /= total[known, None]
        n = len(warm_idx)
        out[~known] = (self.fallback * n - warm_vecs[~known]) / max(n - 1, 1)
        return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# gar: adversarial against the warm items' trained vectors


@dataclass
class GARConfig:
    """GAR's settings. ``alpha``: weight of the L1 pull of a generated vector to the item's trained
    one (GAR's ``alpha``; 1 - alpha weighs the adversarial ranking loss); ``beta``: share of the
    discriminator's ranking margin taken against a random warm item instead of the generated vector
    (GAR's ``beta``). ``top_users``: each warm item's users are its ``top_users`` best-scored among
    the given user vectors under the recommender's own dot product (the users it would be shown to);
    ``max_users`` caps the user vectors read. ``random_users``: weight of the ranking's other side
    (not in GAR): for a random user the discriminator learns to tell a generated vector by its
    scoring above the warm one, and the generator not to (0: GAR as published, whose generator
    inflates its vectors until cold items crowd out warm ones for every user)."""

    attr_dim: int = 64
    hidden: int = 128
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-5
    alpha: float = 0.9  # GAR's README setting
    beta: float = 0.3
    dropout: float = 0.1
    top_users: int = 20
    max_users: int = 4096
    random_users: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("attr_dim", "hidden", "epochs", "batch_size", "top_users", "max_users"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("alpha", "beta", "dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.random_users < 0:
            raise ValueError(f"random_users must be >= 0, got {self.random_users}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


class _BagMLP(nn.Module):
    """Generator: [mean of learned attribute embeddings (an empty bag: zeros), the item's attribute
    mean vector] -> MLP -> a correction added to that attribute mean (the last layer starts at zero:
    the generator starts as ``attr_mean``)."""

    def __init__(self, vocab: int, cfg: GARConfig, dim: int) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(max(vocab, 1), cfg.attr_dim, mode="mean")
        last = nn.Linear(cfg.hidden, dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(nn.Linear(cfg.attr_dim + dim, cfg.hidden), nn.Tanh(), nn.Dropout(cfg.dropout),
                                 nn.Linear(cfg.hidden, cfg.hidden), nn.Tanh(), last)

    def forward(self, vals: torch.Tensor, offs: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        return base + self.mlp(torch.cat([self.bag(vals, offs), base], dim=1))


class _Tower(nn.Module):
    """x + MLP(x), the MLP's last layer zero at start: the discriminator begins as the recommender's
    own dot product and learns a correction (GAR's discriminator is a two-tower recommender)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        last = nn.Linear(hidden, dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(x)


class GARGenerator(ItemGenerator):
    """GAR: Chen, Wang, Huang, Huang, Xu, Lin, He, Li, "Generative Adversarial Framework for
    Cold-Start Item Recommendation", SIGIR 2022 (github.com/zfnWong/GAR).

    The generator maps an item's attribute bag to a vector in the recommender's item space. The
    discriminator is a recommender (user and item towers, scored by a dot product) started as the
    trained recommender's own scoring. For a warm item ``i`` with trained vector ``v_i``, one of its
    users ``u`` (one of its ``top_users`` under the recommender), a random warm item ``n`` and the
    generated ``g_i``:

    - the discriminator learns to rank the warm vector first:
      ``-log sigmoid(s(u, v_i) - (1 - beta) s(u, g_i) - beta s(u, n))``;
    - the generator learns to be ranked as the warm vector is:
      ``(1 - alpha) (-log sigmoid(s(u, g_i) - s(u, v_i))) + alpha mean|g_i - v_i|`` (L1 per element,
      as GAR's code; ``alpha`` 1 is a plain regression, the non-adversarial ablation).

    Unlike GAR's code, the output is the generated vector itself (not passed through the
    discriminator's item tower), so it can stand in for an untrained row of the recommender's item
    table as is. Vectors are scaled by the warm vectors' RMS norm inside (scores of order 1).
    Deterministic by ``seed`` (own torch and numpy generators; the global RNG state is restored).
    Without ``user_vecs`` the warm vectors stand in for users (item-to-item ranking)."""

    name = "gar"
    config_class = GARConfig

    def _fit(self, values: np.ndarray, offsets: np.ndarray, warm_idx: np.ndarray, warm_vecs: np.ndarray,
             user_vecs: np.ndarray | None) -> None:
        cfg, dim = self.config, int(warm_vecs.shape[1])
        rng = np.random.default_rng(cfg.seed)
        users = warm_vecs if user_vecs is None else user_vecs
        if len(users) > cfg.max_users:
            users = users[np.sort(rng.choice(len(users), cfg.max_users, replace=False))]
        self.scale = float(np.sqrt((warm_vecs.astype(np.float64) ** 2).sum(1).mean())) or 1.0
        u_scale = float(np.sqrt((users.astype(np.float64) ** 2).sum(1).mean())) or 1.0
        V = torch.from_numpy(warm_vecs / self.scale).float()
        U = torch.from_numpy(users / u_scale).float()
        k = min(cfg.top_users, len(U))
        with torch.no_grad():  # each warm item's users: its best-scored under the recommender
            top = torch.cat([torch.topk(V[s : s + 1024] @ U.T, k, dim=1).indices for s in range(0, len(V), 1024)])
        row, att = unique_bags(values, offsets, warm_idx, self.vocab)
        bag_v, bag_o = torch.from_numpy(att), torch.from_numpy(offsets_of(np.bincount(row, minlength=len(warm_idx))))
        # the generator refines attr_mean; trained on each warm item's vector as if it were cold
        self.base = AttrMean()
        self.base.vocab, self.base.dim = self.vocab, dim
        self.base._fit(values, offsets, warm_idx, warm_vecs, None)
        B = torch.from_numpy(self.base.leave_one_out(values, offsets, warm_idx, warm_vecs) / self.scale).float()

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.gen = _BagMLP(self.vocab, cfg, dim)
            d_user, d_item = _Tower(dim, cfg.hidden), _Tower(dim, cfg.hidden)
            g_opt = torch.optim.Adam(self.gen.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            d_opt = torch.optim.Adam([*d_user.parameters(), *d_item.parameters()], lr=cfg.lr, weight_decay=cfg.weight_decay)
            n, bs = len(warm_idx), cfg.batch_size
            hist: dict[str, list[float]] = {"d_loss": [], "g_adv": [], "g_l1": []}
            for _ in range(cfg.epochs):
                perm = rng.permutation(n)
                for s in range(0, n, bs):
                    b = perm[s : s + bs]
                    bv, bo = _bag_batch(bag_v, bag_o, b)
                    u = U[top[torch.from_numpy(b), torch.from_numpy(rng.integers(0, k, len(b)))]]
                    real, neg = V[b], V[rng.integers(0, n, len(b))]
                    ur = U[rng.integers(0, len(U), len(b))]  # random users: the other side of the ranking
                    # discriminator step (generator fixed)
                    self.gen.eval()
                    with torch.no_grad():
                        fake = self.gen(bv, bo, B[b])
                    self.gen.train()
                    du = d_user(u)
                    s_real, s_fake, s_neg = ((du * d_item(x)).sum(1) for x in (real, fake, neg))
                    d_loss = nn.functional.softplus(-(s_real - (1 - cfg.beta) * s_fake - cfg.beta * s_neg)).mean()
                    if cfg.random_users > 0:  # an inflated fake scores above the warm vector for anyone
                        dur = d_user(ur)
                        d_loss = d_loss + cfg.random_users * nn.functional.softplus(
                            -((dur * d_item(fake)).sum(1) - (dur * d_item(real)).sum(1))).mean()
                    d_opt.zero_grad()
                    d_loss.backward()
                    d_opt.step()
                    # generator step (discriminator fixed: only the generator's optimiser steps)
                    fake = self.gen(bv, bo, B[b])
                    with torch.no_grad():
                        du, dr = d_user(u), d_item(real)
                    s_fake, s_real = (du * d_item(fake)).sum(1), (du * dr).sum(1)
                    g_adv = nn.functional.softplus(-(s_fake - s_real)).mean()
                    if cfg.random_users > 0:
                        with torch.no_grad():
                            dur = d_user(ur)
                            r_real = (dur * dr).sum(1)
                        g_adv = g_adv + cfg.random_users * nn.functional.softplus((dur * d_item(fake)).sum(1) - r_real).mean()
                    g_l1 = (fake - real).abs().mean()  # per element, as GAR's code
                    g_loss = (1 - cfg.alpha) * g_adv + cfg.alpha * g_l1
                    g_opt.zero_grad()
                    g_loss.backward()
                    g_opt.step()
                    for key, val in (("d_loss", d_loss), ("g_adv", g_adv), ("g_l1", g_l1)):
                        hist[key].append(float(val.detach()))
            self.gen.eval()
        last = max(1, math.ceil(n / bs))  # the last epoch's batches
        self.report = {f"{k}_last_epoch": round(float(np.mean(v[-last:])), 4) for k, v in hist.items()}
        self.report["steps"] = len(hist["d_loss"])

    @torch.no_grad()
    def _generate(self, values: np.ndarray, offsets: np.ndarray, idx: np.ndarray) -> np.ndarray:
        row, att = unique_bags(values, offsets, idx, self.vocab)
        base = torch.from_numpy(self.base._generate(values, offsets, idx) / self.scale).float()
        out = self.gen(torch.from_numpy(att), torch.from_numpy(offsets_of(np.bincount(row, minlength=len(idx)))[:-1]), base)
        return (out * self.scale).numpy()


def _bag_batch(vals: torch.Tensor, offs: torch.Tensor, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The bags of ``rows`` of a (values, offsets) CSR as EmbeddingBag input (values, starts)."""
    v, lens = csr_take(vals.numpy(), offs.numpy(), rows)
    return torch.from_numpy(v), torch.from_numpy(offsets_of(lens)[:-1])


ITEM_GENERATORS: dict[str, type[ItemGenerator]] = {"attr_mean": AttrMean, "gar": GARGenerator}


# ---------------------------------------------------------------------------------------------
# synthetic interactions for cold items


@dataclass
class ColdHistoriesConfig:
    """How short histories ending in a cold item are drawn: each cold item gets ``per_item``
    histories from distinct real users, drawn uniformly among its ``candidates`` best-scored users
    (user vector . generated item vector) whose last ``context`` items share an attribute with it
    (all users with a context when none does, ``shared_attribute`` false: always all users); a
    history is that user's last ``context`` items, then the cold item."""

    per_item: int = 3
    candidates: int = 30
    context: int = 4
    shared_attribute: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("per_item", "candidates", "context"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def cold_item_histories(values: np.ndarray, offsets: np.ndarray, attrs: Any, cold_idx: np.ndarray,
                        cold_vecs: np.ndarray, user_vecs: np.ndarray, config: ColdHistoriesConfig | None = None
                        ) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """Short histories that end in each cold item (see :class:`ColdHistoriesConfig`).

    ``values`` / ``offsets``: the real training histories (oldest first, CSR), ``user_vecs`` one
    vector per history row; ``attrs``: the catalogue's attribute CSR; ``cold_vecs``: the cold items'
    generated vectors (:meth:`ItemGenerator.generate`). Returns ``(histories, source rows, contexts)``:
    history k continues real row ``source[k]``, whose last items ``contexts[k]`` it keeps."""
    from scipy import sparse

    cfg = config or ColdHistoriesConfig()
    a_vals, a_offs = attr_csr(attrs)
    cold_idx = _index("cold_idx", cold_idx, len(a_offs) - 1)
    cold_vecs = _vectors("cold_vecs", cold_vecs, len(cold_idx), None)
    values, offsets = np.asarray(values, np.int64), np.asarray(offsets, np.int64)
    n_users = len(offsets) - 1
    user_vecs = _vectors("user_vecs", user_vecs, n_users, cold_vecs.shape[1])
    rng = np.random.default_rng(cfg.seed)
    lens = np.diff(offsets)
    ctx_len = np.minimum(lens, cfg.context)
    starts = offsets[1:] - ctx_len
    ctx_vals = values[gather_index(starts, ctx_len)]
    ctx_rows = np.repeat(np.arange(n_users), ctx_len)
    has_ctx = ctx_len > 0
    vocab = int(max(a_vals.max(initial=-1), 0)) + 1
    # users x attributes of their context items, cold items x attributes: shared attribute <=> product > 0
    i_vals, i_lens = csr_take(a_vals, a_offs, np.where(ctx_vals < len(a_offs) - 1, ctx_vals, 0))  # unknown ids: no attribute
    ua = sparse.csr_matrix((np.ones(len(i_vals), np.float32), (np.repeat(ctx_rows, i_lens), i_vals)), shape=(n_users, vocab))
    c_vals, c_lens = csr_take(a_vals, a_offs, cold_idx)
    ca = sparse.csr_matrix((np.ones(len(c_vals), np.float32), (np.repeat(np.arange(len(cold_idx)), c_lens), c_vals)),
                           shape=(len(cold_idx), vocab))
    hists, source, contexts = [], [], []
    for s in range(0, len(cold_idx), 256):
        score = cold_vecs[s : s + 256] @ user_vecs.T
        score[:, ~has_ctx] = -np.inf
        if cfg.shared_attribute:
            shared = (ca[s : s + 256] @ ua.T).toarray() > 0
            shared &= has_ctx[None, :]
            any_shared = shared.any(1)
            score[any_shared] = np.where(shared[any_shared], score[any_shared], -np.inf)
        k = min(cfg.candidates, int(has_ctx.sum()))
        if k == 0:
            break
        top = np.argpartition(-score, k - 1, axis=1)[:, :k]
        for j in range(len(top)):
            cand = top[j][np.isfinite(score[j, top[j]])]
            for u in rng.choice(np.sort(cand), min(cfg.per_item, len(cand)), replace=False):
                ctx = values[starts[u] : offsets[u + 1]]
                hists.append(np.append(ctx, cold_idx[s + j]).astype(np.int64))
                source.append(int(u))
                contexts.append(ctx)
    return hists, np.asarray(source, np.int64), contexts
