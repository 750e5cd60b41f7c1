"""Assemble the production :class:`Services`: Feast+Redis reader, the checkpoint (hot reloaded),
training history (seen items, popularity) and the item catalogue, all read from the Feast offline
store (the catalogue from the ``item_features`` view's source)."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecaug_feast.errors import EcaugError
from ecaug_feast.names import owned_child
from ecaug_feast.paths import models_dir

from recommender.serving.app import Services
from recommender.serving.components import ItemCatalog, Popularity, SeenItems
from recommender.serving.metrics import ServingMetrics
from recommender.serving.model_bundle import ModelHolder
from recommender.serving.shop import RepoModel, ShopEventLog, ShopVocab, check_store, key_parser

log = logging.getLogger(__name__)

LATEST = "latest"


def configure_threads(n: int = 1) -> None:
    """One BLAS/OpenMP thread per request: a 12k x 64 search or a one-row forward pass is far
    too small to split, and OpenMP's wake-ups cost more than the work on a busy 2-core machine
    (measured: FAISS flat search p50 22 ms with 2 OpenMP threads vs 0.33 ms with 1)."""
    import faiss
    import torch

    faiss.omp_set_num_threads(n)
    torch.set_num_threads(n)


def resolve_model(spec: str | Path, root: Path | None = None) -> Path:
    """A checkpoint directory: a path, a name under ``root`` (default ``<state>/models/``; a
    shop's repo: ``<state>/repos/<project>/models/``), or ``latest`` (the most recently written
    checkpoint there; re-resolved on every reload check)."""
    from recommender.checkpoint import resolve

    train = "`ecaug train`" if root is None else "`ecaug train --repo`"
    if str(spec) != LATEST:
        raw = str(spec)
        bare = root is not None and os.sep not in raw and not Path(raw).expanduser().exists()
        d = owned_child(root, raw, "checkpoint name") if bare else resolve(spec)
        if not (d / "config.json").exists():
            raise EcaugError(f"{d}: no checkpoint there (expected config.json + model.pt); train one with {train}")
        return d
    root = root if root is not None else models_dir()
    found = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "config.json").exists()] if root.exists() else []
    if not found:
        raise EcaugError(f"{root}: no checkpoint yet; train one with {train}")
    return max(found, key=lambda p: (p / "config.json").stat().st_mtime_ns)


def dataset_of(model_dir: Path, default: str | None = None) -> str:
    """The dataset a checkpoint was trained on (``config.json`` data.dataset), else ``default``."""
    from recommender.checkpoint import read_config

    meta = read_config(model_dir)
    data = meta.get("data") or {}
    name = data.get("dataset") if isinstance(data, dict) else None
    name = default or name
    if not name:
        raise EcaugError(f"{model_dir / 'config.json'}: no data.dataset recorded; pass --dataset")
    return str(name)


def current_redis_url(state_dir: Path | None = None) -> str | None:
    """The Redis address in use now (:func:`ecaug_feast.redis_server.current_url`): None when
    neither ``$ECAUG_REDIS_URL`` nor the state dir's embedded server is reachable."""
    from ecaug_feast.redis_server import current_url

    return current_url(state_dir)


def redis_relocator(state_dir: Path | None = None):
    """``relocate(store)`` for :class:`FeastFeatureReader`: a new ``FeatureStore`` (its repo
    re-rendered for the new address) when Redis now answers somewhere else, else None.
    ``state_dir``: where to look for the embedded server's record (default: ``$ECAUG_HOME``)."""
    from ecaug_feast import feast_io
    from ecaug_feast.redis_server import feast_connection_string

    def relocate(store: Any) -> Any | None:
        url = current_redis_url(state_dir)
        if url is None:
            return None
        now = str(store.config.online_store.connection_string)
        if feast_connection_string(url) == now:
            return None
        repo = feast_io.render_repo(store.repo_path, redis_url=url)  # same repo, new address
        return feast_io.get_store(repo)

    return relocate


