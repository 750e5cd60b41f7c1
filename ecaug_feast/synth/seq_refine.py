"""The adversarial stage: a trained next-item model refined against a discriminator, held near its start.

The generator starts from the best maximum-likelihood next-item model there is (the real-only
recommender) and is refined as in RLHF-style fine-tuning (Ziegler et al., 2019, "Fine-Tuning
Language Models from Human Preferences", eq. 2): for a prompt x (a real history) and a sampled
continuation y of ``n_new`` items,

    R(x, y) = clip(D(x, y)) - beta * sum_t [log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t)]

where D is the discriminator's log-odds that (x, y) is real and pi_ref the frozen start. The
policy ascends E[R] with REINFORCE (Williams, 1992) and a leave-one-out baseline over ``samples``
continuations of each prompt (Kool et al., 2019, "Buy 4 REINFORCE samples, get a baseline for
free!"; the RLOO of Ahmadian et al., ACL 2024): no value network, and on this short horizon (2
items) PPO's clipping buys little for its extra passes. The discriminator is trained alongside
(real continuation vs sampled, same prompts), as a GAN's is, so the reward follows what still
tells the samples apart. With the KL term the optimum is pi* ~ pi_ref exp(r / beta): it cannot
stray further than the reward it gains, E[r] - beta KL >= E_ref[r], so KL <= (r_max - r_min) / beta.

Episodes come from TRAINING histories only: every cut of a history with ``n_new`` items after it
gives a prompt (at most ``prompt_below - 1`` items before the cut: the short-history lengths the
pools continue) and its real continuation (the ``n_new`` items after the cut). The episodes of a
held-out share of the histories are never trained on: the discriminator accuracy reported is
measured there.

The policy is any ``torch.nn.Module`` called as ``policy(hist, lengths)`` with ``hist`` [B, L]
item ids right-padded with 0 and ``lengths`` [B], returning next-item logits [B, n_items + 1]
(column = item id; column 0, the padding, is never drawn). Items already in the row are not drawn
(``ban_seen``), as the pools draw. Arrays in, arrays out; nothing here imports ``recommender``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.nn import functional as F

from ecaug_feast.histories import csr_rows

logger = logging.getLogger(__name__)


@dataclass
class RefineConfig:
    beta: float = 0.1             # KL penalty (nats of reward per nat of KL), per token as Ziegler et al.
    steps: int = 150              # policy updates
    lr: float = 5e-5              # the policy's Adam step (the recommender trained at 2e-3)
    samples: int = 4              # continuations per prompt (the leave-one-out baseline needs >= 2)
    prompts: int = 64             # prompts per update
    d_steps: int = 1              # discriminator updates per policy update
    d_warmup: int = 100           # discriminator updates against the start before the first policy update
    d_lr: float = 2e-3
    d_dim: int = 32
    d_dropout: float = 0.2
    d_batch: int = 256            # real and as many sampled continuations per discriminator update
    reward_clip: float = 5.0      # |log-odds| cap on D's reward: the KL bound is 2 x this / beta
    holdout: float = 0.1          # share of episodes held out (the reported discriminator accuracy)
    ban_seen: bool = True         # an item already in the row is not drawn (as the pools draw)
    temperature: float = 1.0
    max_seconds: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.samples < 2:
            raise ValueError(f"samples must be >= 2 (the leave-one-out baseline), got {self.samples}")
        if self.steps < 0 or self.prompts < 1 or self.d_steps < 0 or self.d_warmup < 0:
            raise ValueError("steps, d_steps and d_warmup must be >= 0 and prompts >= 1")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Episodes:
    """Prompts (real histories, oldest first), their real continuations [n, n_new] and the
    history row each came from."""

    prompts: list[np.ndarray]
    continuations: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.prompts)

    def take(self, idx: np.ndarray) -> "Episodes":
        return Episodes([self.prompts[i] for i in idx], self.continuations[idx], self.rows[idx])


def episodes_from(values: np.ndarray, offsets: np.ndarray, n_new: int, prompt_below: int) -> Episodes:
    """Every cut of every history with ``n_new`` items after it: the prompt is the newest
    ``prompt_below - 1`` items (at most) before the cut, the continuation the ``n_new`` items after
    it. Short prompts, as the pools' short histories; every cut, not only the last, so that the
    discriminator sees many more real continuations than it could memorise (with the last cut
    only, 25 % of Beauty on 8,000 users gave 1,436 episodes: the discriminator's training
    accuracy rose to .74 while its held-out accuracy stayed at .48)."""
    prompts, conts, rows = [], [], []
    for r, h in enumerate(csr_rows(np.asarray(values, np.int64), np.asarray(offsets, np.int64))):
        for k in range(1, len(h) - n_new + 1):
            prompts.append(h[max(0, k - prompt_below + 1) : k])
            conts.append(h[k : k + n_new])
            rows.append(r)
    return Episodes(prompts, np.asarray(conts, np.int64).reshape(-1, n_new), np.asarray(rows, np.int64))


def _pad(rows: list[np.ndarray], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    lens = np.array([len(r) for r in rows], np.int64)
    x = np.zeros((len(rows), max(width, int(lens.max(initial=1)))), np.int64)
    for i, r in enumerate(rows):
        x[i, : len(r)] = r
    return torch.from_numpy(x), torch.from_numpy(lens)


def _masked_log_probs(policy: nn.Module, x: torch.Tensor, lens: torch.Tensor, ban_seen: bool, temperature: float) -> torch.Tensor:
    """log pi(. | row) [B, n_items + 1] of the rows ``x[:, :lens]``: column 0 and (``ban_seen``) the
    row's own items at -inf."""
    logits = policy(x, lens).float() / temperature
    logits = logits.clone()
    logits[:, 0] = -math.inf
    if ban_seen:
        keep = torch.arange(x.shape[1])[None, :] < lens[:, None]
        rows = torch.arange(len(x))[:, None].expand_as(x)
        logits[rows[keep], x[keep]] = -math.inf
    return torch.log_softmax(logits, -1)


