"""Linear-cost paths of the sequence generator (issue 33 item 2): a sampled loss for its training
steps and candidate sets for its draws, so that neither scores every position against the whole
vocabulary.

**Training** (:class:`TokenSampledLoss`): the maximum-likelihood and policy-gradient steps of
:class:`~ecaug_feast.synth.seq_gan.SequenceGAN` take the recommender's sampled softmax with logQ
correction (:mod:`ecaug_feast.sampled_softmax`, the one implementation): the step's targets plus
``negatives`` uniform draws over the output tokens (items and EOS), each logit shifted by -log Q.
``SeqGANConfig.loss`` chooses it by the recommender's rule (``auto``: sampled above
``SAMPLED_ABOVE`` items), so today's pools (Beauty: 12k items) are unchanged by default.
Evaluation (the held-out NLL) stays the exact full softmax; with the sampled loss it reads at most
``NLL_ROWS_SAMPLED`` held-out histories so that its cost per epoch stays flat too.

**Generation** (:func:`sample_tokens`): each step's user vector (the generator's normalised last
state, or a teacher's user tower) is searched in a FAISS inner-product index of the item vectors
(the generator's tied output rows, or the teacher's item tower) for its top ``candidate_k``
items; the candidate set of the row is those, the training transitions out of its previous item
(what ``transition_mix`` mixes in), and EOS. Exact scores on the candidates only, then every
sampling setting of the full path (temperature, ``attr_coherence``, the ban on items already in
the row, ``transition_mix``, epsilon) and one draw, restricted to the candidates: top-K sampling
whose K items come from an index instead of a sort over the vocabulary. With K at least the
vocabulary the candidate set is the vocabulary, and the draws are the full path's
(tests/synth/test_seq_candidates.py).

Approximations, said plainly: mass outside the top K is dropped (renormalised over the
candidates); epsilon compares probabilities normalised over the candidates, not the vocabulary;
the ``attr_coherence`` bonus can lift an item only if it is a candidate. The index is the same
kind as serving's (``recommender.serving.index``: inner product, ``IndexFlatIP`` exact or
``IndexIVFFlat`` with the inner-product metric), rebuilt here because a library may not import the
serving app; while the generator's weights change (the adversarial phase), the index is rebuilt
every ``REFRESH_CALLS`` draws and exact scores always read the current weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ecaug_feast.histories import rows_to_csr
from ecaug_feast.sampled_softmax import SAMPLED_ABOVE, NegativeSampler, sampled_softmax_loss

GENERATIONS = ("full", "candidates", "auto")
INDEXES = ("flat", "ivf", "auto")
IVF_ABOVE = 50_000          # ``candidate_index="auto"``: exact flat search up to this many items, IVF above
NLL_ROWS_SAMPLED = 2048     # held-out histories the NLL reads when the loss is sampled (flat cost per epoch)
REFRESH_CALLS = 8           # draws between index rebuilds while the weights change


def resolve_generation(generation: str, num_items: int) -> str:
    """``full`` or ``candidates``; ``auto`` by the sampled loss's rule (candidates above
    ``SAMPLED_ABOVE`` items)."""
    if generation not in GENERATIONS:
        raise ValueError(f"generation must be one of {', '.join(GENERATIONS)}, got {generation!r}")
    if generation == "auto":
        return "candidates" if num_items > SAMPLED_ABOVE else "full"
    return generation


# -- training ---------------------------------------------------------------------------------------
class TokenSampledLoss:
    """The sampled softmax over the generator's output tokens (0 PAD, 1..V items, V+1 EOS): a
    callable ``(h, W, targets, reduction, weight) -> loss`` that :class:`Generator.forward` takes
    in place of the full cross-entropy while training. ``counts`` [V + 2]: how often each token
    is a target in the training rows (the in-batch candidates' law)."""

    def __init__(self, counts: np.ndarray, negatives: int, seed: int) -> None:
        self.sampler = NegativeSampler(np.asarray(counts, np.float64), negatives=negatives)
        self.rng = np.random.default_rng([seed, 104729])
        self.last_rows: torch.Tensor | None = None  # the rows of W the last call read (row-wise Adam updates only these)

    def __call__(self, h: torch.Tensor, W: torch.Tensor, y: torch.Tensor, reduction: str = "mean",
                 weight: torch.Tensor | None = None, sparse: bool = False) -> torch.Tensor:
        """``sparse``: ``W``'s gradient as a sparse tensor over the candidate rows (row-wise Adam),
        not a dense zero-filled one; the same loss."""
        cand, lq = self.sampler.candidates(y.detach().cpu().numpy(), self.rng)
        ids = np.concatenate([[0], cand])  # row 0 = PAD: target_states reads target row 0 as padding
        rows = torch.from_numpy(ids).to(W.device)
        self.last_rows = rows
        log_q = torch.from_numpy(np.concatenate([[0.0], lq])).to(W.device, torch.float32)
        t = torch.searchsorted(rows, y)
        Wr = torch.nn.functional.embedding(rows, W, sparse=True) if sparse else W[rows]
        return sampled_softmax_loss(h, Wr, t, torch.arange(1, len(ids), device=W.device), log_q, reduction, weight)


def target_counts(rows: list[np.ndarray], n_out: int) -> np.ndarray:
    """[n_out] how often each token is a next-token target in the encoded training rows
    (``[SEG] items... [EOS]``: every token after the first)."""
    if not rows:
        return np.zeros(n_out)
    return np.bincount(np.concatenate([r[1:] for r in rows]), minlength=n_out)[:n_out].astype(np.float64)


# -- the index --------------------------------------------------------------------------------------
class TokenIndex:
    """A FAISS inner-product index over item vectors; ``search(q, k)`` -> [B, k] item positions
    (0-based rows of the indexed matrix; -1 where fewer than k exist)."""

    def __init__(self, vectors: np.ndarray, kind: str = "auto", nprobe: int = 16, seed: int = 0) -> None:
        import faiss

        if kind not in INDEXES:
            raise ValueError(f"candidate_index must be one of {', '.join(INDEXES)}, got {kind!r}")
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        n, d = v.shape
        self.kind = ("ivf" if n > IVF_ABOVE else "flat") if kind == "auto" else kind
        if self.kind == "flat":
            self.index = faiss.IndexFlatIP(d)
        else:
            nlist = max(1, min(n // 39, int(np.sqrt(n))))  # FAISS wants >= 39 training points per centroid
            self.index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            m = min(n, 64 * nlist)
            self.index.train(v[rng.choice(n, m, replace=False)] if m < n else v)
            self.index.nprobe = int(min(nprobe, nlist))
        self.index.add(v)

    def refill(self, vectors: np.ndarray) -> None:
        """The same index (its IVF centroids kept) over new vectors of the same items."""
        self.index.reset()
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        _, idx = self.index.search(np.ascontiguousarray(q, dtype=np.float32), int(k))
        return idx


@dataclass
class _IndexCache:
    index: TokenIndex
    version: tuple[int, int]
    calls: int = 0


def network_index(gan: Any) -> TokenIndex:
    """The generator's index over its item output rows (tokens 1..V), rebuilt when its weights
    changed and ``REFRESH_CALLS`` draws went by (or at first use)."""
    W = gan.gen.tok.weight
    ver = (W.data_ptr(), W._version)
    c: _IndexCache | None = getattr(gan, "_cand_index", None)
    if c is None or (c.version != ver and c.calls >= REFRESH_CALLS):
        vecs = W.detach()[1 : len(gan.vocab) + 1].float().cpu().numpy()
        if c is None:
            c = _IndexCache(TokenIndex(vecs, gan.cfg.candidate_index, seed=gan.cfg.seed), ver)
        else:
            c.index.refill(vecs)
            c.version, c.calls = ver, 0
        gan._cand_index = c
    c.calls += 1
    return c.index


# -- generation -------------------------------------------------------------------------------------
def _coherence_lists(gan: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Per token, its attributes and their weights as padded lists [n_out, m] (``attr_coherence``
    on a candidate set: a few gathers per candidate instead of a dense [B, vocabulary] bonus).
    Cached until :meth:`set_item_attributes` gives new attributes."""
    cached = getattr(gan, "_coh_lists", None)
    if cached is None or cached[0] is not gan._attr_has:
        tok, att = gan._attr_has.nonzero(as_tuple=True)
        cnt = torch.bincount(tok, minlength=gan.n_out)
        m = max(int(cnt.max()) if len(cnt) else 0, 1)
        pos = torch.arange(len(tok), device=tok.device) - torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt)
        idx = torch.zeros(gan.n_out, m, dtype=torch.int64, device=tok.device)
        w = torch.zeros(gan.n_out, m, device=tok.device)
        idx[tok, pos] = att
        w[tok, pos] = gan._attr_w[att, tok]
        gan._coh_lists = (gan._attr_has, idx, w)
    return gan._coh_lists[1], gan._coh_lists[2]


def candidate_sets(top: torch.Tensor, extra_rows: torch.Tensor | None, extra_cols: torch.Tensor | None, eos: int,
                   tail: torch.Tensor | None = None, tail_logw: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row, the sorted candidate tokens [B, C], which columns are real (not padding, not a
    repeat) and each column's log weight: ``top`` [B, K] tokens (0 = none), plus the tokens
    ``extra_cols`` of rows ``extra_rows`` (the transitions), plus ``tail`` [B, S] uniform draws
    standing for the items outside the top K (log weight ``tail_logw`` each; a draw that repeats
    a top-K or transition item is masked, the exact copy kept), plus EOS, which sorts last (the
    largest output token)."""
    B = top.shape[0]
    parts = [top]
    w_parts = [torch.zeros(top.shape, device=top.device)]
    if extra_rows is not None and len(extra_rows):
        cnt = torch.bincount(extra_rows, minlength=B)
        pos = torch.arange(len(extra_rows), device=top.device) - torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt)
        ext = torch.zeros(B, int(cnt.max()), dtype=top.dtype, device=top.device)
        ext[extra_rows, pos] = extra_cols
        parts.append(ext)
        w_parts.append(torch.zeros(ext.shape, device=top.device))
    if tail is not None:
        parts.append(tail)
        w_parts.append(torch.full(tail.shape, float(tail_logw), device=top.device))
    parts.append(torch.full((B, 1), eos, dtype=top.dtype, device=top.device))
    w_parts.append(torch.zeros(B, 1, device=top.device))
    cand, order = torch.sort(torch.cat(parts, 1), dim=1, stable=True)  # stable: an exact copy sorts before a tail draw
    logw = torch.cat(w_parts, 1).gather(1, order)
    real = cand > 0
    real[:, 1:] &= cand[:, 1:] != cand[:, :-1]
    return cand, real, logw


def _in_rows(cand: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """[B, C] whether each candidate is among its row's ``tokens`` [B, T]: a binary search of each
    candidate in its row's sorted tokens (a history holds a few dozen; no [B, vocabulary] mask)."""
    srt = torch.sort(tokens, 1).values
    at = torch.searchsorted(srt, cand).clamp_(max=srt.shape[1] - 1)
    return srt.gather(1, at) == cand


def _epsilon_weighted(logits: torch.Tensor, logw: torch.Tensor, min_prob: float) -> torch.Tensor:
    """The full path's epsilon truncation (``seq_gan._epsilon``) when a column may stand for
    several items (a tail draw of log weight ``logw``): each column is judged by its item's own
    probability (``logits - logw`` against log Z + log ``min_prob``); the best item and the last
    column (EOS) stay. With every weight 0 it is ``_epsilon``."""
    per = logits - logw
    thr = torch.minimum(torch.logsumexp(logits, -1, keepdim=True) + math.log(min_prob), per.max(-1, keepdim=True).values)
    kept = logits[:, -1].clone()
    logits.masked_fill_(per < thr, -math.inf)
    logits[:, -1] = kept
    return logits


def sample_tokens(gan: Any, prompts: np.ndarray, n_new: int, allow_eos: bool, rng_t: torch.Generator, *,
                  categorical: Callable, epsilon: Callable, ban_seen: bool = True, mix: float = 0.0, min_prob: float = 0.0,
                  coherence: float = 0.0, first_log_probs: bool = False,
                  scorer: Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
    """:meth:`SequenceGAN._sample_tokens` on candidate sets (same arguments, same token layout,
    the same one uniform number per row and step). ``categorical``/``epsilon``: the full path's
    draw and truncation (passed in: this module sits below ``seq_gan``).

    ``scorer`` (one step only): ``(prompt tokens [B, P], k) -> (user vectors [B, d], top-k tokens
    [B, k] (0 = none), output vectors [n_out, d] by token)``: another model's search and vectors in
    place of the network's (a teacher, :func:`teacher_scorer`). ``first_log_probs``: the first step's log-probabilities scattered back onto
    [B, outputs] (-inf off the candidates), for tests and :meth:`next_log_probs`."""
    dev = gan.device
    n_out, n_tok, eos = gan.n_out, gan.n_tok, gan.n_out - 1
    V = len(gan.vocab)
    k = min(int(gan.cfg.candidate_k), V)
    n_tail = int(getattr(gan.cfg, "candidate_tail", 0))
    tail_g = torch.Generator().manual_seed(int(rng_t.initial_seed()) + 7919)  # its own stream: rng_t's draws stay the full path's
    x = torch.from_numpy(prompts).to(dev)
    B = x.shape[0]
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    # the row's items so far (prompt items, then draws): what "seen" bans
    toks = torch.where((x > 0) & (x < eos), x, torch.zeros_like(x)) if ban_seen else torch.zeros(B, 1, dtype=x.dtype, device=dev)
    trans = gan._transitions() if mix > 0 else None
    if coherence > 0:
        c_idx, c_w = _coherence_lists(gan)
        seen_attr = gan._attr_has[x.clamp(max=n_out - 1)].any(1)
    W = gan.gen.tok.weight
    out = [x]
    cache: list[list[Any]] = [[] for _ in gan.gen.enc.layers]
    with torch.inference_mode():
        for step in range(n_new):
            if scorer is not None:
                if step:
                    raise ValueError("a scorer gives one step's candidates (later steps need the network's cache)")
                q, top, M = scorer(x, k)
            else:
                q = gan.gen.decode_step(x if step == 0 else out[-1], cache, 0 if step == 0 else x.shape[1] + step - 1, project=False)
                q, M = q.float(), W
                top = torch.from_numpy(network_index(gan).search(q.cpu().numpy(), k) + 1).to(dev).clamp_(min=0)  # row -> token
            prev = (x[:, -1] if step == 0 else out[-1][:, 0]).clamp(max=n_tok - 1)
            entries = gan._transition_entries(trans, prev) if mix > 0 else None
            tail, tail_logw = None, 0.0
            if n_tail and k < V:  # the rest of the vocabulary, by uniform draws weighted (V - K) / S (logQ)
                tail = torch.randint(1, V + 1, (B, n_tail), generator=tail_g, device="cpu").to(dev)
                tail_logw = math.log((V - k) / n_tail)
            cand, real, logw = candidate_sets(top, *(entries[:2] if entries is not None else (None, None)), eos, tail, tail_logw)
            logits = torch.bmm(M[cand].float(), q[:, :, None].float()).squeeze(-1)  # exact scores, candidates only
            if gan.cfg.temperature != 1.0:
                logits.div_(gan.cfg.temperature)
            if coherence > 0:
                ci = c_idx[cand]  # [B, C, m]
                logits.add_((c_w[cand] * seen_attr.gather(1, ci.view(B, -1)).view(ci.shape).float()).sum(-1), alpha=coherence)
            if tail is not None:
                logits.add_(logw)
            seen = _in_rows(cand, toks) & (cand != eos) if ban_seen else torch.zeros_like(real)
            logits.masked_fill_(~real | seen, -math.inf)
            if not allow_eos or step == 0:
                logits[:, -1] = -math.inf
            if mix > 0:
                row, col, val = entries
                cpos = torch.searchsorted(cand[row], col[:, None]).squeeze(1)  # the first (unmasked) copy
                logits = gan._mix_transitions(logits, (row, cpos, val), seen | ~real, mix)
            if min_prob > 0.0 and tail is not None:  # epsilon on each item's own probability, not its draw's weight
                logits = _epsilon_weighted(logits.float(), logw, min_prob)
            elif min_prob > 0.0:
                logits = epsilon(logits.float(), min_prob, keep=logits.shape[1] - 1)
            if first_log_probs:
                lp = torch.full((B, n_out), -math.inf, device=dev)
                ok = real.clone()
                lp[torch.arange(B, device=dev)[:, None].expand_as(cand)[ok], cand[ok]] = (torch.log_softmax(logits.float(), -1) - logw)[ok]
                return lp
            j = categorical(logits.float(), rng_t)
            nxt = cand[torch.arange(B, device=dev), j]
            nxt = torch.where(done, torch.zeros_like(nxt), nxt)
            done = done | (nxt == eos)
            if ban_seen:
                toks = torch.cat([toks, torch.where(nxt == eos, torch.zeros_like(nxt), nxt)[:, None]], 1)
            if coherence > 0:
                seen_attr |= gan._attr_has[nxt]
            out.append(nxt[:, None])
            if bool(done.all()):
                break
    return torch.cat(out, 1)


def teacher_expand(gan: Any, values: np.ndarray, offsets: np.ndarray, rows: np.ndarray, n_new: Any, teacher: Any, seed: int,
                   chunk: int, *, categorical: Callable, epsilon: Callable) -> list[np.ndarray]:
    """:meth:`SequenceGAN._teacher_expand` on candidate sets: each step the teacher's user vectors
    (``teacher.user_vectors(values, offsets)`` [histories, d]) are searched in an index of its item
    vectors (``teacher.item_vectors`` [items + 1, d], row = item id), the top ``candidate_k`` scored
    exactly, and one item drawn under the generator's sampling settings (the same law as the full
    path's on those candidates; the uniform numbers go to the rows in prompt-length groups, so the
    draws are not the full path's one for one)."""
    rows = np.asarray(rows, np.int64)
    n_new = np.broadcast_to(np.asarray(n_new, np.int64), rows.shape)
    R = torch.as_tensor(teacher.item_vectors).detach().float().cpu()
    if len(gan.vocab) and int(gan.vocab.max()) >= R.shape[0]:
        raise ValueError(f"the teacher scores items 1..{R.shape[0] - 1}; the generator's vocabulary reaches item {int(gan.vocab.max())}")
    M = torch.zeros(gan.n_out, R.shape[1])
    M[1 : len(gan.vocab) + 1] = R[torch.from_numpy(gan.vocab.astype(np.int64))]
    index = TokenIndex(M[1 : len(gan.vocab) + 1].numpy(), gan.cfg.candidate_index, seed=gan.cfg.seed)
    M = M.to(gan.device)
    in_vocab = np.isin(values, gan.vocab)
    cur = [values[offsets[r] : offsets[r + 1]][in_vocab[offsets[r] : offsets[r + 1]]][-gan.cfg.max_len :] for r in rows]
    g = gan._torch_rng(seed)
    for step in range(int(n_new.max(initial=0))):
        active = np.flatnonzero((n_new > step) & np.array([len(h) > 0 for h in cur]))
        for s in range(0, len(active), 8 * chunk):
            part = active[s : s + 8 * chunk]
            v, o = rows_to_csr([cur[i] for i in part])
            U = torch.as_tensor(teacher.user_vectors(v, o)).detach().float().cpu()
            nxt = np.zeros(len(part), np.int64)
            for ii, _, prompts, _ in gan._expansion_batches(v, o, np.arange(len(part)), 1, chunk):
                Ui = U[torch.from_numpy(ii)]

                def scorer(x: torch.Tensor, k: int, Ui: torch.Tensor = Ui) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
                    top = torch.from_numpy(index.search(Ui.numpy(), k) + 1).clamp_(min=0)
                    return Ui.to(gan.device), top.to(gan.device), M

                tok = sample_tokens(gan, prompts, 1, False, g, categorical=categorical, epsilon=epsilon, scorer=scorer,
                                    **gan._sampling())
                nxt[ii] = gan.vocab[tok[:, -1].cpu().numpy() - 1]
            for j, i in enumerate(part):
                cur[i] = np.append(cur[i], nxt[j])[-gan.cfg.max_len :]
    return [np.asarray(h, np.int64) for h in cur]

