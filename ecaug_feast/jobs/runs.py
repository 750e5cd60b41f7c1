"""What every generator's job shares about a synthetic run: its input's lineage, the dataset check,
and activation + publication of a run that passed its gate (``jobs.augment``, ``jobs.augment_seq``)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ecaug_feast import synth_store
from ecaug_feast.errors import EcaugError
from ecaug_feast.jobs import repair
from ecaug_feast.jobs.workspace import Workspace


def source_lineage(src: Any, ent: pd.DataFrame, meta: dict[str, Any]) -> dict[str, Any]:
    """Lineage of a run's input: the source file, the dataset and the fit window of ``ent`` (the
    training interaction rows the generator learned from), so `ecaug drift` can compare later
    data with exactly this window."""
    ts = pd.to_datetime(ent["event_timestamp"], utc=True)
    fit_window = {"start": ts.min().isoformat(), "end": ts.max().isoformat(), "rows": int(len(ent)),
                  "positive_rows": int((ent["label"] == 1).sum()), "feature_version": meta.get("version")}
    return {"dataset": meta.get("dataset"), "source": str(src), "feature_meta_written_at": meta.get("written_at"),
            "entity_rows": int(len(ent)), "fit_window": fit_window}


def check_dataset(dataset: str | None, lineage: dict[str, Any]) -> None:
    """``--dataset`` must name what the Feast sources hold."""
    if dataset and lineage.get("dataset") and dataset != lineage["dataset"]:
        raise EcaugError(f"--dataset {dataset}: the Feast sources hold {lineage['dataset']!r}; run `ecaug ingest --dataset {dataset}` first")


def activate_and_publish(ws: Workspace, run_id: str) -> dict[str, Any]:
    """Activate a gate-passing run and bring the online store in line, as one exclusive step;
    returns ``activated`` and ``materialized`` (entities written per synthetic view)."""
    with ws.online() as url, synth_store.runs_lock():  # activation + online store as one exclusive step
        repair.redo_pending(ws, skip=("publish",))  # an interrupted step first; this publish redoes one
        synth_store.activate(run_id)
        pub = synth_store.publish(run_id, ws.feast_repo(url))
    return {"activated": True, "materialized": materialized(pub)}


def materialized(pub: dict[str, Any]) -> dict[str, Any]:
    """Entities written per synthetic view, from ``synth_store.publish``'s summary."""
    return {k: v.get("entities_written") for k, v in pub.get("materialize", {}).get("views", {}).items()}
