"""The data jobs: ``ecaug ingest`` (load, validate, split, build the Feast sources), ``apply``
(register the Feast objects) and ``materialize`` (load the online store).

``apply`` and ``materialize`` write to the online store (apply drops the keys of removed views), so
they run inside ``Workspace.online()``; ``ingest`` touches no Redis, except to materialize the
generated vectors of items a sequence checkpoint of the same dataset never saw (new items).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import redis

from ecaug_feast import feast_io, intents
from ecaug_feast import schema as S
from ecaug_feast.datasets import load_dataset, load_generic, subset_users
from ecaug_feast.datasets.generic import parse_map_flag
from ecaug_feast.features.build import USER_FEATURES
from ecaug_feast.features.ingest import ingest_dataset
from ecaug_feast.errors import EcaugError
from ecaug_feast.jobs import repair
from ecaug_feast.jobs.workspace import Workspace
from ecaug_feast.names import check_name

log = logging.getLogger(__name__)


def feast_error(exc: Exception) -> EcaugError:
    """Turn Feast/Redis failures users can act on into one-line errors."""
    if isinstance(exc, redis.exceptions.ConnectionError):
        return EcaugError(f"Redis unreachable: {exc} (run `ecaug redis start` or check ECAUG_REDIS_URL)")
    return EcaugError(f"feast: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def load(dataset: str | None = None, interactions: Path | None = None, users: Path | None = None,
         items: Path | None = None, map_: str | None = None, mapping: Path | None = None, name: str | None = None,
         split: str | None = None, max_users: int | None = None) -> Any:
    """A bundled dataset (``dataset``) or the shop's own tables through a column mapping, validated."""
    if name is not None:
        check_name(name, "--name")  # it becomes <state>/datasets/<name>: checked before any work
    own = interactions is not None or mapping is not None
    if dataset and own:
        raise EcaugError("use either --dataset or --interactions/--mapping, not both")
    if not dataset and not own:
        raise EcaugError("nothing to ingest: give --dataset NAME or --interactions PATH with --map/--mapping")
    if dataset:
        ds = load_dataset(dataset)
    else:
        ds = load_generic(
            interactions, parse_map_flag(map_) if map_ else None, items=items, users=users,
            mapping_file=mapping, name=name, split=split,  # type: ignore[arg-type]
        )
    if max_users:
        ds = subset_users(ds, max_users)
    return ds


def ingest(ws: Workspace, ds: Any, negatives: int = 1, seed: int = 0,
           progress: Callable[..., None] | None = None) -> dict[str, Any]:
    """Split ``ds``, write the processed store and the Feast parquet sources; returns the summary.
    Interrupted refreshes and materializes of the replaced sources are dropped (``dropped_intents``):
    redone later, a refresh would append its old events onto the new store."""
    out = ingest_dataset(ds, neg_per_pos=negatives, seed=seed, progress=progress)
    out = {**out, "dropped_intents": drop_replaced_intents(ws)}
    # items the served checkpoint never saw (a catalogue that grew): their generated vectors are
    # written and materialized now (a no-op without a sequence checkpoint of this dataset)
    from ecaug_feast.jobs.augment_items import refresh_items

    out["items"] = refresh_items(ws, seed=seed, reason="ingest")
    return out


REPLACED_STEPS = ("refresh", "materialize")  # intents about the real sources an ingest replaces


def drop_replaced_intents(ws: Workspace) -> list[str]:
    """Remove the interrupted (not running) ``refresh`` / ``materialize`` intents; their steps."""
    dropped = [str(r["step"]) for r in intents.pending(ws.state_dir) if r.get("step") in REPLACED_STEPS
               and not r.get("running") and intents.clear(ws.state_dir, str(r["step"]), pid=r.get("pid"))]
    if dropped:
        log.warning("ingest: dropped the interrupted %s of the replaced sources (the new sources need "
                    "`ecaug materialize`, not a redo)", " and ".join(dropped))
    return dropped


def apply(ws: Workspace) -> dict[str, Any]:
    """``feast apply`` on the workspace's repo (registers entities, views, services)."""
    with ws.online() as url:
        try:
            return feast_io.apply(ws.feast_repo(url))
        except EcaugError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise feast_error(exc) from None


def materialize(ws: Workspace, start: datetime | None = None, end: datetime | None = None,
                views: Sequence[str] | None = None, incremental: bool = False) -> dict[str, Any]:
    """Load the latest feature values of ``views`` (default: all with data) into the online store,
    under an intent record; an interrupted earlier step is redone first (``ecaug repair``)."""
    with ws.online():
        try:
            # a full materialize redoes an interrupted one itself: no need to run it twice
            full = start is None and end is None and not views and not incremental
            repair.redo_pending(ws, skip=("materialize",) if full else ())
            return repair.materialize_step(ws, start=start, end=end, views=views or None, incremental=incremental)
        except EcaugError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise feast_error(exc) from None


def online_check(ws: Workspace) -> dict[str, Any]:
    """Read one user's serving features from Redis and check them against the offline serving row
    (the demo's ``online_read`` step)."""
    uf = feast_io.source_rows(feast_io.source_file(ws.feast_dir, USER_FEATURES))
    serving = uf.sort_values("event_timestamp").groupby("user_id").tail(1).set_index("user_id")
    uid = int(serving.index.min())
    with ws.online():
        store = ws.store()
        t0 = time.perf_counter()
        online = feast_io.online_user_features([uid], store=store).iloc[0]
        ms = (time.perf_counter() - t0) * 1000
    expected = serving.loc[uid]
    ok = int(online[S.N_INTERACTIONS]) == int(expected[S.N_INTERACTIONS]) and list(online[S.RECENT_ITEMS]) == list(expected[S.RECENT_ITEMS])
    if not ok:
        raise EcaugError(f"online features of user {uid} differ from the offline serving row")
    return {
        "user_id": uid,
        S.N_INTERACTIONS: int(online[S.N_INTERACTIONS]),
        S.RECENT_ITEMS: [int(x) for x in online[S.RECENT_ITEMS]][:10],
        S.TOP_ATTRIBUTES: [int(x) for x in online[S.TOP_ATTRIBUTES]],
        "matches_offline": ok,
        "read_ms": round(ms, 2),
    }
