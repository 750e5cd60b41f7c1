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
from typing import Any, Callable, Hashable, Sequence

import numpy as np
import pandas as pd

from ecaug_feast import schema as S

from recommender import batching as B
from recommender.serving.components import SeenItems, UserFeatures
from recommender.serving.index import ItemIndex
from recommender.serving.model_bundle import ModelBundle, files_fingerprint

log = logging.getLogger(__name__)

CHECKPOINT_FILES = ("config.json", "model.pt", "catalog.pt")
TRAIN_SOURCE = "train_interactions"  # the FileSource of the training rows (feature_repo/real_views.py)


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


def feast_item_popularity(store: Any, item_ids: Sequence[int], at: pd.Timestamp | None = None) -> pd.Series:
    """Popularity per item as the Feast offline store holds it: the latest ``item_features`` row of
    each item at ``at`` (default now), by a point-in-time join; items without a row get 0.
    Index = ``item_ids``. Read once at startup (a single join over the catalogue)."""
    from ecaug_feast import feast_io

    ids = np.asarray(item_ids, dtype=np.int64)
    at = at if at is not None else pd.Timestamp.now(tz="UTC")
    ent = pd.DataFrame({S.ITEM_ID: ids, S.EVENT_TIMESTAMP: at})
    out = feast_io.historical_features(ent, features=S.refs(feast_io.ITEM_VIEW, [S.POPULARITY]), store=store)
    pop = pd.to_numeric(out[S.POPULARITY], errors="coerce").fillna(0.0).to_numpy(np.float64)
    return pd.Series(pop, index=ids, name=S.POPULARITY)


def feast_seen_items(store: Any, source: str = TRAIN_SOURCE) -> SeenItems:
    """Items each user has in training, from the Feast training interactions source (the
    registry's ``train_interactions`` data source; rows with ``label`` 1, negatives skipped)."""
    from ecaug_feast.errors import EcaugError

    src = store.get_data_source(source)
    path = getattr(src, "path", None)
    if not path:
        raise EcaugError(f"Feast data source '{source}' has no file path; serving reads seen items from a file source")
    if not Path(path).exists():
        raise EcaugError(f"{path}: Feast source '{source}' does not exist (run `ecaug ingest`)")
    from ecaug_feast import feast_io

    df = feast_io.source_rows(path, [S.USER_ID, S.ITEM_ID, S.LABEL])
    df = df[df[S.LABEL] == 1].reset_index(drop=True)
    return SeenItems.from_interactions(df, source=str(path))


ONLINE_CHUNK = 5000  # entity rows per get_online_features call


def feast_item_vectors(store: Any, item_ids: Sequence[int]) -> pd.DataFrame:
    """The online ``item_features_synth`` rows of ``item_ids`` (read through Feast from the online
    store): ``item_id``, ``item_vector``, ``model_version``, ``run_id``; items without a row left out."""
    from ecaug_feast import feast_io

    refs = S.refs(feast_io.ITEM_SYNTH_VIEW, [S.ITEM_VECTOR, S.MODEL_VERSION, S.RUN_ID])
    ids = [int(i) for i in np.asarray(item_ids, dtype=np.int64)]
    frames = []
    for lo in range(0, len(ids), ONLINE_CHUNK):
        part = ids[lo:lo + ONLINE_CHUNK]
        res = store.get_online_features(features=refs, entity_rows=[{S.ITEM_ID: i} for i in part]).to_dict()
        frames.append(pd.DataFrame({S.ITEM_ID: part, S.ITEM_VECTOR: res[S.ITEM_VECTOR],
                                    S.MODEL_VERSION: res[S.MODEL_VERSION], S.RUN_ID: res[S.RUN_ID]}))
    if not frames:
        return pd.DataFrame({c: [] for c in (S.ITEM_ID, S.ITEM_VECTOR, S.MODEL_VERSION, S.RUN_ID)})
    df = pd.concat(frames, ignore_index=True)
    return df[df[S.ITEM_VECTOR].map(lambda v: v is not None and len(v) > 0)].reset_index(drop=True)