def build_services(
    model: str | Path = LATEST,
    dataset: str | None = None,
    *,
    store: Any | None = None,
    poll_s: float = 2.0,
    max_k: int = 1000,
    retry_s: float = 0.5,
    relocate: Any | None = None,
) -> Services:
    """Everything ``ecaug serve`` needs. ``store``: a ``feast.FeatureStore`` (default: the repo
    rendered for the state dir, naming the Redis running now: none is started here; the serve job
    starts it through ``Workspace.online()``).
    ``relocate``: how the reader finds a Redis that moved (default for the rendered store:
    :func:`redis_relocator`; a given ``store`` keeps its address unless ``relocate`` is given)."""
    from ecaug_feast import feast_io

    from recommender.serving.feast_reader import FeastFeatureReader
    from ecaug_feast.item_runs import published_fingerprint

    from recommender.serving.loader import (
        checkpoint_fingerprint,
        feast_item_popularity,
        feast_item_vectors,
        feast_seen_items,
        load_bundle,
    )
    from recommender.serving.model_bundle import files_fingerprint

    first = resolve_model(model)
    name = dataset_of(first, dataset)
    if store is None:
        store = feast_io.get_store()
        relocate = relocate or redis_relocator()
    items, items_source = feast_io.item_catalog(store)  # the catalogue (/items), as Feast holds it
    item_pop = feast_item_popularity(store, items["item_id"])
    popularity = Popularity(item_pop.index.to_numpy(np.int64), item_pop.to_numpy(np.float64))
    seen = feast_seen_items(store)
    metrics = ServingMetrics()

    reader = FeastFeatureReader(store, retry_s=retry_s, relocate=relocate)
    catalogue = {"ids": items["item_id"].to_numpy(np.int64)}

    def item_vectors():
        # the generated rows of cold and new items, from the online store (the reader's store:
        # it follows a Redis that moved); Redis down: the model serves without them
        try:
            return feast_item_vectors(reader.store, catalogue["ids"])
        except Exception as exc:  # noqa: BLE001 - a model must load while the store is down
            log.warning("generated item vectors not read (%s: %s); serving the trained rows only", type(exc).__name__,
                        str(exc).splitlines()[0][:200] if str(exc) else "")
            return None

    def loader():
        d = resolve_model(model)
        # the catalogue as the item_features view holds it now: items a refresh added since start
        catalogue["ids"] = feast_io.item_catalog(store)[0]["item_id"].to_numpy(np.int64)
        n_items = int(catalogue["ids"].max())
        bundle = load_bundle(d, item_pop, item_vectors=item_vectors)
        vocab = int(bundle.info.get("num_items") or len(bundle.index))
        # a sequence model serves items added since training (ids above its vocabulary) through
        # their generated vectors; any other difference: item ids would point at other items
        grown = bundle.info.get("model") == "sequence" and vocab < n_items
        if vocab != n_items and not grown:  # refuse, keep serving the old model
            raise EcaugError(
                f"{d}: catalog mismatch: the checkpoint has {vocab} items, dataset '{name}' has {n_items} "
                "(serve it with the dataset it was trained on: --dataset)"
            )
        return bundle

    if str(model) == LATEST:  # follow whichever checkpoint is newest
        def model_fp():
            return files_fingerprint(lambda: [resolve_model(model) / "config.json", resolve_model(model) / "model.pt"])()
    else:
        model_fp = checkpoint_fingerprint(first)

    def fingerprint():
        # a publish of item vectors (refresh with new items, augment-items, rollback) reloads too
        return (model_fp(), published_fingerprint())

    holder = ModelHolder(
        loader, fingerprint, poll_s=poll_s,
        on_reload=lambda result, b: metrics.reloads.labels(result).inc(),
    )
    log.info("serving dataset %s: %d items, %d users with history", name, len(items), seen.n_users)
    return Services(
        features=reader,
        models=holder,
        seen=seen,
        popularity=popularity,
        catalog=ItemCatalog(items, source=str(items_source)),
        metrics=metrics,
        max_k=max_k,
    )


