"""A conditional sequence GAN over item histories (pure PyTorch; library layer: arrays in, arrays out).

Generator: a small causal transformer over tokens ``[SEG] i_1 i_2 ... i_n [EOS]``. ``SEG`` is one of
four segment tokens (``SEGMENTS``: cold / light / heavy by history length, tail when most of the
history is long-tail items), so the generator is conditioned on a segment and, when a real history
is given as the prompt, on that user's kept items. With ``reverse=True`` the items are read newest
first, so a continuation of the prompt is *earlier* behaviour: the pseudo-prior items of ASReP
(Liu et al., "Augmenting Sequential Recommendation with Pseudo-Prior Items via Reversely
Pre-training Transformer", SIGIR 2021), prepended to short histories.

Training, in two phases:

1. Maximum likelihood (teacher forcing) on TRAINING histories only, early-stopped on a held-out
   share of those same training histories. The vocabulary is the set of items that occur in the
   histories given to ``fit``: an item that only appears in validation/test can never be emitted.
2. Adversarial (``adversarial=True``): policy gradient as in SeqGAN (Yu et al., AAAI 2017), with the
   discriminator's score as reward. Instead of SeqGAN's Monte-Carlo rollouts (one rollout set per
   step per sample: far too slow on 2 CPU cores) the discriminator is itself causal and scores
   every prefix, giving a per-step reward, as in ScratchGAN (de Masson d'Autume et al., NeurIPS
   2019); rewards are discounted to returns and centred by a per-position batch baseline. MLE steps
   on real histories are interleaved with the generator's policy-gradient steps (LeakGAN's
   "interleaved training", Guo et al., AAAI 2018) so that adversarial updates cannot walk the
   generator away from the data (mode collapse). Why not Gumbel-softmax: with a ~12k-item
   vocabulary the relaxed one-hot vectors are dense 12k-vectors per step and the temperature
   schedule is fragile; the REINFORCE estimator needs only the sampled ids.

Inter-event gaps are NOT generated: the histories this model reads (the Feast list feature
``recent_items``) carry no timestamps. Callers that need timestamps (the feature builders) draw gaps
from the empirical training gap distribution (``sample_gaps``).

Two uses: ``expand`` (a real history as the prompt; ``n`` generated items prepended with
``reverse=True`` or appended otherwise) and ``sample_users`` (whole synthetic histories for a
segment, from the segment token alone). ``device="auto"`` picks CUDA when available.

Sampling decodes incrementally: the prompt runs once, then each step feeds only the newest token
against cached keys/values and projects only the last position onto the vocabulary (re-running the
whole prefix and projecting every position per token made generation, and the adversarial phase's
fakes, cost O(length^2) full-vocabulary projections). It draws the same uniform numbers as that
step-by-step path, so a seed gives the same tokens (``_sample_tokens(..., cached=False)`` keeps the
reference; ``benchmarks/seq_gan_fit.py --compare`` times both). Training losses likewise project
only the positions whose target is a token, not the padding.

What is sampled can be steered after the fit (``expand`` / ``sample_users``): ``transition_mix``
(default .08) interpolates each step with the training histories' item transitions out of the
previous item, ``attr_coherence`` (default 2, once :meth:`SequenceGAN.set_item_attributes` gave the
items' attributes) favours items whose attributes the row already has, ``epsilon`` truncates.
``benchmarks/seq_realism.py`` measures each on one fit. (Settings that lost in the study --
``top_p``, ``popularity_bias``, the time prior, discriminator rejection -- last existed at commit
df6b276.)

Data-parallel training: under ``torchrun`` call :func:`init_distributed` first (gloo on CPU, nccl on
CUDA, one GPU per local rank), then ``fit`` as usual. Both nets are wrapped in
``DistributedDataParallel``; every rank draws the same batches (same seeds) and computes the loss on
its slice ``batch[rank::world]``, scaled so that the averaged gradient equals one process's gradient
on the whole batch; held-out NLL, early stopping and time limits are agreed across ranks, so all
ranks end with identical weights. Rank 0 writes (``is_writer``). Without a process group (one
process) nothing changes.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from ecaug_feast.histories import offsets_of, rows_to_csr
from ecaug_feast.row_adam import SplitAdam
from ecaug_feast.sampled_softmax import LOSSES, resolve_loss
from ecaug_feast.synth import seq_candidates as SC
from ecaug_feast.synth.linear_ce import linear_cross_entropy

logger = logging.getLogger(__name__)  # progress of a fit: minutes on a full dataset

SEGMENTS = ("cold", "light", "heavy", "tail")


@dataclass
class SeqGANConfig:
    embedding_dim: int = 64
    num_layers: int = 2
    num_heads: int = 2
    max_len: int = 50             # items per history read (the newest ones)
    dropout: float = 0.2
    reverse: bool = True          # True: generate earlier items (pseudo-prior); False: continuations
    mle_epochs: int = 20
    patience: int = 2
    batch_size: int = 128
    lr: float = 1e-3
    holdout: float = 0.1          # share of the TRAINING histories held out for MLE early stopping
    adversarial: bool = True
    adv_steps: int = 60
    adv_batch: int = 128
    adv_lr: float = 2e-4
    d_steps: int = 2              # discriminator updates per generator update
    mle_every: int = 1            # interleave one MLE step every this many policy-gradient steps
    gamma: float = 0.9            # reward discount
    gen_max_len: int = 30         # longest whole synthetic history sampled
    temperature: float = 1.0
    transition_mix: float = 0.08  # sampling only (expand, sample_users; the adversarial phase samples the
                                  # generator alone, on-policy): share of each step's probability taken from
                                  # the training transitions out of the previous item (_sample_tokens); 0 = off
    # sampling only: epsilon sampling (Hewitt et al., EMNLP 2022): each step drops the items whose
    # probability is below epsilon x 1/|vocabulary| (EOS and the most probable item stay; one
    # comparison per item, no sort); 0 = off. .24 (= 2e-5 on Beauty's 12,068 items): on Beauty
    # history / feature C2ST .752 / .771 -> .747 / .764, generation +8-20 % (README, sequence GAN)
    epsilon: float = 0.24
    # sampling only, once SequenceGAN.set_item_attributes gave the items' attributes (without them:
    # not applied): + this x the share (idf-weighted) of each item's attributes already in the row
    # (prompt and items drawn so far) on the item's logit, so a history keeps to the categories and
    # brands it has, as real ones do (generated users' attribute entropy 2.66 vs real 2.48 nats on
    # Beauty; with 2: 2.49, feature / history C2ST .750 / .754 -> .662 / .745 on one fit); 0 = off
    attr_coherence: float = 2.0
    tail_share: float = 0.8       # items outside the most popular ones covering this share are "tail"
    max_seconds: float | None = None
    seed: int = 0
    device: str = "auto"
    threads: int = 0              # 0 = leave torch's setting
    # linear cost (issue 33; synth/seq_candidates.py): ``loss`` of the ML and policy-gradient steps,
    # full | sampled | auto (the recommender's rule: sampled softmax with logQ correction above
    # SAMPLED_ABOVE items, ``negatives`` uniform draws per step); ``generation``: full | candidates |
    # auto (same threshold): each draw scores only the ``candidate_k`` items a FAISS index
    # (``candidate_index``: flat | ivf | auto) finds for the user vector, plus the transitions and EOS
    loss: str = "auto"
    negatives: int = 256
    generation: str = "auto"
    candidate_k: int = 512
    candidate_index: str = "auto"
    # plus this many uniform draws per row and step standing for the items outside the top K,
    # each logit + log((V - K) / draws) (a logQ correction): the long tail keeps its mass. Beauty
    # 25 %, one fit: history C2ST .940 without (K = 512), .856 with 256, full draws .867
    # (docs/results/seq-gan-linear)
    candidate_tail: int = 256

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.generation not in SC.GENERATIONS:
            raise ValueError(f"generation must be one of {', '.join(SC.GENERATIONS)}, got {self.generation!r}")
        if self.candidate_index not in SC.INDEXES:
            raise ValueError(f"candidate_index must be one of {', '.join(SC.INDEXES)}, got {self.candidate_index!r}")
        if self.candidate_k < 1 or self.negatives < 1:
            raise ValueError(f"candidate_k and negatives must be >= 1, got {self.candidate_k}, {self.negatives}")
        if self.candidate_tail < 0:
            raise ValueError(f"candidate_tail must be >= 0, got {self.candidate_tail}")
        # sampling thresholds outside these ranges would drop every item (or none, silently)
        if not 0.0 <= self.epsilon < 1.0:
            raise ValueError(f"epsilon must be in [0, 1) (a share of the uniform probability), got {self.epsilon}")
        if not 0.0 <= self.transition_mix <= 1.0:
            raise ValueError(f"transition_mix must be in [0, 1], got {self.transition_mix}")
        if not self.attr_coherence >= 0.0:
            raise ValueError(f"attr_coherence must be >= 0, got {self.attr_coherence}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _epsilon(logits, min_prob: float, keep: int):
    """``logits`` [B, V] (in place) without the tokens of probability below ``min_prob``; each row's
    most probable token and token ``keep`` always stay. One pass for the log-normaliser, one
    comparison: no softmax, no copy (sampling time is spent per step on [B, vocabulary] buffers)."""
    thr = torch.minimum(torch.logsumexp(logits, -1, keepdim=True) + math.log(min_prob), logits.max(-1, keepdim=True).values)
    kept = logits[:, keep].clone()
    logits.masked_fill_(logits < thr, -math.inf)
    logits[:, keep] = kept
    return logits


def _categorical(logits, generator, block: int = 128):
    """One draw per row of ``softmax(logits)`` [B, V] (rows of -inf but one entry at least), by
    inverse CDF in two levels: a block of ``block`` tokens by the blocks' cumulative mass, then a
    token within it. One uniform number per row: the Gumbel-max draw this replaces needed B x V of
    them (512 x 12,068: 4.4 vs 31.2 ms a step, ``benchmarks/seq_sampling_ops.py``). Cumulative sums in float64, so even the smallest kept probabilities keep their
    share; ``side="right"`` with the uniform clamped below the total never lands on a zero-mass
    token (a banned one)."""
    B, V = logits.shape
    nb = -(-V // block)
    p = logits.new_zeros(B, nb * block)
    torch.sub(logits, logits.amax(-1, keepdim=True), out=p[:, :V]).exp_()
    pb = p.view(B, nb, block)
    mass = pb.sum(-1)  # [B, blocks]
    cum = torch.cumsum(mass, -1, dtype=torch.float64)
    total = cum[:, -1:]
    u = torch.rand(B, 1, generator=generator, dtype=torch.float64, device=logits.device) * total
    u = torch.minimum(u, total * (1 - 1e-12))
    j = torch.searchsorted(cum, u, side="right").clamp_(max=nb - 1)
    inner = torch.cumsum(pb[torch.arange(B, device=logits.device), j[:, 0]], -1, dtype=torch.float64)
    rest = (u - (cum.gather(1, j) - mass.gather(1, j).double())).clamp_(min=0.0)
    rest = torch.minimum(rest, inner[:, -1:] * (1 - 1e-12))
    k = torch.searchsorted(inner, rest, side="right").clamp_(max=block - 1)
    return (j * block + k)[:, 0]


def pick_device(name: str = "auto") -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def init_distributed(device: str = "auto") -> tuple[int, int]:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 (nccl on CUDA, with this process's
    ``LOCAL_RANK`` GPU; gloo on CPU). Returns (rank, world); (0, 1) outside torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    if not dist.is_initialized():
        cuda = pick_device(device) == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _dist_rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def tail_items(values: np.ndarray, share: float = 0.8) -> np.ndarray:
    """Item ids outside the most popular items that cover ``share`` of the interactions."""
    items, counts = np.unique(np.asarray(values, np.int64), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    cum = np.cumsum(counts[order]) / max(counts.sum(), 1)
    head = order[: int(np.searchsorted(cum, share) + 1)]
    mask = np.ones(len(items), bool)
    mask[head] = False
    return items[mask]


def segment_of(lengths: np.ndarray, tail_frac: np.ndarray) -> np.ndarray:
    """Segment index per history: tail (>= half long-tail items, length >= 2) wins, else by length
    (cold <= 3, light 4-7, heavy 8+)."""
    lengths = np.asarray(lengths)
    seg = np.where(lengths <= 3, 0, np.where(lengths <= 7, 1, 2))
    return np.where((np.asarray(tail_frac) >= 0.5) & (lengths >= 2), 3, seg).astype(np.int64)


def history_segments(values: np.ndarray, offsets: np.ndarray, tail: np.ndarray) -> np.ndarray:
    lens = np.diff(offsets)
    is_tail = np.isin(values, tail).astype(np.float64)
    row = np.repeat(np.arange(len(lens)), lens)
    frac = np.bincount(row, weights=is_tail, minlength=len(lens)) / np.maximum(lens, 1)
    return segment_of(lens, frac)


def _length_batches(lengths: np.ndarray, rng: np.random.Generator, bs: int) -> list[np.ndarray]:
    """Index batches of rows with similar lengths (less padding), in shuffled batch order."""
    order = np.argsort(np.asarray(lengths) + rng.random(len(lengths)), kind="stable")
    bl = [order[i : i + bs] for i in range(0, len(order), bs)]
    return [bl[j] for j in rng.permutation(len(bl))]


def _transition_pairs(rows: list[np.ndarray], n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(previous token, next item token, count) over encoded rows ``[SEG] items... [EOS]``:
    consecutive ITEM tokens only (1..n_items), in the rows' (generation) order."""
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    cat = np.concatenate(rows)
    ends = offsets_of([len(r) for r in rows])[1:]
    a, b = cat[:-1], cat[1:]
    ok = (a >= 1) & (a <= n_items) & (b >= 1) & (b <= n_items)
    ok &= ~np.isin(np.arange(len(a)), ends - 1)  # not across two rows
    key, cnt = np.unique(a[ok] * (n_items + 2) + b[ok], return_counts=True)
    return key // (n_items + 2), key % (n_items + 2), cnt.astype(np.float64)


