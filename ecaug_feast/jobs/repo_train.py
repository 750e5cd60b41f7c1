"""``train_repo`` / ``finetune_repo``: the product's sequence model trained from a shop's own Feast
repo (issue 31 item 4; docs/CONTRACT.md §8, "A shop's models").

The repo names its event source and declares its twin with :func:`ecaug_feast.plugin.synthetic_events`
(user key, item key and their types: String, Int64 or Int32). Then:

1. checks before any reading or fitting, one line each: the checkpoint name, the event source
   and its twin, the key types, ``--history VIEW:FIELD`` (a list feature of the shop's item keys
   on a view keyed by the events' user key: what serving reads online);
2. the events are read through the shop's offline store (``plugin.read_events``) and split first,
   leave-last-out (``datasets.split.event_log_split``: each user's last event is test, the one
   before validation; the split ``ecaug augment --repo --events`` uses, so no synthetic history
   holds a real user's held-out event);
3. vocabulary: :class:`recommender.item_keys.ItemKeys` of the shop's item keys (every key of the
   source, in sorted order, of the declared type); fine-tuning keeps its checkpoint's;
4. training is the product's: ``jobs.train.fit_sequence`` for ``train_repo``, the pre-train ->
   fine-tune protocol of ``jobs.finetune.sequence_stages`` for ``finetune_repo``, whose synthetic
   histories are the twin's active run read by ``plugin.training_rows(events=...)``;
5. the checkpoint goes to ``ws.models_dir/<name>`` (``<state>/repos/<project>/models``) with
   ``item_keys.json`` and ``config.json`` ``data.repo = {project, events, user_key, item_key,
   user_dtype, item_dtype, history}``; validation and test NDCG@10 / Recall@10 are scored on the
   shop's held-out events (full ranking, training items excluded).

``ecaug train --repo R --events SRC [--history VIEW:FIELD]`` and ``ecaug finetune --repo R
--events SRC`` run them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
import pandas as pd

from ecaug_feast import feast_io, plugin
from ecaug_feast import schema as S
from ecaug_feast.datasets.split import event_log_split
from ecaug_feast.errors import EcaugError
from ecaug_feast.jobs.workspace import Workspace, repo_project
from ecaug_feast.names import owned_child

if TYPE_CHECKING:
    from feast import FeatureStore

    from recommender.item_keys import ItemKeys

# a twin's declared Feast key type -> ItemKeys dtype (the key types a shop's repo may use)
KEY_DTYPES = {"String": "string", "Int64": "int64", "Int32": "int32"}


@dataclass(frozen=True)
class ShopEvents:
    """A shop's event source as its twin declares it, checked."""

    store: "FeatureStore"
    project: str
    events: str
    source: Any
    user: str
    item: str
    user_dtype: str
    item_dtype: str

    def meta(self, history: dict[str, str] | None) -> dict[str, Any]:
        """``config.json``'s ``data.repo`` (docs/CONTRACT.md §8)."""
        return {"project": self.project, "events": self.events, "user_key": self.user, "item_key": self.item,
                "user_dtype": self.user_dtype, "item_dtype": self.item_dtype, "history": history}


def open_events(ws: Workspace, events: str) -> ShopEvents:
    """The event source ``events`` of the workspace's repo and its declared keys (one line when
    the repo, the source, its twin or a key type is wrong). Reads the registry only."""
    if ws.repo_dir is None:
        raise EcaugError("--events needs --repo (a shop's own Feast repo)")
    project = repo_project(ws.repo_dir)
    store = feast_io.get_store(ws.repo_dir)
    source, _twin, (user, item, user_type, item_type) = plugin.find_event_twin(store, events)
    for what, key, t in (("user", user, user_type), ("item", item, item_type)):
        if t not in KEY_DTYPES:
            raise EcaugError(f"--events {events}: {what} key {key!r} declared {t}; the sequence model reads String, Int64 or Int32 keys")
    return ShopEvents(store, project, events, source, user, item, KEY_DTYPES[user_type], KEY_DTYPES[item_type])


