"""The cold-item job (issue 34): train the sequence model on a cold-item split's warm interactions,
and give its cold items vectors from an item generator (``synth.item_gen.ITEM_GENERATORS``).

The study (``ecaug_feast.study.cold``) calls these two steps; it never imports the generator
itself (layer rule 1). The training split of the workspace's dataset already holds no cold item
(``datasets.split.cold_item_split``), so Feast's features never saw one; here the cold items are
also kept out of the training softmax (``excluded_items``): at training time they do not exist,
so they are neither targets nor negatives.

- ``item_tower="id"`` with ``use_attributes=False``: the id-only model. A cold item keeps its
  untrained (random) id row: the floor.
- ``item_tower="attr"``: attributes -> MLP, plus the id row for warm items only, dropped at random
  in training (``id_dropout``, DropoutNet): a cold item is scored by its attributes alone.
- :func:`generated_vectors`: a generator fitted on the warm items' trained rows of a model (GAR:
  adversarially) writes the cold items' rows (``SeqTwoTower.set_item_vectors``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ecaug_feast.errors import EcaugError
from ecaug_feast.jobs.train import load_real, run_training
from ecaug_feast.jobs.workspace import Workspace
from recommender import seq_train
from recommender.checkpoint import data_read_now, named_dir, save_checkpoint
from recommender.seq_model import SeqTwoTower

TOWERS = ("id", "attr")


def train_cold(ws: Workspace, dataset: str, cold_items: np.ndarray, name: str, item_tower: str = "id",
               use_attributes: bool = False, id_dropout: float = 0.0, epochs: int = 60, batch_size: int = 128,
               embedding_dim: int = 64, seed: int = 0, save: bool = True) -> dict[str, Any]:
    """Train one sequence model of the cold-item study on the workspace's ``dataset`` (read
    through Feast), early stopping on its validation split; returns ``{"model", "valid", "epochs",
    "seconds", "checkpoint"}`` (the model in memory: the study scores it without a reload)."""
    if item_tower not in TOWERS:
        raise EcaugError(f"item_tower must be one of {', '.join(TOWERS)}, got {item_tower!r}")
    out_dir = named_dir(name) if save else None
    read = data_read_now()  # the training-data cut-off (augment-items' warm items), before the read
    data, valid, _ = load_real(ws, dataset, "feast", examples=False)
    cold = np.unique(np.asarray(cold_items, np.int64))
    try:
        mcfg = seq_train.seq_config_for(data, embedding_dim=embedding_dim, item_tower=item_tower,
                                        use_attributes=use_attributes or item_tower == "attr", id_dropout=id_dropout)
    except ValueError as exc:
        raise EcaugError(f"cold-item model: {exc}") from None
    if len(cold) and (cold.min() < 1 or cold.max() > mcfg.num_items):
        raise EcaugError(f"cold items must lie in 1..{mcfg.num_items} (the catalogue), got {cold.min()}..{cold.max()}")
    init = None
    if item_tower == "attr":
        known = torch.ones(mcfg.num_items + 1, dtype=torch.bool)
        known[torch.from_numpy(cold)] = False
        init = {"id_known": known}
    tcfg = seq_train.SeqTrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, threads=1)
    res = run_training(lambda: seq_train.train_seq(data, valid, mcfg, tcfg, init_state=init, excluded_items=cold), dataset)
    path = None
    if out_dir is not None:
        path = str(save_checkpoint(out_dir, res.state, mcfg, res.model.catalog, train=seq_train.config_dict(tcfg, mcfg.num_items),
                                   metrics={"valid": res.best_valid},
                                   data={"dataset": dataset, "source": "feast", "cold_items": int(len(cold)), **read}))
    return {"model": res.model, "data": data, "valid": res.best_valid, "epochs": res.best_epoch, "seconds": round(res.seconds, 1),
            "checkpoint": path}


def generated_vectors(model: SeqTwoTower, data: Any, cold_items: np.ndarray, generator: str = "gar",
                      settings: dict[str, Any] | None = None, seed: int = 0, max_users: int = 4096) -> dict[str, Any]:
    """Fit item generator ``generator`` on ``model``'s trained rows of the warm items (the items
    with a training interaction) and the user states of up to ``max_users`` training histories,
    then write its vectors for ``cold_items`` into the model (``set_item_vectors``). Returns the
    generator's report."""
    try:
        from ecaug_feast.synth.item_gen import ITEM_GENERATORS
    except ImportError:
        raise EcaugError(f"item generator {generator!r}: ecaug_feast/synth/item_gen.py is not available") from None
    if generator not in ITEM_GENERATORS:
        raise EcaugError(f"unknown item generator {generator!r} (choose from {', '.join(ITEM_GENERATORS)})")
    cls = ITEM_GENERATORS[generator]
    cfg = dict(settings or {})
    if "seed" in getattr(cls.config_class, "__dataclass_fields__", {}):
        cfg.setdefault("seed", seed)
    try:
        gen = cls(cls.config_class(**cfg))
    except TypeError as exc:
        raise EcaugError(f"item generator {generator!r}: bad settings ({exc})") from None
    cold = np.unique(np.asarray(cold_items, np.int64))
    counts = np.bincount(data.train["item_id"].to_numpy(np.int64), minlength=model.cfg.num_items + 1)[: model.cfg.num_items + 1]
    warm = np.flatnonzero(counts > 0)
    warm = warm[(warm >= 1) & ~np.isin(warm, cold)]
    model.eval()
    with torch.no_grad():
        R = model.item_matrix().float()
        hist = seq_train.histories_for(data, model.cfg, "valid")
        users = hist.user_ids[hist.lengths > 0]
        if len(users) > max_users:
            users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
        U = seq_train.user_vectors(model, R, hist, users).numpy()
    cat = model.catalog
    gen.fit(cat, warm, R[torch.from_numpy(warm)].numpy(), user_vecs=U)
    vecs = gen.generate(cat, cold)
    model.set_item_vectors(cold, vecs)
    return {"generator": generator, "warm_items": int(len(warm)), "cold_items": int(len(cold)), **dict(gen.report)}