@torch.no_grad()
def sample(policy: nn.Module, prompts: list[np.ndarray], n_new: int, generator: torch.Generator, ban_seen: bool = True,
           temperature: float = 1.0) -> np.ndarray:
    """[len(prompts), n_new] items drawn one at a time from ``policy`` after each prompt."""
    x, lens = _pad(prompts, max(len(p) for p in prompts) + n_new)
    out = torch.zeros(len(prompts), n_new, dtype=torch.int64)
    rows = torch.arange(len(prompts))
    for t in range(n_new):
        lp = _masked_log_probs(policy, x, lens, ban_seen, temperature)
        nxt = torch.multinomial(lp.exp(), 1, generator=generator).squeeze(1)
        out[:, t] = nxt
        x[rows, lens] = nxt
        lens = lens + 1
    return out.numpy()


def _token_log_probs(policy: nn.Module, prompts: list[np.ndarray], cont: np.ndarray, cfg: RefineConfig,
                     full: bool = False) -> torch.Tensor:
    """log pi(y_t | x, y_<t) [n, n_new] of continuations ``cont`` after ``prompts`` (one pass per
    step: the recommender's positions count from the newest item, so a prefix is scored at its own
    length, as it was sampled); with ``full`` the whole distributions [n, n_new, n_items + 1]."""
    n_new = cont.shape[1]
    x, lens = _pad(prompts, max(len(p) for p in prompts) + n_new)
    y = torch.from_numpy(cont)
    rows = torch.arange(len(prompts))
    out = []
    for t in range(n_new):
        lp = _masked_log_probs(policy, x, lens, cfg.ban_seen, cfg.temperature)
        out.append(lp if full else lp.gather(1, y[:, t : t + 1]).squeeze(1))
        x = x.clone()
        x[rows, lens] = y[:, t]
        lens = lens + 1
    return torch.stack(out, 1)