def check_history(shop: ShopEvents, history: Optional[str]) -> dict[str, str] | None:
    """``VIEW:FIELD`` -> ``{"view", "field"}``, checked: a registered view keyed by the events'
    user key whose ``FIELD`` is a list of the item key's type (what serving reads online)."""
    if history is None:
        return None
    view_name, sep, field = history.partition(":")
    if not sep or not view_name or not field:
        raise EcaugError(f"--history {history!r}: expected VIEW:FIELD (a list feature of the user's recent item keys)")
    try:
        view = shop.store.get_feature_view(view_name)
    except Exception:  # noqa: BLE001 - Feast's not-found error: one line
        raise EcaugError(f"--history {history}: no feature view {view_name!r} in {shop.store.config.repo_path}") from None
    keys = [c.name for c in view.entity_columns]
    if keys != [shop.user]:
        raise EcaugError(f"--history {history}: view {view_name!r} is keyed by {keys}, the events' users by {shop.user!r}")
    feats = {f.name: f for f in view.features}
    if field not in feats:
        raise EcaugError(f"--history {history}: view {view_name!r} has no feature {field!r} (has: {', '.join(sorted(feats))})")
    want = {"string": "Array(String)", "int64": "Array(Int64)", "int32": "Array(Int32)"}[shop.item_dtype]
    if str(feats[field].dtype) != want:
        raise EcaugError(f"--history {history}: {field!r} is {feats[field].dtype}; the item keys ({shop.item!r}) need {want}")
    return {"view": view_name, "field": field}


def _item_keys(shop: ShopEvents, values: pd.Series) -> "ItemKeys":
    """ItemKeys of every item key of the source (sorted), checked against the declared type."""
    from recommender.item_keys import ItemKeys

    uniq = pd.unique(values.dropna())
    where = f"--events {shop.events}, column {shop.item!r}"
    if shop.item_dtype == "string":
        bad = [v for v in uniq if not isinstance(v, str)]
        if bad:
            raise EcaugError(f"{where}: key {_shown(bad[0])} is not a string but the twin declares String item keys")
    elif not all(isinstance(v, (int, np.integer)) for v in uniq):
        bad = next(v for v in uniq if not isinstance(v, (int, np.integer)))
        raise EcaugError(f"{where}: key {_shown(bad)} is not an integer but the twin declares {shop.item_dtype.capitalize()} item keys")
    return ItemKeys.from_values(sorted(uniq), shop.item_dtype)


def _shown(v: Any) -> str:
    """A key as the shop wrote it (``3``, ``'sku-1'``), not numpy's ``np.int64(3)``."""
    return repr(v.item() if isinstance(v, np.generic) else v)


@dataclass
class ShopData:
    """The shop's events as the trainers read them: ``TrainData`` (items 1..n of ``keys``), the
    validation and test sets (each user's second to last and last events) and the counts."""

    data: Any
    valid: Any
    test: Any
    keys: "ItemKeys"
    facts: dict[str, Any]


def read_shop_events(shop: ShopEvents) -> pd.DataFrame:
    """Every real event of the shop's source (user, item, timestamp), read by its offline store."""
    return plugin.read_events(shop.store, shop.source, shop.user, shop.item)


def shop_data(shop: ShopEvents, keys: "ItemKeys | None" = None, ev: pd.DataFrame | None = None) -> ShopData:
    """Read (unless ``ev``, the events :func:`read_shop_events` gave, is passed), split first, number
    items by ``keys`` (default: every item key of the source). With given ``keys`` (a
    checkpoint's), events of items it does not know are dropped after the split."""
    from ecaug_feast.jobs.train_data import build_in_memory
    from recommender.evaluate import make_eval_set

    ts = shop.source.timestamp_field
    ev = read_shop_events(shop) if ev is None else ev
    if ev[shop.user].isna().any() or ev[shop.item].isna().any():
        raise EcaugError(f"--events {shop.events}: events without a user or item key ({shop.user!r}, {shop.item!r})")
    labels = event_log_split(ev[shop.user], ev[ts])  # split first: the held-out events never train
    keys = keys or _item_keys(shop, ev[shop.item])
    users = np.sort(pd.unique(ev[shop.user]))
    frame = pd.DataFrame({S.USER_ID: np.searchsorted(users, ev[shop.user].to_numpy()).astype(np.int64),
                          S.ITEM_ID: keys.index_of(ev[shop.item].tolist()),
                          S.EVENT_TIMESTAMP: pd.to_datetime(ev[ts], utc=True).to_numpy(), "split": labels})
    known = frame[S.ITEM_ID].to_numpy() > 0
    frame = frame[known]
    parts = {s: frame[frame["split"] == s].drop(columns="split").reset_index(drop=True) for s in ("train", "valid", "test")}
    if len(parts["train"]) == 0:
        raise EcaugError(f"--events {shop.events}: no training events")
    items = pd.DataFrame({S.ITEM_ID: np.arange(1, keys.num_items + 1, dtype=np.int64), S.ATTRIBUTES: [[] for _ in range(keys.num_items)]})
    data = build_in_memory(parts["train"], items, parts["valid"])
    data.info["source"] = f"repo {shop.project}, events {shop.events}"
    valid = make_eval_set(parts["valid"], [parts["train"]])
    test = make_eval_set(parts["test"], [parts["train"], parts["valid"]])
    facts = {"users": int(len(users)), "items": keys.num_items, "real_events": int(len(ev)),
             "train_events": int(len(parts["train"])), "held_out_events": int(len(parts["valid"]) + len(parts["test"])),
             "unknown_item_events": int((~known).sum()), "valid_users": int(valid.n), "test_users": int(test.n)}
    return ShopData(data, valid, test, keys, facts)


