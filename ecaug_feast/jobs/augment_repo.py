"""``ecaug augment --repo PATH --entity NAME --view NAME [--service NAME]``: expand one feature view
of a shop's own Feast repo (the plugin use, docs/guide/plugin.md).

1. ``feast apply`` of the shop's repo (what its stock CLI does: registers the twins its repo files
   declare with ``synthetic_twins``; writes the twins' empty placeholders);
2. the names given are checked against the registry (view, its entity, its twin, the service);
3. the real rows of the view, read by the shop's offline store, fit ecaug's tabular GAN; the
   generated rows are gated; the run is written atomically with synthetic entity keys;
4. gate passed: the run becomes active and only the twin view is materialized. The shop's real
   keys in the online store are never written. Gate failed: the run stays on disk, inactive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ecaug_feast.errors import EcaugError


def augment_repo(repo: str | Path, entity: str, view: str, service: str | None = None, rows: int = 1000,
                 seed: int = 0, steps: int | None = None, max_c2st: float | None = None,
                 publish: bool = True) -> dict[str, Any]:
    """Augment ``view`` of the Feast repo at ``repo``; returns the JSON summary of ``--json``."""
    from ecaug_feast import feast_io, plugin

    repo = Path(repo).expanduser().resolve()
    if not (repo / "feature_store.yaml").exists():
        raise EcaugError(f"{repo}: not a Feast repo (no feature_store.yaml)")
    applied = feast_io.apply(repo)
    store = feast_io.get_store(repo)
    registered = {v.name: v for v in store.list_feature_views()}
    if view not in registered:
        raise EcaugError(f"--view {view}: no such feature view in {repo} (registered: {', '.join(sorted(registered))})")
    real = registered[view]
    if plugin.is_run_sourced(real):
        raise EcaugError(f"--view {view}: a synthetic view; name the real view it is the twin of")
    if entity not in real.entities:
        raise EcaugError(f"--entity {entity}: view {view} has entities {real.entities}")
    twin = plugin.find_twin(store, view)
    if service is not None:
        names = {s.name: s for s in store.list_feature_services()}
        if service not in names:
            raise EcaugError(f"--service {service}: no such feature service in {repo} (registered: {', '.join(sorted(names)) or 'none'})")
        if view not in {p.name for p in names[service].feature_view_projections}:
            raise EcaugError(f"--service {service}: does not serve view {view}")
    settings = plugin.AugmentSettings(rows=rows, seed=seed, gan={"max_steps": steps} if steps else {},
                                      gates={"max_c2st_auc": max_c2st} if max_c2st is not None else {})
    run, res = plugin.augment_view(store, real, twin, settings,
                                   lineage={"entity": entity, "service": service, "project": store.config.project})
    m = res.metrics
    out: dict[str, Any] = {
        "repo": str(repo), "project": applied["project"], "entity": entity, "view": view, "twin": twin.name,
        "service": service, "run_id": run.run_id, "run_dir": str(run.path), "real_rows": run.manifest["lineage"]["real_rows"],
        "user_id_range": run.manifest["user_id_range"], "activated": False,
        **{k: m[k] for k in ("rows_generated", "rows_accepted", "gate", "gate_reasons", "c2st_auc", "column_shapes",
                             "pair_trends", "privacy_dropped", "fit_seconds")},
    }
    if res.gate_passed and m["rows_accepted"] and publish:
        pub = plugin.publish_twin(store, twin, run)
        out.update(activated=True, previous_run=pub["previous"], removed_keys=pub["removed_keys"],
                   materialized=pub["materialized"])
    if service is not None:  # what a training job asks for: the service's features of the view
        svc = store.get_feature_service(service)
        out["training_features"] = [f"{view}:{f.name}" for p in svc.feature_view_projections if p.name == view for f in p.features]
    return out