def synthetic_item_rows(rows: pd.DataFrame, version: str, num_items: int, dim: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Of the online ``item_features_synth`` rows, those in ``version``'s item space (the job wrote
    them for items that checkpoint never trained on, or beyond its vocabulary of ``num_items``):
    ``(item ids, float32 vectors [n, dim], summary)``. Rows of another checkpoint are not used: a
    vector lies in one model's space."""
    mine = rows[rows[S.MODEL_VERSION] == version] if len(rows) else rows
    ids, vecs = np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    if len(mine):
        arrs = [np.asarray(v, np.float32) for v in mine[S.ITEM_VECTOR]]
        ok = np.array([a.shape == (dim,) and bool(np.isfinite(a).all()) for a in arrs])
        if ok.any():
            ids = mine[S.ITEM_ID].to_numpy(np.int64)[ok]
            vecs = np.stack([a for a, k in zip(arrs, ok) if k])
    info = {"rows": int(len(ids)), "in_vocabulary": int((ids <= num_items).sum()), "new": int((ids > num_items).sum()),
            "other_model": int(len(rows) - len(mine)), "bad": int(len(mine) - len(ids)),
            "runs": sorted({str(r) for r in mine[S.RUN_ID]}) if len(mine) else []}
    if info["other_model"]:
        log.warning("%d synthetic item rows were generated for another checkpoint than %s: not used "
                    "(run `ecaug augment-items` for the model served)", info["other_model"], version)
    return ids, vecs, info


def load_bundle(
    path: str | Path,
    item_popularity: pd.Series | None = None,
    *,
    index_kind: str = "flat",
    item_vectors: Callable[[], pd.DataFrame | None] | None = None,
) -> ModelBundle:
    """Load the checkpoint at ``path`` and embed every catalogue item.

    ``item_popularity``: training interaction count per item id (index = item ids); items not in
    it get popularity 0. ``None`` uses zeros for all (the model then relies on ids/attributes).
    ``item_vectors``: the online ``item_features_synth`` rows (:func:`feast_item_vectors`; None
    when the store could not be read); a sequence model scores cold and new items with their
    generated vectors.
    """
    import torch

    from recommender.checkpoint import load_checkpoint, resolve
    from recommender.inference import item_embeddings

    d = resolve(path)
    version = model_version(d)  # before loading: hashes exactly the files we then read
    model, meta = load_checkpoint(d)
    model.eval()
    if model.cfg.sequential:
        return _sequence_bundle(model, meta, d, version, index_kind, item_vectors)
    n_items = int(model.catalog.num_items)
    ids = np.arange(1, n_items + 1, dtype=np.int64)  # real item ids are contiguous from 1
    pop = np.zeros(n_items, dtype=np.float32)
    if item_popularity is not None:
        pop = item_popularity.reindex(ids, fill_value=0).to_numpy(np.float32)
    with torch.no_grad():
        vecs, vec_ids = item_embeddings(model, pd.DataFrame({"item_id": ids, S.POPULARITY: pop}))
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


def _sequence_bundle(model, meta: dict, d: Path, version: str, index_kind: str,
                     item_vectors: Callable[[], pd.DataFrame | None] | None = None) -> ModelBundle:
    """Sequence two-tower: the item matrix (rows 1..I) is the index (inner product, the training
    score); the user encoder runs the self-attention tower on the online ``recent_items``.

    Generated vectors (``item_features_synth`` rows of this checkpoint, read online) stand in for
    the rows of items the model never trained on, in the index and as the user tower's input (the
    matrix is tied), and items beyond the vocabulary (new since training) join the index with
    theirs; without a row such an item is not in the index."""
    import torch

    from recommender.seq_model import SeqUserEncoder

    enc = SeqUserEncoder(model)
    n_items = int(model.cfg.num_items)
    dim = int(enc.R.shape[1])
    extra_ids, extra_vecs, synth = np.zeros(0, np.int64), np.zeros((0, dim), np.float32), None
    if item_vectors is not None:
        rows = item_vectors()
        if rows is None:  # the online store could not be read
            rows, unread = pd.DataFrame({c: [] for c in (S.ITEM_ID, S.ITEM_VECTOR, S.MODEL_VERSION, S.RUN_ID)}), True
        else:
            unread = False
        ids, vecs, synth = synthetic_item_rows(rows, version, n_items, dim)
        synth["unread"] = unread
        inside = ids <= n_items
        if inside.any():  # the tied matrix: index and user tower both read the generated row
            enc.R[torch.from_numpy(ids[inside])] = torch.from_numpy(vecs[inside])
        extra_ids, extra_vecs = ids[~inside], vecs[~inside]
    vecs = np.concatenate([enc.R[1 : n_items + 1].numpy().astype(np.float32), extra_vecs])
    index = ItemIndex.build(vecs, np.concatenate([np.arange(1, n_items + 1, dtype=np.int64), extra_ids]),
                            metric="ip", kind=index_kind)
    index.search_threads = 1

    def encode(feats: Sequence[UserFeatures]) -> np.ndarray:
        return enc([f.values.get(S.RECENT_ITEMS) for f in feats])

    log.info("loaded %s: %d items (%d generated), dim %d, inner product, sequence user encoder", version, len(index),
             0 if synth is None else synth["rows"], index.dim)
    return ModelBundle(version=version, index=index, encode_users=encode, source=str(d),
                       info={"similarity": "ip", "dim": index.dim, "encoder": "sequence", "model": "sequence",
                             "num_items": n_items, "synthetic_items": synth, "metrics": meta.get("metrics", {})})