class ContinuationDiscriminator(nn.Module):
    """Real or generated continuation: a GRU over the prompt's and then the continuation's items
    (each item vector plus a prompt / continuation marker plus its training popularity), the
    log-odds of "real" after the last. Popularity is what the gate's detector reads most
    (``quality.seq_metrics``); counted leave-one-out for a real continuation (its own occurrence
    taken out), so that a real item is not told apart by the count it adds itself."""

    def __init__(self, n_items: int, dim: int = 32, dropout: float = 0.2, counts: np.ndarray | None = None) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)  # against memorising the real continuations it is shown again and again
        self.item = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.part = nn.Embedding(2, dim)
        self.pop = nn.Linear(1, dim)
        c = np.zeros(n_items + 1) if counts is None else np.asarray(counts, np.float64)[: n_items + 1]
        self.register_buffer("counts", torch.as_tensor(np.pad(c, (0, n_items + 1 - len(c))), dtype=torch.float32))
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.out = nn.Linear(dim, 1)

    def forward(self, prompts: list[np.ndarray], cont: np.ndarray, real: bool = False) -> torch.Tensor:
        rows = [np.concatenate([p, c]) for p, c in zip(prompts, cont)]
        x, lens = _pad(rows, 1)
        n_prompt = lens - cont.shape[1]
        at = torch.arange(x.shape[1])[None, :]
        part = (at >= n_prompt[:, None]).long()
        # every prompt item is a real training occurrence; a continuation item only when real
        own = ((at < n_prompt[:, None]) | (part.bool() if real else torch.zeros_like(part, dtype=torch.bool))) & (at < lens[:, None])
        pop = torch.log1p((self.counts[x] - own.float()).clamp(min=0.0))[..., None]
        h, _ = self.gru(self.drop(self.item(x) + self.part(part) + self.pop(pop)))  # causal: right padding never reaches a real position
        return self.out(h[torch.arange(len(rows)), lens - 1]).squeeze(-1)


def _auc(real: np.ndarray, fake: np.ndarray) -> float:
    """P(score of a real > score of a fake), ties half."""
    return float(roc_auc_score(np.r_[np.ones(len(real)), np.zeros(len(fake))], np.r_[real, fake]))


class _Trainer:
    """The discriminator's side: batches of real vs sampled continuations, its loss and accuracy."""

    def __init__(self, n_items: int, cfg: RefineConfig, seed: int, counts: np.ndarray | None = None) -> None:
        torch.manual_seed(seed)
        self.disc = ContinuationDiscriminator(n_items, cfg.d_dim, cfg.d_dropout, counts)
        self.disc.eval()  # train mode only inside its own updates
        self.opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.d_lr)
        self.cfg = cfg

    def step(self, policy: nn.Module, eps: Episodes, rng: np.random.Generator, g: torch.Generator,
             fake: tuple[list[np.ndarray], np.ndarray] | None = None) -> float:
        """One update on ``d_batch`` real continuations and as many sampled ones (``fake``: given
        samples instead of fresh ones); returns the batch accuracy."""
        n = min(self.cfg.d_batch, len(eps))
        real = eps.take(rng.choice(len(eps), n, replace=False))
        if fake is None:
            fp = eps.take(rng.choice(len(eps), n, replace=False)).prompts
            fake = (fp, sample(policy, fp, eps.continuations.shape[1], g, self.cfg.ban_seen, self.cfg.temperature))
        self.disc.train()
        lr_, lf = self.disc(real.prompts, real.continuations, real=True), self.disc(*fake)
        self.disc.eval()  # its rewards and held-out scores: no dropout
        loss = F.binary_cross_entropy_with_logits(lr_, torch.ones_like(lr_)) + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf))
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return 0.5 * (float((lr_ > 0).float().mean()) + float((lf < 0).float().mean()))

    @torch.no_grad()
    def auc(self, policy: nn.Module, eps: Episodes, g: torch.Generator) -> float:
        """AUC of real vs sampled continuations of the episodes ``eps`` (held out)."""
        fake = sample(policy, eps.prompts, eps.continuations.shape[1], g, self.cfg.ban_seen, self.cfg.temperature)
        return _auc(self.disc(eps.prompts, eps.continuations, real=True).numpy(), self.disc(eps.prompts, fake).numpy())


def item_counts(values: np.ndarray, n_items: int) -> np.ndarray:
    """[n_items + 1] occurrences of each item id in the TRAINING histories ``values``."""
    v = np.asarray(values, np.int64)
    return np.bincount(v[(v >= 0) & (v <= n_items)], minlength=n_items + 1)


def split_episodes(eps: Episodes, holdout: float, seed: int) -> tuple[Episodes, Episodes]:
    """(fit, held out): the episodes of a seeded ``holdout`` share of the histories are never
    trained on (by history: two cuts of one history share items)."""
    rows = np.unique(eps.rows)
    hold_rows = np.random.default_rng([seed, 17]).permutation(rows)[: int(round(holdout * len(rows)))]
    hold = np.isin(eps.rows, hold_rows)
    return eps.take(np.flatnonzero(~hold)), eps.take(np.flatnonzero(hold))