def build_repo_services(
    store: Any,
    models_root: Path,
    model: str | Path = LATEST,
    *,
    poll_s: float = 2.0,
    max_k: int = 1000,
    retry_s: float = 0.5,
) -> Services:
    """``ecaug serve --repo``: the services for a model trained from a shop's repo
    (:mod:`recommender.serving.shop`). ``store``: the shop's ``FeatureStore``; ``models_root``:
    ``<state>/repos/<project>/models``. The checkpoint is checked against the repo (one line
    each) before anything else is read; the shop's events are read here, and again on a reload only
    when their source changed (:class:`ShopEventLog`)."""
    from recommender.checkpoint import read_config
    from recommender.item_keys import ItemKeys
    from recommender.serving.feast_reader import FeastFeatureReader
    from recommender.serving.loader import load_bundle
    from recommender.serving.model_bundle import files_fingerprint

    first = resolve_model(model, models_root)
    spec = RepoModel.of(read_config(first), first)
    if spec is None:
        raise EcaugError(f"{first}: not trained from a shop's repo (config.json has no data.repo); "
                         "serve it without --repo, or train one with `ecaug train --repo`")
    check_store(store, spec, first)
    events = ShopEventLog(store, spec)
    events.get()  # at start: a source that cannot be read fails here, before serving
    metrics = ServingMetrics()

    def loader():
        d = resolve_model(model, models_root)
        now = RepoModel.of(read_config(d), d)
        if now != spec:
            # another repo, key, event source or history feature: the reader and the events read at start would not fit
            raise EcaugError(f"{d}: trained on {now}, this server serves {spec}; restart `ecaug serve --repo` to serve it")
        keys = ItemKeys.load(d)
        if keys is None:
            raise EcaugError(f"{d}: no item_keys.json (the shop's item keys); retrain with `ecaug train --repo`")
        if keys.dtype != spec.item_dtype:
            raise EcaugError(f"{d}: item_keys.json holds {keys.dtype} keys, config.json says {spec.item_dtype}")
        bundle = load_bundle(d)
        if bundle.info.get("model") != "sequence":
            raise EcaugError(f"{d}: not a sequence model; a shop's repo is served by the sequence model")
        if len(bundle.index) != keys.num_items:
            raise EcaugError(f"{d}: catalog mismatch: the model has {len(bundle.index)} items, item_keys.json {keys.num_items}")
        users, items = events.get()  # the events read before, unless their source changed since
        return dataclasses.replace(bundle, vocab=ShopVocab.build(keys, users, items, spec.history_field))

    if str(model) == LATEST:
        def fingerprint():
            d = resolve_model(model, models_root)
            return files_fingerprint(lambda: [d / "config.json", d / "model.pt", d / "item_keys.json"])()
    else:
        fingerprint = files_fingerprint(lambda: [first / f for f in ("config.json", "model.pt", "catalog.pt", "item_keys.json")])

    holder = ModelHolder(loader, fingerprint, poll_s=poll_s,
                         on_reload=lambda result, b: metrics.reloads.labels(result).inc())
    parse = key_parser(spec.user_dtype)
    # the shop's own Redis keeps its address: no relocation (nothing of ecaug's moves it)
    reader = FeastFeatureReader(store, features=[spec.history_field], view=spec.history_view, retry_s=retry_s,
                                join_key=spec.user_key, key=parse)
    log.info("serving a model of Feast project %s: history %s keyed by %s (%s)", spec.project, spec.history_ref,
             spec.user_key, spec.user_dtype)
    empty = np.empty(0, dtype=np.int64)
    return Services(
        features=reader,
        models=holder,
        seen=SeenItems(empty, np.zeros(1, np.int64), empty),  # per model: bundle.vocab.seen
        popularity=Popularity(empty, np.empty(0)),             # per model: bundle.vocab.popularity
        catalog=ItemCatalog(pd.DataFrame({"item_id": empty}), source=f"{spec.project} (item keys)"),
        metrics=metrics,
        max_k=max_k,
        user_key=parse,
    )
