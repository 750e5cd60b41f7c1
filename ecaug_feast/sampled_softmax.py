"""The one sampled softmax with logQ correction, shared by the recommender and the generator.

``recommender.seq_model`` (the sequence two-tower's training loss) and ``ecaug_feast.synth.seq_gan``
(the generator's maximum-likelihood and policy-gradient steps) both take their sampled loss from
here, with one rule for when it applies (:func:`resolve_loss`: the full softmax up to
``SAMPLED_ABOVE`` outputs). It lives at the bottom layer (numpy and torch only) so that the
generator, a pure-PyTorch library, reuses it without importing TorchRec through the recommender.

Candidates are the batch's own targets (in-batch negatives, drawn in proportion to the data) plus
S sampled items; each logit is corrected by -log Q of its item, as in Yi et al., RecSys 2019,
"Sampling-bias-corrected neural modeling for large corpus item recommendations", with the
in-batch + sampled mixture of Yang et al., WWW 2020, "Mixed negative sampling for learning
two-tower neural networks in recommendations" (the same correction RecBole's and gSASRec's
sampled losses apply). With every item as candidate and no correction it is the full softmax.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

# ``loss="auto"``: the full softmax up to this many items, the sampled one above. The full softmax
# is the more accurate (Beauty, 12k items: SASRec-CE .0977 NDCG@10 against .0921 with 256 sampled
# negatives), but its step scores every position against every item: the training epoch grew
# with exponent 1.99 in benchmarks/scaling.py (1x-16x Beauty), and at 200k items the logits of one
# 128-user batch (about 1,000 target positions x 200k x 4 bytes, plus their gradient) pass 1.5 GB.
# 200k is about the largest catalogue measured there (16x Beauty: 194k items), so below it the
# full softmax's cost is a measured one; above it the sampled loss keeps a step's cost flat.
SAMPLED_ABOVE = 200_000
LOSSES = ("full", "sampled", "auto")


def resolve_loss(loss: str, num_items: int) -> str:
    """``full`` or ``sampled``: ``auto`` resolved by catalogue size (see ``SAMPLED_ABOVE``)."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if loss == "auto":
        return "sampled" if num_items > SAMPLED_ABOVE else "full"
    return loss


def target_states(H: torch.Tensor | Sequence[torch.Tensor], targets: torch.Tensor | Sequence[torch.Tensor]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The states and targets of the positions whose target is an item (target 0 = pad), over
    all chunks when ``H``/``targets`` are lists."""
    if isinstance(H, (list, tuple)):
        return torch.cat([x[t > 0] for x, t in zip(H, targets)]), torch.cat([t[t > 0] for t in targets])
    m = targets > 0
    return H[m], targets[m]


def sampled_logits(h: torch.Tensor, R: torch.Tensor, targets: torch.Tensor, candidates: torch.Tensor,
                   log_q: torch.Tensor | None = None) -> torch.Tensor:
    """[N, 1 + C] logits of the sampled softmax: column 0 the target's own (``targets`` [N]: rows
    of ``R``), then one column per candidate (``candidates`` [C]: rows of ``R``). ``log_q``: per
    row of ``R``, the log of how likely the row was to be among the candidates; every logit is
    shifted by -log Q (logQ correction). A candidate equal to the row's target (an accidental
    hit) is masked, so the target is counted once."""
    pos = (h * R[targets]).sum(-1, keepdim=True)
    neg = h @ R[candidates].T
    if log_q is not None:
        pos = pos - log_q[targets].unsqueeze(1).to(pos.dtype)
        neg = neg - log_q[candidates].unsqueeze(0).to(neg.dtype)
    neg = neg.masked_fill(candidates.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
    return torch.cat([pos, neg], 1)


def sampled_softmax_loss(H: torch.Tensor | Sequence[torch.Tensor], R: torch.Tensor, targets: torch.Tensor | Sequence[torch.Tensor],
                         candidates: torch.Tensor, log_q: torch.Tensor | None = None, reduction: str = "mean",
                         weight: torch.Tensor | None = None) -> torch.Tensor:
    """Sampled softmax with logQ correction: cross-entropy of each target against ``candidates``
    only (:func:`sampled_logits`), over the positions whose target row is not 0 (the pad).
    ``R``, ``targets`` and ``candidates`` index the rows of the output table that the step looked
    up, so the cost does not grow with the catalogue.

    ``reduction``: ``"mean"`` (over those positions, as the full softmax's cross-entropy) or
    ``"sum"``; ``weight`` [positions] (no gradient): each position's loss times its weight, as a
    policy-gradient loss (-advantage x log p) needs."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', not {reduction!r}")
    h, y = target_states(H, targets)
    logits = sampled_logits(h, R, y, candidates, log_q)
    ce = F.cross_entropy(logits, torch.zeros(len(y), dtype=torch.int64, device=logits.device), reduction="none")
    if weight is not None:
        ce = ce * weight.detach().to(ce.dtype)
    return ce.sum() / max(1, len(y)) if reduction == "mean" else ce.sum()


@dataclass
class NegativeSampler:
    """The S sampled negatives of each step and the sampling probability of every candidate.

    Draws come from a mixture: a ``mix`` share in proportion to count^``alpha`` (popularity, 0.75
    as word2vec), the rest uniform over items 1..I. The in-batch candidates (the batch's N targets)
    are draws from the data, in proportion to count. A candidate's expected number of draws is
    E = N * count/total + S * Q_mix; since each candidate appears once (duplicates merged), its
    logQ is the log of its inclusion probability 1 - exp(-E) (the ``unique`` candidate samplers'
    expected count in TensorFlow's sampled softmax).
    """

    counts: np.ndarray  # [I + 1] training-target count per item id (index 0 = pad, ignored)
    negatives: int = 256
    mix: float = 0.0
    alpha: float = 0.75

    def __post_init__(self) -> None:
        c = np.asarray(self.counts, dtype=np.float64)[1:]
        if not 0.0 <= self.mix <= 1.0:
            raise ValueError(f"neg_mix must be in [0, 1], got {self.mix}")
        self.num_items = len(c)
        self._p_data = c / max(c.sum(), 1.0)
        w = c**self.alpha
        self._pop_cdf = np.cumsum(w)
        self._q_mix = (1.0 - self.mix) / self.num_items + self.mix * w / max(w.sum(), 1e-300)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """S item ids (with repeats), the uniform and popularity draws mixed by ``mix``."""
        n_pop = int(rng.binomial(self.negatives, self.mix)) if self.mix > 0 and self._pop_cdf[-1] > 0 else 0
        pop = np.searchsorted(self._pop_cdf, rng.random(n_pop) * self._pop_cdf[-1], side="right") + 1
        uni = rng.integers(1, self.num_items + 1, size=self.negatives - n_pop)
        return np.concatenate([pop, uni]).astype(np.int64)

    def log_q(self, ids: np.ndarray, n_targets: int) -> np.ndarray:
        """log P(item among the candidates) for item ids >= 1, with ``n_targets`` in-batch targets."""
        e = n_targets * self._p_data[ids - 1] + self.negatives * self._q_mix[ids - 1]
        return np.log(-np.expm1(-np.maximum(e, 1e-12)))

    def candidates(self, targets: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One step's candidate set for the (non-pad) ``targets``: the sorted unique ids of the
        targets and S fresh negatives, and log Q of each."""
        ys = np.asarray(targets, np.int64)
        cand = np.unique(np.concatenate([ys, self.sample(rng)]))
        return cand, self.log_q(cand, len(ys))
