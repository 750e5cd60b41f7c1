"""Turn a two-tower checkpoint into a :class:`ModelBundle`: item-tower embeddings of the whole
catalogue in a FAISS inner-product index + a user encoder over online feature rows.

The towers are L2-normalised when ``model.cfg.normalize`` is set (the default), so inner product
is the cosine the model was trained on (the logits are cosine / temperature: same ranking).
Item-tower inputs are the item's attributes (from the checkpoint's catalogue) and its popularity
= number of training interactions, the value of the latest ``item_features`` row.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Callable, Hashable, Sequence

import numpy as np
import pandas as pd

from recommender.serving.components import UserFeatures
from recommender.serving.index import ItemIndex
from recommender.serving.model_bundle import ModelBundle, files_fingerprint

log = logging.getLogger(__name__)

CHECKPOINT_FILES = ("config.json", "model.pt", "catalog.pt")


def checkpoint_fingerprint(path: str | Path) -> Callable[[], Hashable]:
    """Changes whenever the trainer renames a new checkpoint into place."""
    from recommender.checkpoint import resolve

    d = resolve(path)
    return files_fingerprint(lambda: [d / f for f in CHECKPOINT_FILES])


def model_version(path: Path) -> str:
    """``<dir name>@<first 10 hex of sha256(config.json + model.pt)>``: changes with the weights."""
    h = hashlib.sha256()
    for name in ("config.json", "model.pt"):
        with open(path / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return f"{path.name}@{h.hexdigest()[:10]}"


def user_rows(feats: Sequence[UserFeatures]) -> pd.DataFrame:
    """Online feature rows as the frame the user tower's encoder reads."""
    return pd.DataFrame([{"user_id": f.user_id, **f.values} for f in feats])


def load_bundle(
    path: str | Path,
    item_popularity: pd.Series | None = None,
    *,
    index_kind: str = "flat",
) -> ModelBundle:
    """Load the checkpoint at ``path`` and embed every catalogue item.

    ``item_popularity``: training interaction count per item id (index = item ids); items not in
    it get popularity 0. ``None`` uses zeros for all (the model then relies on ids/attributes).
    """
    import torch

    from recommender.checkpoint import load_checkpoint, resolve
    from recommender.inference import item_embeddings

    d = resolve(path)
    version = model_version(d)  # before loading: hashes exactly the files we then read
    model, meta = load_checkpoint(d)
    model.eval()
    if getattr(model.cfg, "kind", "bag") == "sequence":
        return _sequence_bundle(model, meta, d, version, index_kind)
    n_items = int(model.catalog.num_items)
    ids = np.arange(1, n_items + 1, dtype=np.int64)  # real item ids are contiguous from 1
    pop = np.zeros(n_items, dtype=np.float32)
    if item_popularity is not None:
        pop = item_popularity.reindex(ids, fill_value=0).to_numpy(np.float32)
    with torch.no_grad():
        vecs, vec_ids = item_embeddings(model, pd.DataFrame({"item_id": ids, "popularity": pop}))
    normalize = bool(getattr(model.cfg, "normalize", True))
    index = ItemIndex.build(vecs, vec_ids, metric="cosine" if normalize else "ip", kind=index_kind)
    index.search_threads = 1  # one request = one query: splitting it costs more than it saves

    encode, encoder_name = pick_user_encoder(model)
    log.info("loaded %s: %d items, dim %d, similarity %s, %s user encoder",
             version, len(index), index.dim, index.metric, encoder_name)
    return ModelBundle(
        version=version,
        index=index,
        encode_users=encode,
        source=str(d),
        info={"similarity": index.metric, "dim": index.dim, "encoder": encoder_name,
              "metrics": meta.get("metrics", {})},
    )


def _sequence_bundle(model, meta: dict, d: Path, version: str, index_kind: str) -> ModelBundle:
    """Sequence two-tower: the item matrix (rows 1..I) is the index (inner product, the training
    score); the user encoder runs the self-attention tower on the online ``recent_items``."""
    from recommender.seq_model import SeqUserEncoder

    enc = SeqUserEncoder(model)
    n_items = int(model.cfg.num_items)
    vecs = enc.R[1 : n_items + 1].numpy().astype(np.float32)
    index = ItemIndex.build(vecs, np.arange(1, n_items + 1, dtype=np.int64), metric="ip", kind=index_kind)
    index.search_threads = 1

    def encode(feats: Sequence[UserFeatures]) -> np.ndarray:
        return enc([f.values.get("recent_items") for f in feats])

    log.info("loaded %s: %d items, dim %d, inner product, sequence user encoder", version, len(index), index.dim)
    return ModelBundle(version=version, index=index, encode_users=encode, source=str(d),
                       info={"similarity": "ip", "dim": index.dim, "encoder": "sequence", "model": "sequence",
                             "metrics": meta.get("metrics", {})})


