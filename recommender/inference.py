"""Embeddings from feature rows, for evaluation and serving (no gradients, CPU, chunked).

    model, meta = load_checkpoint(path)
    U = user_embeddings(model, user_rows)          # rows of the Feast view ``user_features``
    V, ids = item_embeddings(model, item_rows)     # rows of ``item_features`` (one per item)
    scores = U @ V.T                               # = training score x temperature (same ranking)

With ``model.cfg.normalize`` (the default) both sides are L2-normalised, so inner product = cosine:
a FAISS ``IndexFlatIP`` over ``V`` ranks exactly as the model does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from recommender.batching import Encoded, ItemCatalog, encode_items, encode_users, make_kjt
from recommender.model import TwoTower


def encode_user_rows(model: TwoTower, rows: pd.DataFrame, catalog: ItemCatalog | None = None) -> Encoded:
    """Encode ``user_features`` rows with the model's normalisation stats."""
    cfg = model.cfg
    cat = catalog or model.catalog
    return encode_users(rows, cat, user_buckets=cfg.user_buckets, mean=cfg.user_dense_mean, std=cfg.user_dense_std)


def encode_item_rows(model: TwoTower, rows: pd.DataFrame, catalog: ItemCatalog | None = None) -> Encoded:
    cfg = model.cfg
    cat = catalog or model.catalog
    return encode_items(rows, cat, mean=cfg.item_dense_mean, std=cfg.item_dense_std)


@torch.no_grad()
def embed_encoded(model: TwoTower, enc: Encoded, side: str, chunk: int = 4096) -> np.ndarray:
    """Tower outputs for every encoded row: float32 [n, out_dim]."""
    was_training = model.training
    model.eval()
    out = []
    for s in range(0, enc.n, chunk):
        rows = np.arange(s, min(s + chunk, enc.n))
        sparse, dense = enc.take(rows)
        kjt = make_kjt(sparse if side == "user" else None, sparse if side == "item" else None, len(rows))
        d = torch.from_numpy(dense)
        u, v = model(kjt, d if side == "user" else None, d if side == "item" else None)
        out.append((u if side == "user" else v).numpy())
    model.train(was_training)
    dim = model.cfg.out_dim
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, dim), dtype=np.float32)


def user_embeddings(model: TwoTower, rows: pd.DataFrame) -> np.ndarray:
    """User-tower vectors for rows with ``recent_items``, ``top_attributes``, ``n_interactions``,
    ``days_since_last``, ``attr_diversity``, ``mean_item_popularity`` and optionally ``user_id``
    (absent/unknown -> the shared unknown-user bucket). Missing numeric values count as average."""
    return embed_encoded(model, encode_user_rows(model, rows), "user")


def item_embeddings(model: TwoTower, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Item-tower vectors for rows with ``item_id``, ``popularity`` and optionally ``attributes``
    (else taken from the checkpoint's catalog). Returns ``(vectors, item_ids)``."""
    enc = encode_item_rows(model, rows)
    return embed_encoded(model, enc, "item"), enc.ids