def _nets(vocab_out: int, n_tokens: int, cfg: SeqGANConfig):
    """Generator and discriminator modules for a vocabulary of ``n_tokens`` (classes built per config)."""
    class Generator(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d = cfg.embedding_dim
            self.tok = nn.Embedding(n_tokens, d, padding_idx=0)
            self.pos = nn.Embedding(cfg.max_len + cfg.gen_max_len + 2, d)
            layer = nn.TransformerEncoderLayer(d, cfg.num_heads, 2 * d, cfg.dropout, batch_first=True, norm_first=True)
            self.enc = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
            self.ln = nn.LayerNorm(d)
            # small init: with tied output weights, N(0, 1) rows give logits of size ~sqrt(d) and a
            # starting NLL far above the uniform one
            nn.init.normal_(self.tok.weight, std=0.02)
            nn.init.normal_(self.pos.weight, std=0.02)
            self.sampled_loss: Any = None  # seq_candidates.TokenSampledLoss: training steps take it (not evaluation)
            self.touched: torch.Tensor | None = None  # token rows the last sampled training forward read (_Adam)
            self.sparse_table = False  # row-wise Adam (_Adam): the table's gradient is sparse, no dense [tokens, d] fill

        def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None, target: torch.Tensor | None = None,
                    reduction: str = "mean", weight: torch.Tensor | None = None) -> torch.Tensor:
            """Logits [B, L, vocab_out] at every position, or [N, vocab_out] at the positions where
            the boolean ``keep`` [B, L] is True (the output projection over the whole vocabulary is
            most of the cost: padding and unused positions skip it). With ``target`` [N] (the
            tokens at the kept positions): their cross-entropy instead, never holding all N x
            vocab_out logits at once (:func:`linear_cross_entropy`; ``weight``: per-target
            weights, the policy gradient's advantages). The loss is taken inside
            ``forward`` so that a DDP wrapper sees one forward per backward."""
            L = x.shape[1]
            e = F.embedding(x, self.tok.weight, 0, sparse=True) if self.sparse_table else self.tok(x)
            h = e + self.pos(torch.arange(L, device=x.device))[None]
            mask = nn.Transformer.generate_square_subsequent_mask(L, device=x.device)
            h = self.enc(h, mask=mask, is_causal=True)
            if keep is not None:
                h = h[keep]
            if target is not None:
                if self.sampled_loss is not None and torch.is_grad_enabled():
                    # sparse: the whole table (a slice's backward is a dense fill), rows < vocab_out anyway
                    W = self.tok.weight if self.sparse_table else self.tok.weight[:vocab_out]
                    loss = self.sampled_loss(self.ln(h), W, target, reduction, weight, sparse=self.sparse_table)
                    # the only table rows with a gradient: the inputs and the loss's candidates
                    self.touched = torch.unique(torch.cat([x.reshape(-1), self.sampled_loss.last_rows]))
                    return loss
                return linear_cross_entropy(self.ln(h), self.tok.weight[:vocab_out], target, reduction, weight)
            return self.project(h)

        def project(self, h: torch.Tensor) -> torch.Tensor:
            return self.ln(h) @ self.tok.weight[:vocab_out].T  # tied output: PAD, items, EOS

        def decode_step(self, x: torch.Tensor, cache: list[list[torch.Tensor]], start: int, project: bool = True) -> torch.Tensor:
            """Incremental decoding (eval mode only: no dropout): run the new tokens ``x`` [B, T]
            at positions ``start..start+T-1`` against the cached keys/values of the earlier ones,
            append theirs to ``cache`` (one [k, v] pair per layer, empty lists at first) and return
            the logits of the LAST position [B, vocab_out] (``project=False``: its normalised state
            [B, d], the query of a candidate search). The same computation as ``forward`` on
            the whole prefix (pre-norm layers, tied output), without re-running the prefix."""
            B, T = x.shape
            h = self.tok(x) + self.pos(torch.arange(start, start + T, device=x.device))[None]
            for layer, kv in zip(self.enc.layers, cache):
                sa = layer.self_attn
                H = sa.num_heads
                dh = h.shape[-1] // H
                q, k, v = F.linear(layer.norm1(h), sa.in_proj_weight, sa.in_proj_bias).chunk(3, -1)
                q, k, v = (t.reshape(B, T, H, dh).transpose(1, 2) for t in (q, k, v))
                if kv:
                    k, v = torch.cat([kv[0], k], 2), torch.cat([kv[1], v], 2)
                kv[:] = [k, v]
                # a causal mask only matters within the block of new tokens (prefill: no cache yet)
                a = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1)
                h = h + sa.out_proj(a.transpose(1, 2).reshape(B, T, -1))
                h = h + layer.linear2(layer.activation(layer.linear1(layer.norm2(h))))
            return self.project(h[:, -1]) if project else self.ln(h[:, -1])

    class Discriminator(nn.Module):
        """Causal: a GRU over the tokens, a real/generated logit after every prefix."""

        def __init__(self) -> None:
            super().__init__()
            d = cfg.embedding_dim
            self.tok = nn.Embedding(n_tokens, d, padding_idx=0)
            self.gru = nn.GRU(d, d, batch_first=True)
            self.out = nn.Linear(d, 1)
            self.sparse_table = False  # as the generator's

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, _ = self.gru(F.embedding(x, self.tok.weight, 0, sparse=True) if self.sparse_table else self.tok(x))
            return self.out(h).squeeze(-1)

    return Generator(), Discriminator()