class ReferenceUserEncoder:
    """:func:`recommender.inference.user_embeddings` on a DataFrame of the rows (slow, exact)."""

    def __init__(self, model) -> None:
        self.model = model.eval()

    def __call__(self, feats: Sequence[UserFeatures]) -> np.ndarray:
        from recommender.inference import user_embeddings

        return user_embeddings(self.model, user_rows(feats))


def _probe_rows(num_items: int) -> list[UserFeatures]:
    """Rows that exercise every input path: long/empty/None lists, unknown ids, missing numbers."""
    full = {S.N_INTERACTIONS: 4, S.DAYS_SINCE_LAST: 1.5, S.RECENT_ITEMS: [3, 2, 1, num_items + 9],
            S.TOP_ATTRIBUTES: [1, 2, 10_000], S.ATTR_DIVERSITY: 0.7, S.MEAN_ITEM_POPULARITY: 12.0}
    assert set(full) == set(S.USER_FEATURE_COLUMNS), "a probe row must set every user feature"
    return [
        UserFeatures(7, True, full),
        UserFeatures(8, True, {**full, S.RECENT_ITEMS: list(range(1, 30)), S.N_INTERACTIONS: None,
                               S.ATTR_DIVERSITY: float("nan")}),
        UserFeatures(9, True, {**full, S.RECENT_ITEMS: None, S.TOP_ATTRIBUTES: None}),
        UserFeatures(1 << 41, True, {**full, S.RECENT_ITEMS: [], S.DAYS_SINCE_LAST: None}),
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
    which goes through a DataFrame and costs several ms per call), through the public one-row
    encoding of :mod:`recommender.batching` (:func:`~recommender.batching.user_sparse_rows`,
    :func:`~recommender.batching.user_dense_rows`); tests assert both give the same vectors.
    Built once per model; the model stays in eval mode.
    """

    def __init__(self, model) -> None:
        import torch

        self._torch = torch
        self.model = model.eval()
        cfg = model.cfg
        self._mean = np.asarray(cfg.user_dense_mean, dtype=np.float64)
        self._std = np.asarray(cfg.user_dense_std, dtype=np.float64)

    def __call__(self, feats: Sequence[UserFeatures]) -> np.ndarray:
        m = self.model
        recent = [B.int_list(f.values.get(S.RECENT_ITEMS)) for f in feats]
        top = [B.int_list(f.values.get(S.TOP_ATTRIBUTES)) for f in feats]
        uid = np.array([f.user_id for f in feats], dtype=np.int64)
        user = B.user_sparse_rows(recent, top, uid, m.catalog, m.cfg.user_buckets)
        dense = B.user_dense_rows([f.values for f in feats], self._mean, self._std)
        return self._tower(user, dense, len(feats))

    def _tower(self, user: dict, dense: np.ndarray, n: int) -> np.ndarray:
        torch = self._torch
        kjt = B.make_kjt(user, None, n)
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
        table_of = {}
        for tcfg in model.ebc.embedding_bag_configs():
            for feat in tcfg.feature_names:
                table_of[feat] = model.ebc.embedding_bags[tcfg.name]
        self._keys = model.user_bag_keys()
        self._bags = [table_of[k] for k in self._keys]

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
            u = self.model.user_head(torch.cat(parts, dim=1))
        return u.numpy().astype(np.float32, copy=False)