def discriminator_auc(policy: nn.Module, eps: Episodes, n_items: int, cfg: RefineConfig, steps: int | None = None,
                      seed: int = 0, counts: np.ndarray | None = None) -> float | None:
    """A learned two-sample test of the policy's continuations: a FRESH discriminator trained for
    ``steps`` (default ``cfg.d_warmup``) updates on real vs sampled continuations of the fit share
    of ``eps``, its AUC on the held-out share (.5: cannot tell them apart). None: too few episodes.
    ``counts``: the items' training counts the discriminator reads (:func:`item_counts`)."""
    fit, hold = split_episodes(eps, cfg.holdout or 0.1, cfg.seed)
    if len(fit) < 2 or len(hold) < 10:
        return None
    rng, g = np.random.default_rng([seed, 3]), torch.Generator().manual_seed(seed + 3)
    tr = _Trainer(n_items, cfg, seed + 3, counts)
    for _ in range(cfg.d_warmup if steps is None else steps):
        tr.step(policy, fit, rng, g)
    return round(tr.auc(policy, hold, g), 4)


@torch.no_grad()
def sequence_kl(policy: nn.Module, reference: nn.Module, prompts: list[np.ndarray], n_new: int, cfg: RefineConfig,
                seed: int = 0, chunk: int = 512) -> float:
    """KL(pi || pi_ref) of ``n_new``-item continuations, nats per continuation: the exact per-step
    KL of the next-item distributions, summed along continuations drawn from ``policy`` (an
    unbiased estimate of the sequence KL), averaged over ``prompts``."""
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for s in range(0, len(prompts), chunk):
        part = prompts[s : s + chunk]
        y = sample(policy, part, n_new, g, cfg.ban_seen, cfg.temperature)
        lp = _token_log_probs(policy, part, y, cfg, full=True)
        lq = _token_log_probs(reference, part, y, cfg, full=True)
        p = lp.exp()
        kl = torch.where(p > 0, p * (lp - lq.clamp(min=-1e30)), torch.zeros_like(p)).sum(-1)  # [n, n_new]
        total += float(kl.sum())
    return total / max(len(prompts), 1)


@torch.no_grad()
def next_item_nll(policy: nn.Module, prompts: list[np.ndarray], targets: np.ndarray, cfg: RefineConfig, chunk: int = 512) -> float:
    """Mean -log pi(target | prompt) (the prompts' own items banned when ``cfg.ban_seen``, as the
    pools draw; a target inside its prompt then scores the cap 50 nats)."""
    tot = 0.0
    targets = np.asarray(targets, np.int64)
    for s in range(0, len(prompts), chunk):
        lp = _token_log_probs(policy, prompts[s : s + chunk], targets[s : s + chunk, None], cfg)
        tot += float(lp.clamp(min=-50.0).sum())
    return -tot / max(len(prompts), 1)


@dataclass
class RefineResult:
    policy: nn.Module             # the refined copy (the policy given stays as it was)
    report: dict[str, Any]
    discriminator: ContinuationDiscriminator | None = None  # as the refinement left it (eval mode)