class _Adam(SplitAdam):
    """Adam for one net: ``torch.optim.Adam`` over every parameter, or, ``row_wise``, dense Adam
    over every parameter but the token table ``net.tok.weight`` plus :class:`RowAdam` over the
    table rows a step read (``step(rows)``). Row-wise runs only with the sampled loss on one
    process (issue 33): then a step's gradient reaches a few hundred of the table's rows, and
    dense Adam's update of every row and both its moments was the part of the generator's step
    that grew with the catalogue. Under DDP each rank reads other rows (its slice, its own
    negatives) and dense Adam stays. Row-wise also makes the table's gradient sparse
    (``net.sparse_table``): a dense one costs zero-filling every row once or more per step
    (the input lookup's, the candidates' and the tied-slice's backward: half the step at 194k
    items), and a sparse one names the rows it reaches itself."""

    def __init__(self, net: nn.Module, lr: float, row_wise: bool) -> None:
        table = net.tok.weight
        net.sparse_table = row_wise
        super().__init__([p for p in net.parameters() if not row_wise or p is not table], table if row_wise else None, lr)


def _clip_grad_norm(net: nn.Module, max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` (which refuses sparse gradients): with a sparse table
    gradient (row-wise Adam) its rows are coalesced and count once each in the norm."""
    params = [p for p in net.parameters() if p.grad is not None]
    if not any(p.grad.is_sparse for p in params):
        torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm)
        return
    with torch.no_grad():
        for p in params:
            if p.grad.is_sparse:
                p.grad = p.grad.coalesce()
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.values() if p.grad.is_sparse else p.grad)
                                                      for p in params]))
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for p in params:
            (p.grad.values() if p.grad.is_sparse else p.grad).mul_(coef)


@dataclass
class WarmStart:
    """A fitted generator (and discriminator) to continue from instead of a random start
    (a refresh on new data). ``vocab``: the saved model's item vocabulary in vocabulary order,
    expressed in the NEW fit's item ids (-1: an item the new histories lack). Token rows of items
    both have are copied; a new item keeps its fresh (small random) row; everything else (position
    table, transformer, norms, the discriminator's GRU) is copied as is, so the saved config's
    shapes must equal this one's."""

    gen: dict[str, Any]
    vocab: np.ndarray
    disc: dict[str, Any] | None = None
    source: str = ""           # where it came from (a run id), for the report


class SequenceGAN:
    """Conditional sequence generator; ``fit`` on TRAINING histories (oldest-first CSR)."""

    def __init__(self, config: SeqGANConfig | None = None) -> None:
        self.cfg = config or SeqGANConfig()
        self.report: dict[str, Any] = {}
        self.rank, self.world = 0, 1
        self._attr_w = self._attr_has = None  # set_item_attributes: what attr_coherence reads

    @property
    def is_writer(self) -> bool:
        """True on the one process that writes results (rank 0; always True without DDP)."""
        return self.rank == 0

    # -- data-parallel helpers (identity with one process) --------------------------------------
    def _gsum(self, t):
        """Sum of a (detached) tensor over the ranks."""
        if self.world == 1:
            return t
        t = t.detach().clone()
        dist.all_reduce(t)
        return t

    def _agree(self, flag: bool) -> bool:
        """True on every rank when it is True on any (stops must be taken together)."""
        if self.world == 1:
            return flag
        return bool(self._gsum(torch.tensor([float(flag)], device=self.device)) > 0)

    def _mine(self, items):
        """This rank's slice of a batch (never empty: a rank with no rows would stall DDP)."""
        part = items[self.rank :: self.world]
        return part if len(part) else items[:1]

    # -- token layout: 0 PAD, 1..V items (vocab order), V+1 EOS, V+2.. segment tokens ----------
    def _encode_rows(self, values: np.ndarray, offsets: np.ndarray, seg: np.ndarray, eos: bool = True) -> list[np.ndarray]:
        V, L = len(self.vocab), self.cfg.max_len
        tok = np.searchsorted(self.vocab, values) + 1
        rows = []
        for i in range(len(offsets) - 1):
            r = tok[offsets[i] : offsets[i + 1]][-L:]  # the newest max_len items
            if self.cfg.reverse:
                r = r[::-1]
            parts = [[V + 2 + int(seg[i])], r] + ([[V + 1]] if eos else [])
            rows.append(np.concatenate(parts).astype(np.int64))
        return rows

    @staticmethod
    def _pad(rows: list[np.ndarray]) -> np.ndarray:
        L = max(len(r) for r in rows)
        out = np.zeros((len(rows), L), np.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    def fit(self, values: np.ndarray, offsets: np.ndarray, warm: WarmStart | None = None) -> "SequenceGAN":
        """``values``/``offsets``: TRAINING histories only (oldest first). Validation and test
        events must not be in them: the vocabulary is taken from these items. ``warm``: start from
        a saved generator/discriminator (:class:`WarmStart`) instead of random weights; the
        config's ``mle_epochs`` / ``adv_steps`` then bound how far training continues, and a
        warm-started discriminator skips its warm-up."""
        cfg = self.cfg
        t0 = time.time()
        values, offsets = np.asarray(values, np.int64), np.asarray(offsets, np.int64)
        lens = np.diff(offsets)
        keep = np.flatnonzero(lens >= 1)
        if len(keep) < 10:
            raise ValueError(f"{len(keep)} non-empty histories: too few to fit a sequence generator")
        prev_threads = torch.get_num_threads()
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        try:
            self.vocab = np.unique(values)  # train-only vocabulary
            self.item_counts = np.bincount(np.searchsorted(self.vocab, values), minlength=len(self.vocab))
            self.tail = tail_items(values, cfg.tail_share)
            seg = history_segments(values, offsets, self.tail)
            self.segment_counts = np.bincount(seg[keep], minlength=len(SEGMENTS))
            self.length_by_segment = {s: np.diff(offsets)[keep][seg[keep] == s] for s in range(len(SEGMENTS))}
            V = len(self.vocab)
            self.n_out, self.n_tok = V + 2, V + 2 + len(SEGMENTS)
            self.rank, self.world = _dist_rank_world()
            dev = pick_device(cfg.device)
            if dev == "cuda" and self.world > 1:
                dev = f"cuda:{torch.cuda.current_device()}"  # init_distributed set this rank's GPU
            self.device = torch.device(dev)
            torch.manual_seed(cfg.seed)
            self.gen, self.disc = _nets(self.n_out, self.n_tok, cfg)
            self._disc_ready = False
            if warm is not None:
                self.report["warm_start"] = self._load_warm(warm)
            self.gen.to(self.device)
            self.disc.to(self.device)
            # training goes through these (DDP wrappers under torchrun); sampling and evaluation
            # use the bare modules, whose weights are the same on every rank
            self._gen_t, self._disc_t = self.gen, self.disc
            if self.world > 1:
                ids = [self.device.index] if self.device.type == "cuda" else None
                self._gen_t = DDP(self.gen, device_ids=ids)
                self._disc_t = DDP(self.disc, device_ids=ids)
            rows = self._encode_rows(values, offsets, seg)
            self._pairs = _transition_pairs(rows, V)
            self._cand_index = None  # seq_candidates' FAISS index over this generator's item rows
            if resolve_loss(cfg.loss, V) == "sampled":
                self.gen.sampled_loss = SC.TokenSampledLoss(SC.target_counts([rows[i] for i in keep], self.n_out), cfg.negatives,
                                                            cfg.seed + 7919 * self.rank)
            rows = [rows[i] for i in keep]
            self.seg_of_rows = seg[keep]
            rng = np.random.default_rng(cfg.seed)
            perm = rng.permutation(len(rows))
            n_hold = max(1, int(len(rows) * cfg.holdout))
            self._hold = [rows[i] for i in perm[:n_hold]]
            self.holdout_rows = np.sort(keep[perm[:n_hold]])  # input rows never fitted on (privacy reference)
            self._train = [rows[i] for i in perm[n_hold:]]
            self.report["nll_start"] = self.heldout_nll()  # before any step: what a warm start brings
            self._mle(rng, t0)
            self.report["nll_mle"] = self.heldout_nll()
            self.report["mle_seconds"] = round(time.time() - t0, 2)
            if cfg.adversarial:
                self._adversarial(rng, t0)
                self.report["nll_after_adversarial"] = self.heldout_nll()
            self.report.update(vocab=int(V), histories=int(len(rows)), device=str(self.device), fit_seconds=round(time.time() - t0, 2),
                               loss=self.loss, generation=self.generation)
            if self.world > 1:
                self.report["ddp"] = {"world": self.world, "backend": str(torch.distributed.get_backend())}
        finally:
            torch.set_num_threads(prev_threads)
            self._gen_t, self._disc_t = self.gen, self.disc  # drop the DDP wrappers
        return self

    def _load_warm(self, warm: WarmStart) -> dict[str, Any]:
        """Copy ``warm``'s weights into the fresh nets, item token rows matched by item id."""
        V = len(self.vocab)
        old = np.asarray(warm.vocab, np.int64)
        Vo = len(old)
        pos = np.searchsorted(self.vocab, old).clip(0, max(V - 1, 0))
        hit = (old >= 0) & (self.vocab[pos] == old)
        old_tok = np.flatnonzero(hit) + 1                        # token ids in the saved layout
        new_tok = pos[hit] + 1                                   # the same items' token ids now
        specials_old = np.r_[0, Vo + 1 : Vo + 2 + len(SEGMENTS)]  # PAD, EOS, segment tokens
        specials_new = np.r_[0, V + 1 : V + 2 + len(SEGMENTS)]
        src_rows = torch.from_numpy(np.r_[old_tok, specials_old].astype(np.int64))
        dst_rows = torch.from_numpy(np.r_[new_tok, specials_new].astype(np.int64))

        def load(net: nn.Module, state: dict[str, Any], what: str) -> None:
            mine = net.state_dict()
            if set(state) != set(mine):
                raise ValueError(f"warm start: the saved {what} has other parameters than this config's")
            out = {}
            for k, v in state.items():
                v = torch.as_tensor(v)
                if k == "tok.weight":
                    if v.shape[0] != Vo + 2 + len(SEGMENTS) or v.shape[1:] != mine[k].shape[1:]:
                        raise ValueError(f"warm start: the saved {what}'s token table {tuple(v.shape)} does not fit "
                                         f"its vocabulary of {Vo} items and this config")
                    t = mine[k].clone()
                    t[dst_rows] = v[src_rows].to(t.dtype)
                    out[k] = t
                elif v.shape != mine[k].shape:
                    raise ValueError(f"warm start: the saved {what}'s {k} is {tuple(v.shape)}, this config's {tuple(mine[k].shape)}")
                else:
                    out[k] = v
            net.load_state_dict(out)

        with torch.no_grad():
            load(self.gen, warm.gen, "generator")
            if warm.disc is not None:
                load(self.disc, warm.disc, "discriminator")
                self._disc_ready = True
        return {"source": warm.source, "items_kept": int(hit.sum()), "items_new": int(V - hit.sum()),
                "items_gone": int(Vo - hit.sum()), "discriminator": warm.disc is not None}

    def state(self) -> dict[str, Any]:
        """What a :class:`WarmStart` needs (besides the vocabulary's keys): both nets' weights (CPU)."""
        return {"gen": {k: v.detach().cpu() for k, v in self.gen.state_dict().items()},
                "disc": {k: v.detach().cpu() for k, v in self.disc.state_dict().items()}}

    # -- maximum likelihood --------------------------------------------------------------------
    def _mle_loss(self, batch: list[np.ndarray], net=None):
        """Mean per-token NLL of ``batch``. With ``net`` a DDP wrapper: this rank's slice, its token
        sum over ALL the batch's tokens times the world size (DDP averages the ranks' gradients),
        so the gradient equals one process's on the whole batch."""
        # logits only where the target is a token (not PAD): the same loss as ignore_index=0 over
        # the padded batch, without projecting the padding onto the vocabulary
        if net is None or self.world == 1:
            x = torch.from_numpy(self._pad(batch)).to(self.device)
            y = x[:, 1:]
            keep = y > 0
            return (self.gen if net is None else net)(x[:, :-1], keep, y[keep])
        n_tok = sum(len(r) - 1 for r in batch)  # every token is >= 1: PAD (0) only pads
        part = batch[self.rank :: self.world]
        w = self.world / n_tok if part else 0.0  # an empty slice still runs (DDP), weight 0
        x = torch.from_numpy(self._pad(part or batch[:1])).to(self.device)
        y = x[:, 1:]
        keep = y > 0
        return net(x[:, :-1], keep, y[keep], "sum") * w

    def heldout_nll(self) -> float:
        """Mean per-token NLL on the held-out TRAINING histories (a likelihood check, not a test)."""
        self.gen.eval()
        tot, n = 0.0, 0
        hold = self._hold[self.rank :: self.world]  # each rank scores its share
        if self.gen.sampled_loss is not None:  # exact NLL on a fixed share: its cost per epoch stays flat
            hold = hold[: SC.NLL_ROWS_SAMPLED]
        with torch.no_grad():
            for s in range(0, len(hold), 512):
                b = hold[s : s + 512]
                k = sum(len(r) - 1 for r in b)
                tot += float(self._mle_loss(b)) * k
                n += k
        if self.world > 1:
            tot, n = self._gsum(torch.tensor([tot, float(n)], dtype=torch.float64, device=self.device)).tolist()
        return round(tot / max(n, 1), 4)

    @property
    def _row_wise(self) -> bool:
        """Row-wise Adam on the token tables (:class:`_Adam`): the sampled loss on one process."""
        return self.gen.sampled_loss is not None and self.world == 1

    def _batches(self, rows: list[np.ndarray], rng: np.random.Generator, bs: int):
        for b in _length_batches(np.array([len(r) for r in rows]), rng, bs):
            yield [rows[i] for i in b]

    def _mle(self, rng: np.random.Generator, t0: float) -> None:
        cfg = self.cfg
        opt = _Adam(self.gen, cfg.lr, self._row_wise)
        best, best_state, bad, hist = math.inf, None, 0, []
        if "warm_start" in self.report:  # a warm start is the best so far: an epoch must beat it
            best, best_state = self.report["nll_start"], {k: v.detach().clone() for k, v in self.gen.state_dict().items()}
        for ep in range(cfg.mle_epochs):
            self._gen_t.train()
            for b in self._batches(self._train, rng, cfg.batch_size):
                loss = self._mle_loss(b, self._gen_t)
                opt.zero_grad()
                loss.backward()
                opt.step(self.gen.touched)
            nll = self.heldout_nll()
            hist.append(nll)
            if self.rank == 0:
                logger.info("sequence GAN, maximum likelihood epoch %d/%d: held-out NLL %.4f (%.0f s)", ep + 1, cfg.mle_epochs,
                            nll, time.time() - t0)
            if nll < best - 1e-4:
                best, bad = nll, 0
                best_state = {k: v.detach().clone() for k, v in self.gen.state_dict().items()}
            else:
                bad += 1
            if self._agree(bool(bad >= cfg.patience or (cfg.max_seconds and time.time() - t0 > cfg.max_seconds * 0.6))):
                break
        if best_state is not None:
            self.gen.load_state_dict(best_state)
        self.report["mle_epochs"] = len(hist)
        self.report["mle_heldout_nll"] = hist

    # -- sampling --------------------------------------------------------------------------------
    def _transitions(self):
        """Row-normalised counts of (previous token -> next item) over the training histories, in
        generation order (newest to oldest when ``reverse``): CSR tensors (row pointers [tokens + 1],
        next-token columns, probabilities)."""
        if getattr(self, "_trans_t", None) is None:
            a, b, c = self._pairs  # sorted by a (np.unique of a * base + b)
            tot = np.bincount(a, weights=c, minlength=self.n_tok)
            ptr = np.r_[0, np.cumsum(np.bincount(a, minlength=self.n_tok))]
            val = (c / np.maximum(tot[a], 1)).astype(np.float32)
            self._trans_t = tuple(torch.from_numpy(np.ascontiguousarray(t)).to(self.device) for t in (ptr, b, val))
        return self._trans_t

    def _transition_entries(self, trans, prev):
        """The transition table's stored entries for the tokens ``prev`` [B], as (batch row, next
        token, probability) triples: a few dozen per row, not a dense [B, vocabulary] row."""
        ptr, col, val = trans
        start = ptr[prev]
        cnt = ptr[prev + 1] - start
        row = torch.repeat_interleave(torch.arange(len(prev), device=prev.device), cnt)
        first = torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt)
        idx = start[row] + torch.arange(int(cnt.sum()), device=prev.device) - first
        return row, col[idx], val[idx]

    @staticmethod
    def _mix_transitions(logits, entries, seen, mix: float):
        """Log-probabilities of ``(1 - mix) softmax(logits) + mix t`` [B, V], ``t`` the transition
        ``entries`` of each row not yet ``seen``, renormalised (rows with none: the softmax alone).
        Exact, and sparse where it can be: off the stored transitions the mixture is the softmax
        times (1 - mix), a shift of the log-softmax; only the entries are mixed in linear space
        (the dense path built a [B, vocabulary] transition row, its softmax and a ``where`` per
        step: generation took twice as long with the mix on)."""
        row, col, val = entries
        val = val.masked_fill(seen[row, col], 0.0)
        tot = torch.zeros(logits.shape[0], device=logits.device).index_add_(0, row, val)
        has = tot > 0
        lp = torch.log_softmax(logits.float(), -1)
        lp.add_(torch.where(has, math.log1p(-mix) if mix < 1 else -math.inf, 0.0)[:, None])
        sel = has[row] & (val > 0)
        r, c = row[sel], col[sel]
        lp[r, c] = (lp[r, c].exp() + mix * val[sel] / tot[r]).log()
        return lp

    def set_item_attributes(self, attributes: dict[int, list[int]]) -> "SequenceGAN":
        """Item attributes (item id -> attribute ids) for ``attr_coherence`` sampling: per token, idf
        weights of its attributes normalised to sum to 1 (an attribute every item has, e.g. the root
        category, weighs ~0), and which token has which attribute. Call after ``fit``."""
        cols = [np.unique(np.asarray(attributes.get(int(i), []), np.int64)) for i in self.vocab]
        n_attr = int(max((c.max() for c in cols if len(c)), default=-1)) + 1
        tok = np.repeat(np.arange(1, len(self.vocab) + 1), [len(c) for c in cols])
        att = np.concatenate(cols) if len(tok) else np.zeros(0, np.int64)
        idf = np.log(len(self.vocab) / np.maximum(np.bincount(att, minlength=n_attr), 1))
        w = idf[att]
        w = w / np.maximum(np.bincount(tok, weights=w, minlength=self.n_out)[tok], 1e-12)
        # dense, attribute-major: a newly seen attribute adds one contiguous row to a row's bonus
        w_t = torch.zeros(max(n_attr, 1), self.n_out)
        w_t[torch.from_numpy(att), torch.from_numpy(tok)] = torch.from_numpy(w.astype(np.float32))
        has = torch.zeros(self.n_out, max(n_attr, 1), dtype=torch.bool)
        has[torch.from_numpy(tok), torch.from_numpy(att)] = True
        self._attr_w, self._attr_has = w_t.to(self.device), has.to(self.device)
        return self

    def _coherence_start(self, x, coherence: float):
        """For token rows ``x`` [B, P]: the attributes their items have [B, attributes] (bool) and
        the ``attr_coherence`` bonus that gives each token [B, outputs]."""
        seen_attr = self._attr_has[x.clamp(max=self.n_out - 1)].any(1)  # PAD, EOS, segments: none
        return seen_attr, (seen_attr.float() @ self._attr_w).mul_(coherence)

    def _coherence_update(self, seen_attr, coh, nxt, coherence: float) -> None:
        """In place: add the tokens ``nxt`` [B] to the rows. Only the attributes new to a row change
        its bonus, one row of weights each (``benchmarks/seq_sampling_ops.py``: 5.4 ms a step at
        512 x 12k tokens with 4 new attributes a row; recomputing the whole product: 26.9 ms)."""
        new_attr = self._attr_has[nxt] & ~seen_attr
        idx = new_attr.nonzero().T  # row-major order: already coalesced
        if idx.shape[1]:
            # sparse [B, attributes] @ dense [attributes, V], in place (index_add_ of the gathered
            # weight rows: ~9x slower, a [new attributes, V] temporary)
            delta = torch.sparse_coo_tensor(idx, torch.ones(idx.shape[1], device=coh.device), new_attr.shape,
                                            check_invariants=False, is_coalesced=True)
            coh.addmm_(delta, self._attr_w, alpha=coherence)
            seen_attr |= new_attr

    def _sample_tokens(self, prompts: np.ndarray, n_new: int, allow_eos: bool, rng_t, ban_seen: bool = True,
                       cached: bool = True, mix: float = 0.0,
                       min_prob: float = 0.0, coherence: float = 0.0, first_log_probs: bool = False,
                       first_logits=None):
        """Autoregressive sampling from equal-length prompts [B, P]; returns [B, P + n_new] tokens
        (after an EOS only PAD follows; fewer columns when every row ended early).

        ``cached`` (the default): incremental decoding, each step runs only the newest token
        against cached keys/values and projects only the last position onto the vocabulary.
        ``cached=False``: the step-by-step reference that re-runs the whole prefix and projects every
        position per token (the original path, kept for tests and ``benchmarks/seq_gan_fit.py
        --compare``). Both draw the same uniform numbers in the same order (one per row and step,
        :func:`_categorical`), so with one seed they emit the same tokens up to float rounding
        (tests/synth/test_seq_gan.py checks it).

        ``mix`` > 0: each step samples from (1 - mix) p_gen + mix p_train(next | previous item),
        the second the training histories' transitions out of the row's previous token (no such
        transition, or all of them banned: p_gen alone). Interpolating a neural model with a
        count-based next-token distribution is kNN-LM's device (Khandelwal et al., ICLR 2020);
        here it is the bigram of the training histories, because generated histories reuse the
        item-to-item transitions real users share far less often than real histories do.

        ``min_prob`` > 0: items below that probability are dropped (epsilon sampling, Hewitt et al.
        2022: the low-probability tail, where an under-fitted softmax puts its incoherent mass);
        the most probable item and EOS stay, so lengths keep their law.

        ``coherence`` > 0 (needs :meth:`set_item_attributes`): + coherence x the idf-weighted share
        of each item's attributes that the row's items so far have (prompt included), on the
        item logits: a product-of-experts prior for keeping to a user's categories and brands.

        ``first_log_probs``: return, instead of tokens, the log-probabilities [B, outputs] of the
        first step's draw, every setting above applied (what :meth:`next_log_probs` reads);
        ``first_logits`` [B, outputs] then stand in for the network's (another model's scores
        under the same sampling settings)."""
        if first_logits is not None and not first_log_probs:
            raise ValueError("first_logits only with first_log_probs (later steps need the network's cache)")
        if cached and first_logits is None and self.generation == "candidates":  # linear cost: FAISS candidate sets
            return SC.sample_tokens(self, prompts, n_new, allow_eos, rng_t, categorical=_categorical, epsilon=_epsilon,
                                    ban_seen=ban_seen, mix=mix, min_prob=min_prob, coherence=coherence,
                                    first_log_probs=first_log_probs)

        x = torch.from_numpy(prompts).to(self.device)
        B = x.shape[0]
        done = torch.zeros(B, dtype=torch.bool, device=self.device)
        seen = torch.zeros(B, self.n_out, dtype=torch.bool, device=self.device)
        if ban_seen:
            p = x.clamp(max=self.n_out - 1)
            seen.scatter_(1, p, (x < self.n_out - 1) & (x > 0))
        trans = self._transitions() if mix > 0 else None  # built outside inference mode (kept across calls)
        if coherence > 0:
            seen_attr, coh = self._coherence_start(x, coherence)
        out = [x]
        cache: list[list[Any]] = [[] for _ in self.gen.enc.layers]
        with torch.inference_mode():
            for step in range(n_new):
                if first_logits is not None:
                    logits = first_logits.to(self.device, torch.float32).clone()
                elif not cached:
                    logits = self.gen(torch.cat(out, 1))[:, -1]
                elif step == 0:  # prefill: the whole prompt once
                    logits = self.gen.decode_step(x, cache, 0)
                else:
                    logits = self.gen.decode_step(out[-1], cache, x.shape[1] + step - 1)
                # in place on [B, vocab] buffers: fresh ones per step would be allocated and
                # page-faulted anew each time (system time)
                if self.cfg.temperature != 1.0:
                    logits.div_(self.cfg.temperature)
                if coherence > 0:
                    logits.add_(coh)
                logits[:, 0] = -math.inf
                if not allow_eos or step == 0:
                    logits[:, self.n_out - 1] = -math.inf
                logits.masked_fill_(seen, -math.inf)
                if mix > 0:
                    prev = (x[:, -1] if step == 0 else out[-1][:, 0]).clamp(max=self.n_tok - 1)
                    logits = self._mix_transitions(logits, self._transition_entries(trans, prev), seen, mix)
                if min_prob > 0.0:
                    logits = _epsilon(logits.float(), min_prob, keep=self.n_out - 1)
                if first_log_probs:
                    return torch.log_softmax(logits.float(), -1)
                nxt = _categorical(logits.float(), rng_t)
                nxt = torch.where(done, torch.zeros_like(nxt), nxt)
                done = done | (nxt == self.n_out - 1)
                seen[torch.arange(B, device=self.device), nxt] = True
                if coherence > 0:
                    self._coherence_update(seen_attr, coh, nxt, coherence)
                out.append(nxt[:, None])
                if bool(done.all()):
                    break
        return torch.cat(out, 1)

    @property
    def generation(self) -> str:
        """``full`` or ``candidates``: how this generator draws (``SeqGANConfig.generation`` resolved)."""
        return SC.resolve_generation(getattr(self.cfg, "generation", "full"), len(self.vocab))

    @property
    def loss(self) -> str:
        """``full`` or ``sampled``: the loss of its training steps (``SeqGANConfig.loss`` resolved)."""
        return "sampled" if self.gen.sampled_loss is not None else "full"

    def _sampling(self) -> dict[str, float]:
        """The config's sampling settings as :meth:`_sample_tokens` takes them (``expand`` and
        ``sample_users``; the adversarial phase samples the generator alone, on-policy):
        ``epsilon`` becomes an absolute probability over this generator's vocabulary."""
        return {"mix": self.cfg.transition_mix, "min_prob": self.cfg.epsilon / max(len(self.vocab), 1),
                "coherence": self.attr_coherence_applied}

    @property
    def attr_coherence_applied(self) -> float:
        """The ``attr_coherence`` sampling uses: the config's once the items' attributes are set, else 0."""
        return self.cfg.attr_coherence if self._attr_w is not None else 0.0

    def _torch_rng(self, seed: int):
        g = torch.Generator(device=self.device)
        g.manual_seed(int(seed))
        return g

    def _decode(self, tok: np.ndarray, start: int) -> list[np.ndarray]:
        """Generated part of each row (from ``start``) -> item ids in generation order."""
        out = []
        V = len(self.vocab)
        for r in tok[:, start:]:
            eos = np.flatnonzero(r == V + 1)
            if len(eos):
                r = r[: eos[0]]
            r = r[(r >= 1) & (r <= V)]
            out.append(self.vocab[r - 1])
        return out

    def sample_users(self, n: int, segment: int | np.ndarray | None = None, seed: int = 0,
                     chunk: int = 512) -> tuple[list[np.ndarray], np.ndarray]:
        """``n`` whole synthetic histories (oldest first) from segment tokens alone; ``segment``:
        one index, one per history, or None (the training segment mix). Returns (histories, segments)."""
        rng = np.random.default_rng(seed)
        if segment is None:
            p = self.segment_counts / self.segment_counts.sum()
            segs = rng.choice(len(SEGMENTS), n, p=p)
        else:
            segs = np.broadcast_to(np.asarray(segment, np.int64), (n,)).copy()
        self.gen.eval()
        g = self._torch_rng(seed)
        out: list[np.ndarray] = []
        V = len(self.vocab)
        for s in range(0, n, chunk):
            prompts = (V + 2 + segs[s : s + chunk])[:, None].astype(np.int64)
            tok = self._sample_tokens(prompts, self.cfg.gen_max_len, True, g, **self._sampling()).cpu().numpy()
            out.extend(self._decode(tok, 1))  # at most gen_max_len items (no EOS by then: cut)
        hists = [h[::-1].copy() if self.cfg.reverse else h for h in out]
        return hists, segs

    def expand(self, values: np.ndarray, offsets: np.ndarray, rows: np.ndarray, n_new: int | np.ndarray,
               seed: int = 0, chunk: int = 512,
               teacher: Callable[[np.ndarray, np.ndarray], Any] | None = None) -> list[np.ndarray]:
        """For each history ``rows`` of the CSR (oldest first) generate ``n_new`` items conditioned
        on it (and on the segment it will have after expansion): prepended when ``reverse``
        (pseudo-prior items), else appended. Items outside the vocabulary are dropped from the
        prompt. Returns the expanded histories (oldest first), at most ``max_len`` items.

        ``teacher``: another next-item model in place of this network (continuations only): called
        with a CSR of histories (item ids, oldest first), it returns their next-item logits
        [histories, largest item id + 1] (column = item id); each item is drawn from them under this
        generator's sampling settings (:meth:`next_log_probs`), one step at a time."""
        if teacher is not None:
            return self._teacher_expand(values, offsets, rows, n_new, teacher, seed, chunk)
        self.gen.eval()
        g = self._torch_rng(seed)
        res: list[np.ndarray | None] = [None] * len(rows)
        for ii, known, prompts, n in self._expansion_batches(values, offsets, rows, n_new, chunk):
            tok = self._sample_tokens(prompts, n, False, g, **self._sampling()).cpu().numpy()
            gen = self._decode(tok, prompts.shape[1])
            for j, i in enumerate(ii):
                h, new = known[j], gen[j]
                full = np.concatenate([new[::-1], h]) if self.cfg.reverse else np.concatenate([h, new])
                res[i] = full[-self.cfg.max_len :]  # the newest max_len
        return [r if r is not None else np.zeros(0, np.int64) for r in res]

    def _teacher_expand(self, values: np.ndarray, offsets: np.ndarray, rows: np.ndarray, n_new: int | np.ndarray,
                        teacher: Callable[[np.ndarray, np.ndarray], Any], seed: int, chunk: int) -> list[np.ndarray]:
        """:meth:`expand` with ``teacher``'s logits in place of the network's, step by step (the
        teacher re-reads each history with the items drawn so far)."""
        if self.cfg.reverse:
            raise ValueError("a teacher predicts the NEXT item: it can only continue histories (reverse=False)")
        if self.generation == "candidates" and hasattr(teacher, "user_vectors"):  # linear cost: FAISS candidates
            return SC.teacher_expand(self, values, offsets, rows, n_new, teacher, seed, chunk, categorical=_categorical, epsilon=_epsilon)
        rows = np.asarray(rows, np.int64)
        n_new = np.broadcast_to(np.asarray(n_new, np.int64), rows.shape)
        in_vocab = np.isin(values, self.vocab)
        cur = [values[offsets[r] : offsets[r + 1]][in_vocab[offsets[r] : offsets[r + 1]]][-self.cfg.max_len :] for r in rows]
        g = self._torch_rng(seed)
        cols = None
        for step in range(int(n_new.max(initial=0))):
            active = np.flatnonzero((n_new > step) & np.array([len(h) > 0 for h in cur]))
            for s in range(0, len(active), 8 * chunk):  # the teacher's logits: [8 chunks, vocabulary] at a time
                part = active[s : s + 8 * chunk]
                v, o = rows_to_csr([cur[i] for i in part])
                logits = teacher(v, o)
                if cols is None:
                    cols = torch.from_numpy(self.vocab.astype(np.int64))
                lp = self.next_log_probs(v, o, np.arange(len(part)), chunk, base_logits=logits[:, cols])
                nxt = self.vocab[_categorical(lp.to(self.device), g).cpu().numpy()]
                for j, i in enumerate(part):
                    cur[i] = np.append(cur[i], nxt[j])[-self.cfg.max_len :]
        return [np.asarray(h, np.int64) for h in cur]

    def next_log_probs(self, values: np.ndarray, offsets: np.ndarray, rows: np.ndarray, chunk: int = 512, base_logits=None):
        """For each history ``rows`` of the CSR: the log-probabilities of the first item
        :meth:`expand` would draw for it (the next item of a forward generator, the one before for
        a reversed one), every sampling setting applied, as a float tensor [len(rows), vocabulary]
        whose column j is item ``vocab[j]`` (the row's own items: -inf). What a generator teaches
        when its samples become training targets: ``benchmarks/seq_teacher.py`` ranks with it.
        ``base_logits`` [len(rows), vocabulary] (vocabulary order): another model's next-item
        scores in place of the network's, under the same sampling settings."""
        rows = np.asarray(rows, np.int64)
        out = torch.full((len(rows), len(self.vocab)), -math.inf)
        self.gen.eval()
        g = self._torch_rng(0)
        for ii, _, prompts, _ in self._expansion_batches(values, offsets, rows, 1, chunk):
            base = None
            if base_logits is not None:
                base = torch.full((len(ii), self.n_out), -math.inf)
                base[:, 1 : self.n_out - 1] = torch.as_tensor(base_logits[torch.from_numpy(ii)], dtype=torch.float32)
            lp = self._sample_tokens(prompts, 1, False, g, first_log_probs=True, first_logits=base, **self._sampling())
            out[torch.from_numpy(ii)] = lp[:, 1 : self.n_out - 1].cpu()  # items only: not PAD, not EOS
        return out

    def _expansion_batches(self, values: np.ndarray, offsets: np.ndarray, rows: np.ndarray, n_new: int | np.ndarray,
                           chunk: int):
        """The prompts :meth:`expand` samples from, in batches of equal prompt length and ``n_new``:
        yields (indices into ``rows``, their known items (oldest first), prompts [b, P], n_new).
        Items outside the vocabulary are dropped; the segment token is the one each history will
        have after ``n_new`` more items."""
        values, offsets = np.asarray(values, np.int64), np.asarray(offsets, np.int64)
        rows = np.asarray(rows, np.int64)
        n_new = np.broadcast_to(np.asarray(n_new, np.int64), rows.shape)
        # membership tests once over the asked rows' items, not once per row (~20k rows at Beauty
        # 25%), nor over the whole CSR (a call for a few rows of a large one paid for all of it)
        lens = offsets[rows + 1] - offsets[rows]
        sub = np.r_[0, np.cumsum(lens)]
        vals = values[np.repeat(offsets[rows] - sub[:-1], lens) + np.arange(sub[-1])]
        in_vocab, in_tail = np.isin(vals, self.vocab), np.isin(vals, self.tail)
        known, fr = [], np.zeros(len(rows))
        for j in range(len(rows)):
            sl = slice(sub[j], sub[j + 1])
            keep = np.flatnonzero(in_vocab[sl])[-self.cfg.max_len :] + sub[j]
            known.append(vals[keep])
            fr[j] = in_tail[keep].mean() if len(keep) else 0.0
        segs = segment_of(np.array([len(h) for h in known]) + n_new, fr)
        # prompts of equal length (and the same n_new) are sampled together
        key = np.array([len(h) for h in known]) * 10_000 + n_new
        for k in np.unique(key):
            idx = np.flatnonzero(key == k)
            for s in range(0, len(idx), chunk):
                ii = idx[s : s + chunk]
                sub_v, sub_o = rows_to_csr([known[i] for i in ii])
                yield ii, [known[i] for i in ii], self._pad(self._encode_rows(sub_v, sub_o, segs[ii], eos=False)), int(n_new[ii[0]])

    # -- adversarial phase ---------------------------------------------------------------------
    def _adversarial(self, rng: np.random.Generator, t0: float) -> None:
        cfg = self.cfg
        V = len(self.vocab)
        g_opt = _Adam(self.gen, cfg.adv_lr, self._row_wise)
        d_opt = _Adam(self.disc, 1e-3, self._row_wise)  # its table too: a step reads the batch's tokens only
        # every rank draws the same segments and real rows (same numpy rng) and takes its slice;
        # its own torch stream samples its share of the fakes (rank 0's is the one-process stream)
        g = self._torch_rng(cfg.seed + 1 + 7919 * self.rank)
        segp = self.segment_counts / self.segment_counts.sum()
        log: list[dict[str, float]] = []
        width = cfg.gen_max_len + 2  # under DDP every rank pads to this (per-position baselines line up)

        def fake_batch(n: int) -> np.ndarray:
            segs = self._mine(rng.choice(len(SEGMENTS), n, p=segp))
            self.gen.eval()
            tok = self._sample_tokens((V + 2 + segs)[:, None].astype(np.int64), cfg.gen_max_len + 1, True, g).cpu().numpy()
            if self.world > 1:
                tok = np.pad(tok, ((0, 0), (0, width - tok.shape[1])))
            return tok

        def real_batch(n: int) -> np.ndarray:
            idx = self._mine(rng.choice(len(self._train), n, replace=False if n <= len(self._train) else True))
            return self._pad([self._train[i][: cfg.gen_max_len + 2] for i in idx])

        def d_loss(real: np.ndarray, fake: np.ndarray):
            xr = torch.from_numpy(real).to(self.device)
            xf = torch.from_numpy(fake).to(self.device)
            if self.world == 1:
                lr_, lf = self.disc(xr), self.disc(xf)
            else:  # one forward through DDP per backward: real and fake stacked (the GRU is causal)
                w = max(xr.shape[1], xf.shape[1])
                both = self._disc_t(torch.cat([F.pad(xr, (0, w - xr.shape[1])), F.pad(xf, (0, w - xf.shape[1]))]))
                lr_, lf = both[: len(xr), : xr.shape[1]], both[len(xr) :, : xf.shape[1]]
            mr, mf = (xr[:, 1:] > 0).float(), (xf[:, 1:] > 0).float()
            # per-prefix scores from the first item on (the segment token alone carries no evidence)
            lr_, lf = lr_[:, 1:], lf[:, 1:]
            # counts over all ranks; x world because DDP averages the ranks' gradients
            cnt = self._gsum(torch.stack([mr.sum(), mf.sum(), ((lr_ > 0).float() * mr).sum(), ((lf < 0).float() * mf).sum()]))
            l_r = (F.binary_cross_entropy_with_logits(lr_, torch.ones_like(lr_), reduction="none") * mr).sum() / cnt[0] * self.world
            l_f = (F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf), reduction="none") * mf).sum() / cnt[1] * self.world
            acc = 0.5 * (float(cnt[2] / cnt[0]) + float(cnt[3] / cnt[1]))
            return l_r + l_f, acc, torch.unique(torch.cat([xr.reshape(-1), xf.reshape(-1)]))

        # warm the discriminator up before its rewards are used (a warm-started one is already)
        for _ in range(0 if self._disc_ready else 10):
            loss, acc, d_rows = d_loss(real_batch(cfg.adv_batch), fake_batch(cfg.adv_batch))
            d_opt.zero_grad()
            loss.backward()
            d_opt.step(d_rows)
        for step in range(cfg.adv_steps):
            if self._agree(bool(cfg.max_seconds and time.time() - t0 > cfg.max_seconds)):
                break
            # generator: REINFORCE with per-prefix discriminator rewards
            fake = fake_batch(cfg.adv_batch)
            x = torch.from_numpy(fake).to(self.device)
            self._gen_t.train()
            keep = x[:, 1:] > 0
            m = keep.float()
            with torch.no_grad():
                r = torch.sigmoid(self.disc(x))[:, 1:] * m
                # discounted returns, right to left
                ret = torch.zeros_like(r)
                acc_r = torch.zeros(r.shape[0], device=r.device)
                for t in range(r.shape[1] - 1, -1, -1):
                    acc_r = r[:, t] + cfg.gamma * acc_r * m[:, t]
                    ret[:, t] = acc_r
                cnt = self._gsum(m.sum(0)).clamp(min=1)  # per-position baseline over the whole batch
                mean = self._gsum((ret * m).sum(0)) / cnt
                std = self._gsum((((ret - mean) ** 2) * m).sum(0)).div(cnt).sqrt().clamp(min=1e-3)
                adv = (ret - mean) / std * m
                n_m, r_sum = self._gsum(torch.stack([m.sum(), r.sum()]))
            # REINFORCE: -sum(adv x log p(sampled token)) = sum(adv x cross-entropy), taken only
            # where a token was sampled, without the full-vocabulary logits (linear_cross_entropy)
            pg = self._gen_t(x[:, :-1], keep, x[:, 1:][keep], "sum", adv[keep] * (self.world / n_m))
            g_opt.zero_grad()
            pg.backward()
            _clip_grad_norm(self.gen, 1.0)
            g_opt.step(self.gen.touched)
            if cfg.mle_every and step % cfg.mle_every == 0:  # interleaved MLE (LeakGAN)
                idx = rng.choice(len(self._train), min(cfg.batch_size, len(self._train)), replace=False)
                loss = self._mle_loss([self._train[i] for i in idx], self._gen_t)
                g_opt.zero_grad()
                loss.backward()
                g_opt.step(self.gen.touched)
            for _ in range(cfg.d_steps):
                dl, acc, d_rows = d_loss(real_batch(cfg.adv_batch), fake_batch(cfg.adv_batch) if _ else fake)
                d_opt.zero_grad()
                dl.backward()
                d_opt.step(d_rows)
            log.append({"step": step + 1, "reward": round(float(r_sum / n_m), 4), "d_acc": round(acc, 4)})
            if self.rank == 0 and ((step + 1) % 20 == 0 or step + 1 == cfg.adv_steps):
                logger.info("sequence GAN, adversarial step %d/%d: reward %.3f, discriminator accuracy %.3f (%.0f s)", step + 1,
                            cfg.adv_steps, log[-1]["reward"], acc, time.time() - t0)
        self.report["adversarial"] = {"steps": len(log), "first": log[:1], "last": log[-1:],
                                      "mean_reward_first10": round(float(np.mean([e["reward"] for e in log[:10]])), 4) if log else None,
                                      "mean_reward_last10": round(float(np.mean([e["reward"] for e in log[-10:]])), 4) if log else None,
                                      "d_acc_last10": round(float(np.mean([e["d_acc"] for e in log[-10:]])), 4) if log else None}


def pseudo_prior_config(**overrides: Any) -> SeqGANConfig:
    """The non-adversarial ASReP-style reversed transformer: MLE only, generating earlier items."""
    return SeqGANConfig(**{"reverse": True, "adversarial": False, **overrides})


def sample_gaps(timestamps_ns: np.ndarray, users: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` inter-event gaps (ns) drawn from the empirical TRAINING gap distribution (gaps between
    consecutive events of the same user); 1 day each when no user has two events."""
    ts = np.asarray(timestamps_ns, np.int64)
    u = np.asarray(users)
    order = np.lexsort((ts, u))
    ts, u = ts[order], u[order]
    same = u[1:] == u[:-1]
    gaps = (ts[1:] - ts[:-1])[same]
    gaps = gaps[gaps > 0]
    rng = np.random.default_rng(seed)
    if len(gaps) == 0:
        return np.full(n, 86_400 * 10**9, np.int64)
    return rng.choice(gaps, n)