class ReferenceUserEncoder:
    """:func:`recommender.inference.user_embeddings` on a DataFrame of the rows (slow, exact)."""

    def __init__(self, model) -> None:
        self.model = model.eval()

    def __call__(self, feats: Sequence[UserFeatures]) -> np.ndarray:
        from recommender.inference import user_embeddings

        return user_embeddings(self.model, user_rows(feats))


def _probe_rows(num_items: int) -> list[UserFeatures]:
    """Rows that exercise every input path: long/empty/None lists, unknown ids, missing numbers."""
    full = {"n_interactions": 4, "days_since_last": 1.5, "recent_items": [3, 2, 1, num_items + 9],
            "top_attributes": [1, 2, 10_000], "attr_diversity": 0.7, "mean_item_popularity": 12.0}
    return [
        UserFeatures(7, True, full),
        UserFeatures(8, True, {**full, "recent_items": list(range(1, 30)), "n_interactions": None,
                               "attr_diversity": float("nan")}),
        UserFeatures(9, True, {**full, "recent_items": None, "top_attributes": None}),
        UserFeatures(1 << 41, True, {**full, "recent_items": [], "days_since_last": None}),
    ]


def pick_user_encoder(model, atol: float = 1e-5):
    """The fastest encoder that reproduces the reference on probe rows (direct, fast, reference).

    The fast path re-states the user-side encoding of :mod:`recommender.batching`; if that module
    grows a feature the fast path does not know, serving must get slower, not wrong."""
    ref = ReferenceUserEncoder(model)
    rows = _probe_rows(int(model.catalog.num_items))
    expect = ref(rows)
    for name, cls in (("direct", DirectUserEncoder), ("fast", FastUserEncoder)):
        try:
            enc = cls(model)
            # the batch path and the one-row path (what a request uses) must both agree
            got = np.vstack([enc(rows), *(enc([r]) for r in rows)])
            diff = float(np.abs(got - np.vstack([expect, expect])).max())
            if diff <= atol:
                return enc, name
            reason = f"max |{name} - reference| = {diff:.2e}"
        except Exception as exc:  # e.g. an input key or a layer the fast path does not know
            reason = f"{type(exc).__name__}: {exc}"
        log.warning("%s user encoder disagrees with the reference (%s)", name, reason)
    log.warning("serving with the reference user encoder (slow)")
    return ref, "reference"