def checkpoint_dir(ws: Workspace, name: str) -> Path:
    """A checkpoint of the shop's repo: a bare name under ``ws.models_dir`` (checked), or a path."""
    raw = str(name)
    if os.sep in raw or raw.startswith("~"):
        return Path(raw).expanduser()
    return owned_child(ws.models_dir, raw, "checkpoint name")


def train_repo(ws: Workspace, events: str, name: str = "real", history: Optional[str] = None, epochs: Optional[int] = None,
               seed: int = 0, batch_size: Optional[int] = None, embedding_dim: int = 64, max_seconds: Optional[float] = None,
               lr: Optional[float] = None, loss: Optional[str] = None, bf16: bool = False,
               progress: Callable[[int, dict[str, Any]], None] | None = None,
               log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Train the sequence model on the shop's real histories (module docstring); the summary:
    ``checkpoint``, the counts, ``valid`` / ``test`` metrics on the shop's held-out events."""
    from ecaug_feast.jobs.train import MODELS, TrainOptions, train_overrides
    from recommender import seq_train
    from recommender.checkpoint import data_read_now, save_checkpoint

    out_dir = owned_child(ws.models_dir, name, "checkpoint name")  # a bad --name fails before any reading
    if loss is not None and loss not in seq_train.LOSSES:
        raise EcaugError(f"--loss must be one of {', '.join(seq_train.LOSSES)}, got {loss!r}")
    shop = open_events(ws, events)
    hist = check_history(shop, history)
    read = data_read_now()  # the training-data cut-off, before the shop's events are read
    sd = shop_data(shop)
    log(f"{shop.project}: {sd.facts['users']:,} users, {sd.facts['items']:,} items ({shop.item_dtype} keys), "
        f"{sd.facts['train_events']:,} training events, {sd.facts['held_out_events']:,} held out")
    opts = TrainOptions(events, train_overrides(epochs, batch_size, seed, max_seconds), embedding_dim=embedding_dim, bf16=bf16,
                        lr=lr, loss=loss, progress=progress, log=log)
    fitted = MODELS["sequence"].fit(sd.data, sd.valid, opts)
    res = fitted.result
    if res.model is None:  # a rank other than 0 under torchrun
        return {"rank": res.rank, "world_size": res.world_size}
    test_m = fitted.evaluate(res.model, sd.data, sd.test, "test", seed=seed, buckets=True)
    path = save_checkpoint(out_dir, res.state, fitted.model_cfg, res.model.catalog, item_keys=sd.keys, train=fitted.train_cfg,
                           metrics={"valid": res.best_valid, "test": test_m},
                           data={"repo": shop.meta(hist), "source": "repo", **fitted.data_info, **sd.facts,
                                 "world_size": res.world_size, **read})
    return {"checkpoint": str(path), "repo": str(ws.repo_dir), "project": shop.project, "events": events, "model": "sequence",
            **sd.facts, "epochs": res.best_epoch, "seconds": round(res.seconds, 1), "world_size": res.world_size,
            "valid": res.best_valid, "test": test_m}


def finetune_repo(ws: Workspace, events: str, from_: str = "real", name: str = "finetuned", mix_ratio: Optional[float] = None,
                  protocol: Optional[str] = None, run_id: Optional[str] = None, epochs: Optional[int] = None,
                  pretrain_epochs: Optional[int] = None, batch_size: Optional[int] = None, seed: int = 0,
                  max_seconds: Optional[float] = None, progress: Callable[[int, dict[str, Any]], None] | None = None,
                  log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Real + synthetic histories of the shop (the twin's active run, ``mix_ratio`` synthetic
    per real history; default the sequence model's 3) through the product's protocol (default
    pre-train -> fine-tune) from checkpoint ``from_`` of the same repo and events; same
    vocabulary, same held-out events. The summary has ``valid_before`` (``from_`` on validation),
    ``valid``, ``test``, ``synthetic_histories`` and ``run_id``."""
    from ecaug_feast.jobs.finetune import PROTOCOLS, sequence_stages
    from ecaug_feast.jobs.train import MODELS
    from recommender.checkpoint import data_read_now, load_checkpoint, save_checkpoint
    from recommender.item_keys import ItemKeys

    spec = MODELS["sequence"]
    mix_ratio = spec.finetune_mix_ratio if mix_ratio is None else mix_ratio
    protocol = spec.finetune_protocol if protocol is None else protocol
    if protocol not in PROTOCOLS:
        raise EcaugError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if mix_ratio < 0:
        raise EcaugError(f"mix ratio must be >= 0, got {mix_ratio}")
    out_dir = owned_child(ws.models_dir, name, "checkpoint name")
    src = checkpoint_dir(ws, from_)
    shop = open_events(ws, events)
    base, meta = load_checkpoint(src)
    keys = ItemKeys.load(src)
    repo_meta = (meta.get("data") or {}).get("repo")
    if keys is None or not isinstance(repo_meta, dict):
        raise EcaugError(f"{src}: not trained from a shop's repo (no item_keys.json / data.repo); run `ecaug train --repo ... --events {events}`")
    if (repo_meta.get("project"), repo_meta.get("events")) != (shop.project, events):
        raise EcaugError(f"{src}: trained on project {repo_meta.get('project')!r}, events {repo_meta.get('events')!r}, "
                         f"not {shop.project!r}, {events!r}")
    if not base.cfg.sequential or base.cfg.num_items != keys.num_items:
        raise EcaugError(f"{src}: not a sequence model over its item_keys.json ({keys.num_items} keys)")
    extra: list[np.ndarray] = []
    syn_id = None
    read = data_read_now()  # the real events' cut-off, before they are read
    ev = read_shop_events(shop)  # once: the synthetic rows' real histories and the training data both split it
    if mix_ratio > 0:  # the active run is checked before any fitting
        rows = plugin.training_rows(shop.store, mix_ratio=mix_ratio, run_id=run_id, seed=seed, events=events, events_read=ev)
        syn = rows[rows["is_synthetic"]]
        extra = [h[h > 0] for h in (keys.index_of(items) for items in syn["items"])]
        syn_id = str(syn["run_id"].iloc[0]) if len(syn) else None
    sd = shop_data(shop, keys, ev)
    st = sequence_stages(sd.data, sd.valid, sd.test, base, extra, syn_id, protocol=protocol, mix_ratio=mix_ratio, seed=seed,
                         epochs=epochs, pretrain_epochs=pretrain_epochs, batch_size=batch_size, max_seconds=max_seconds,
                         progress=progress, log=log, label=events)
    info = {"repo": shop.meta(repo_meta.get("history")), "source": "repo",
            "from": str(src), "mix_ratio": mix_ratio, "run_id": syn_id, "protocol": protocol, **st.info, **sd.facts, **read}
    path = save_checkpoint(out_dir, st.result.state, base.cfg, st.result.model.catalog, item_keys=keys, train=st.train,
                           metrics=st.metrics, data=info)
    return {"checkpoint": str(path), "from": str(src), "repo": str(ws.repo_dir), "project": shop.project, "events": events,
            "model": "sequence", "protocol": protocol, "mix_ratio": mix_ratio, "run_id": syn_id, **st.info, **sd.facts,
            "epochs": st.result.best_epoch, **st.metrics}