@torch.no_grad()
def realness(disc: ContinuationDiscriminator, prompts: list[np.ndarray], cont: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """The discriminator's log-odds that each continuation ``cont[i]`` of ``prompts[i]`` is real
    (what ``gan_disc_select`` keeps the highest of)."""
    disc.eval()
    out = [disc(prompts[s : s + chunk], cont[s : s + chunk]).numpy() for s in range(0, len(prompts), chunk)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def refine(policy: nn.Module, values: np.ndarray, offsets: np.ndarray, n_items: int, cfg: RefineConfig | None = None,
           n_new: int = 2, prompt_below: int = 8) -> RefineResult:
    """Refine a copy of ``policy`` against a discriminator under the KL penalty to ``policy``
    (module docstring), on episodes of the TRAINING histories ``values``/``offsets`` (CSR, oldest
    first). Deterministic for a seed (on CPU). The report: the settings, episodes, the reward /
    discriminator accuracy / sampled KL of the first and last ten updates, and the discriminator's
    held-out accuracy at the start and the end."""
    cfg = cfg or RefineConfig()
    t0 = time.time()
    eps = episodes_from(values, offsets, n_new, prompt_below)
    if len(eps) < 20:
        raise ValueError(f"{len(eps)} episodes (cuts of training histories with {n_new} items after them): "
                         "too few episodes to refine on (at least 20)")
    fit, hold = split_episodes(eps, cfg.holdout, cfg.seed)
    reference = copy.deepcopy(policy).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    pol = copy.deepcopy(policy).eval()  # eval: no dropout, so the sampled and scored log-probs agree
    for p in pol.parameters():
        p.requires_grad_(True)
    params = [p for p in pol.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    tr = _Trainer(n_items, cfg, cfg.seed, item_counts(values, n_items))
    for _ in range(cfg.d_warmup):
        tr.step(pol, fit, rng, g)
    acc_start = round(_held_acc(tr, pol, hold, g), 4) if len(hold) else None
    log: list[dict[str, float]] = []
    K = cfg.samples
    for step in range(cfg.steps):
        if cfg.max_seconds and time.time() - t0 > cfg.max_seconds:
            break
        idx = rng.choice(len(fit), min(cfg.prompts, len(fit)), replace=False)
        prompts = [fit.prompts[i] for i in idx for _ in range(K)]  # K continuations per prompt, adjacent
        y = sample(pol, prompts, n_new, g, cfg.ban_seen, cfg.temperature)
        with torch.no_grad():
            r = tr.disc(prompts, y).clamp(-cfg.reward_clip, cfg.reward_clip)
            lq = _token_log_probs(reference, prompts, y, cfg)
        lp = _token_log_probs(pol, prompts, y, cfg)
        log_ratio = (lp.detach() - lq).sum(1)          # sampled KL(pi || pi_ref) of each continuation
        R = (r - cfg.beta * log_ratio).view(-1, K)
        adv = (R - (R.sum(1, keepdim=True) - R) / (K - 1)).view(-1)  # leave-one-out baseline
        loss = -(adv * lp.sum(1)).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        d_acc = float("nan")
        for j in range(cfg.d_steps):  # the first update reads this step's samples (drawn before the step)
            d_acc = tr.step(pol, fit, rng, g, None if j else (prompts[: cfg.d_batch], y[: cfg.d_batch]))
        log.append({"step": step + 1, "reward": float(r.mean()), "kl": float(log_ratio.mean()), "d_acc": d_acc})
        if (step + 1) % 25 == 0 or step + 1 == cfg.steps:
            logger.info("refinement step %d/%d: reward %.3f, KL %.4f nats, discriminator accuracy %.3f (%.0f s)", step + 1,
                        cfg.steps, log[-1]["reward"], log[-1]["kl"], d_acc, time.time() - t0)
    pol.eval()
    for p in pol.parameters():
        p.requires_grad_(False)

    def mean(key: str, part: list[dict[str, float]]) -> float | None:
        return round(float(np.nanmean([e[key] for e in part])), 4) if part else None

    report = {"config": cfg.to_dict(), "n_new": n_new, "prompt_below": prompt_below, "episodes": len(eps),
              "held_out": len(hold), "steps": len(log),
              "reward_first10": mean("reward", log[:10]), "reward_last10": mean("reward", log[-10:]),
              "kl_first10": mean("kl", log[:10]), "kl_last10": mean("kl", log[-10:]),
              "d_acc_first10": mean("d_acc", log[:10]), "d_acc_last10": mean("d_acc", log[-10:]),
              "d_heldout_acc_start": acc_start,
              "d_heldout_acc_end": round(_held_acc(tr, pol, hold, g), 4) if len(hold) else None,
              "kl_bound": round(2 * cfg.reward_clip / cfg.beta, 4) if cfg.beta > 0 else None,
              "seconds": round(time.time() - t0, 1)}
    return RefineResult(pol, report, tr.disc.eval())


@torch.no_grad()
def _held_acc(tr: _Trainer, policy: nn.Module, hold: Episodes, g: torch.Generator) -> float:
    """The discriminator's accuracy on held-out real continuations and the policy's samples for them."""
    fake = sample(policy, hold.prompts, hold.continuations.shape[1], g, tr.cfg.ban_seen, tr.cfg.temperature)
    lr_, lf = tr.disc(hold.prompts, hold.continuations, real=True), tr.disc(hold.prompts, fake)
    return 0.5 * (float((lr_ > 0).float().mean()) + float((lf < 0).float().mean()))