class FastUserEncoder:
    """The user tower for a handful of online rows, without pandas.

    Same inputs and arithmetic as :func:`recommender.inference.user_embeddings` (the reference,
    which goes through a DataFrame and costs several ms per call); tests assert both give the
    same vectors. Built once per model; the model stays in eval mode.
    """

    KNOWN_KEYS = {"user_id", "last_item", "recent_items", "recent_attributes", "top_attributes"}

    def __init__(self, model) -> None:
        import torch

        from recommender import batching as B

        unknown = set(B.USER_SPARSE) - self.KNOWN_KEYS
        if unknown:
            raise ValueError(f"user features unknown to the fast encoder: {sorted(unknown)}")
        self._torch = torch
        self._B = B
        self.model = model.eval()
        cfg = model.cfg
        self._mean = np.asarray(cfg.user_dense_mean, dtype=np.float64)
        self._std = np.asarray(cfg.user_dense_std, dtype=np.float64)
        self._log = np.array([c in B._LOG_DENSE for c in B.USER_DENSE])

    def _dense(self, feats: Sequence[UserFeatures]) -> np.ndarray:
        x = np.array(
            [[_num(f.values.get(c)) for c in self._B.USER_DENSE] for f in feats], dtype=np.float64
        ).reshape(len(feats), len(self._B.USER_DENSE))
        x[:, self._log] = np.log1p(np.clip(x[:, self._log], 0.0, None))
        return self._B._standardise(x, self._mean, self._std)

    def __call__(self, feats: Sequence[UserFeatures]) -> np.ndarray:
        B, torch, m = self._B, self._torch, self.model
        cat = m.catalog
        n = len(feats)
        recent = [_ints(f.values.get("recent_items"))[: B.MAX_RECENT] for f in feats]
        top = [_ints(f.values.get("top_attributes")) for f in feats]
        rv = np.concatenate(recent) if n else np.zeros(0, np.int64)
        rlen = np.array([len(r) for r in recent], dtype=np.int64)
        ra_v, ra_len_item = cat.attributes_of(rv)
        row_of_item = np.repeat(np.arange(n), rlen)
        ra_len = np.bincount(row_of_item, weights=ra_len_item, minlength=n).astype(np.int64)
        uid = np.array([f.user_id for f in feats], dtype=np.int64)
        user = {
            "user_id": (B.user_bucket(uid, m.cfg.user_buckets), np.ones(n, dtype=np.int64)),
            # the most recent item alone (first of recent_items, which are most recent first)
            "last_item": (B._clip_ids(np.array([r[0] for r in recent if len(r)], dtype=np.int64), cat.num_items),
                          np.minimum(rlen, 1)),
            "recent_items": (B._clip_ids(rv, cat.num_items), rlen),
            "recent_attributes": (B._clip_ids(ra_v, cat.num_attributes), ra_len),
            "top_attributes": (
                B._clip_ids(np.concatenate(top) if n else np.zeros(0, np.int64), cat.num_attributes),
                np.array([len(t) for t in top], dtype=np.int64),
            ),
        }
        user = {k: v for k, v in user.items() if k in B.USER_SPARSE}
        return self._tower(user, self._dense(feats), n)

    def _tower(self, user: dict, dense: np.ndarray, n: int) -> np.ndarray:
        torch = self._torch
        kjt = self._B.make_kjt(user, None, n)
        with torch.inference_mode():
            u, _ = self.model(kjt, torch.from_numpy(dense), None)
        return u.numpy().astype(np.float32, copy=False)


class DirectUserEncoder(FastUserEncoder):
    """:class:`FastUserEncoder` without TorchRec's KJT machinery: each user bag goes straight
    through its ``nn.EmbeddingBag`` (the module the ``EmbeddingBagCollection`` itself calls),
    then the user MLP. About half the CPU of the KJT path for one row; it re-states the user
    branch of ``TwoTower.forward``, so :func:`pick_user_encoder` only uses it when it reproduces
    the reference on probe rows."""

    def __init__(self, model) -> None:
        super().__init__(model)
        cfg = model.cfg
        table_of = {}
        for tcfg in model.ebc.embedding_bag_configs():
            for feat in tcfg.feature_names:
                table_of[feat] = model.ebc.embedding_bags[tcfg.name]
        self._keys = [k for k in self._B.USER_SPARSE if k != "user_id" or cfg.use_user_id]
        self._bags = [table_of[k] for k in self._keys]
        self._adapter = getattr(model, "user_adapter", None) if cfg.adapter_dim > 0 else None

    def _tower(self, user: dict, dense: np.ndarray, n: int) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            parts = []
            for key, bag in zip(self._keys, self._bags):
                v, ln = user.get(key, (np.zeros(0, np.int64), np.zeros(n, np.int64)))
                if n == 1:  # one request: a gather + mean is ~10x cheaper than embedding_bag's set-up
                    w = bag.weight
                    parts.append(w[torch.from_numpy(v)].mean(0, keepdim=True) if len(v)
                                 else w.new_zeros((1, w.shape[1])))
                    continue
                offsets = np.zeros(n + 1, dtype=np.int64)
                np.cumsum(ln, out=offsets[1:])
                if not bag.include_last_offset:  # TorchRec builds its bags with it set
                    offsets = offsets[:-1]
                parts.append(bag(torch.from_numpy(v), torch.from_numpy(offsets)))
            parts.append(torch.from_numpy(dense))
            u = self.model.user_mlp(torch.cat(parts, dim=1))
            if self._adapter is not None:
                u = self._adapter(u)
            u = self.model._norm(u)
        return u.numpy().astype(np.float32, copy=False)


def _ints(v) -> np.ndarray:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return np.zeros(0, dtype=np.int64)
    return np.asarray(v, dtype=np.int64).reshape(-1)


def _num(v) -> float:
    try:
        return float(v) if v is not None else np.nan
    except (TypeError, ValueError):
        return np.nan
