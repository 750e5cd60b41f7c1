"""Replay Diginetica's dated purchases week by week: drift scores, a shuffled-time control, and a
refresh against a full rebuild.

    nice -n 10 .venv/bin/python benchmarks/drift_replay.py [--fit-until 2016-03-06] [--shuffles 3] [--json]

Needs ``../shared/data/diginetica`` (18,025 purchases, 2016-01-02 .. 2016-06-17). Three parts:

1. **Weekly drift** (pure, :func:`ecaug_feast.drift.compare`): training examples (each purchase +
   one sampled negative, user features point in time) are built once over the whole timeline. The
   reference is every example up to ``--fit-until`` (what a run fitted then saw); each later week
   with at least ``--min-week-rows`` examples is compared with it (fixed reference), and once more in a
   *refresh loop*: after an alarm the reference becomes everything up to that week.
2. **Control**: the same with the purchase timestamps shuffled across purchases (each session's
   block of purchases moved to a random real start time: same weekly volumes, sessions intact, no
   behaviour change over time), ``--shuffles`` times; false-alarm rate = alarmed
   weeks / weeks.
3. **Refresh vs full rebuild** (real Feast + an embedded Redis in a temp ``ECAUG_HOME``): the data
   up to ``--refresh-until`` is ingested (temporal split: the last 20 % of it are not training
   data), a gated run is fitted (cold), then the post-cut purchases are the "new events":
   ``ecaug refresh`` (incremental append + materialize of the appended window + warm-started fit +
   gate + quick study + activation) is timed against a full rebuild (features rebuilt with those
   events in the training split, full materialize, cold fit). Then ``runs rollback`` is checked
   to restore the old run. GAN subsample: ``--fit-rows`` rows, ``--rows`` synthetic rows; the gate's
   C2ST limit is relaxed to 0.99 in both arms (the comparison is about time and the quick study).

Everything runs on one thread (``torch``, BLAS) at ``nice``; about 5 minutes on 2 shared cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def examples(events: pd.DataFrame, attributes: dict[int, list[int]], item_ids: np.ndarray, seed: int) -> pd.DataFrame:
    """Training examples (purchase + 1 negative) with point-in-time user features, like ingest."""
    from ecaug_feast.features.build import build_user_features, sample_negatives

    uf = build_user_features(events, attributes)
    neg = sample_negatives(events, item_ids, 1, seed)
    ti = pd.concat([events[["user_id", "item_id", "event_timestamp"]].assign(label=1), neg.assign(label=0)], ignore_index=True)
    ti["event_timestamp"] = pd.to_datetime(ti["event_timestamp"], utc=True)
    uf["event_timestamp"] = pd.to_datetime(uf["event_timestamp"], utc=True)
    return ti.merge(uf, on=["user_id", "event_timestamp"], how="left")


def shuffle_sessions(ev: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The control: every (pseudo-)user's purchases move as one block to the start time of a
    randomly chosen user (gaps inside the block kept). Behaviour then does not change over time
    (which items sell, how sessions look), but each user's history stays as it was.

    Shuffling single purchase times instead is not a no-change control: a user's purchases get
    spread over the whole period, so the gaps and histories of later purchases really are longer
    (the detector flags ``days_since_last``; reported as ``per_purchase_shuffle``)."""
    ns = ev["event_timestamp"].astype("int64")
    g = ns.groupby(ev["user_id"].to_numpy())
    first = g.transform("min").to_numpy()
    starts, dur = g.min(), g.max() - g.min()
    # a start drawn from the real start times among those that leave room for the whole block, so
    # weekly volumes keep their shape and no block runs past the end of the data
    pool = np.sort(starts.to_numpy())
    room = np.searchsorted(pool, int(ns.max()) - dur.to_numpy(), "right")
    new_start = pd.Series(pool[(rng.random(len(pool)) * np.maximum(room, 1)).astype(np.int64)], index=starts.index)
    out = ev.copy()
    out["event_timestamp"] = pd.to_datetime(ns.to_numpy() - first + new_start.reindex(ev["user_id"]).to_numpy(), utc=True)
    return out.sort_values("event_timestamp", kind="stable").reset_index(drop=True)


def weekly(ex: pd.DataFrame, fit_until: pd.Timestamp, th, loop: bool, min_rows: int = 500) -> list[dict]:
    from ecaug_feast.drift import compare

    ts = ex["event_timestamp"]
    ref_end = fit_until
    out = []
    week = fit_until
    while week < ts.max():
        nxt = week + pd.Timedelta(days=7)
        rec = ex[(ts > week) & (ts <= nxt)]
        ref = ex[ts <= ref_end]
        if len(rec) >= max(min_rows, th.min_rows):  # the data's last weeks thin out (collection ended)
            r = compare(ref, rec, th)
            out.append({"week_end": str(nxt.date()), "rows": len(rec), "reference_rows": len(ref), "drifted": r.drifted,
                        "crossed": r.crossed, "c2st_auc": r.scores.get("c2st_auc"),
                        "excess": {k: r.excess[k] for k in ("item_js", "item_topk_overlap", "new_item_share") if k in r.excess},
                        "max_psi_excess": max((v for k, v in r.excess.items() if k.startswith("psi:")), default=None)})
            if loop and r.drifted:
                ref_end = nxt  # refreshed: the next run is fitted on everything up to this week
        week = nxt
    return out


def part_weekly(args, th) -> dict:
    from ecaug_feast.datasets.diginetica import load_diginetica

    ds = load_diginetica()
    attributes = dict(zip(ds.items["item_id"].astype(int), ds.items["attributes"]))
    items = ds.items["item_id"].to_numpy(np.int64)
    ev = ds.interactions[["user_id", "item_id", "event_timestamp"]].copy()
    ev["event_timestamp"] = pd.to_datetime(ev["event_timestamp"], utc=True)
    fit_until = pd.Timestamp(args.fit_until, tz="UTC")
    t0 = time.perf_counter()
    real = examples(ev, attributes, items, 0)
    res = {"events": int(len(ev)), "items": int(len(items)), "fit_until": str(fit_until.date()),
           "reference_rows": int((real["event_timestamp"] <= fit_until).sum())}
    res["real_fixed"] = weekly(real, fit_until, th, loop=False, min_rows=args.min_week_rows)
    res["real_loop"] = weekly(real, fit_until, th, loop=True, min_rows=args.min_week_rows)
    controls, per_event = [], []
    for s in range(args.shuffles):
        rng = np.random.default_rng(args.control_seed + s)
        controls += weekly(examples(shuffle_sessions(ev, rng), attributes, items, s), fit_until, th, loop=False,
                           min_rows=args.min_week_rows)
        if s == 0:  # per-purchase shuffle, reported for contrast (see shuffle_sessions)
            sh = ev.copy()
            sh["event_timestamp"] = rng.permutation(sh["event_timestamp"].to_numpy())
            sh = sh.sort_values("event_timestamp", kind="stable").reset_index(drop=True)
            per_event = weekly(examples(sh, attributes, items, s), fit_until, th, loop=False, min_rows=args.min_week_rows)
    res["per_purchase_shuffle"] = {"weeks": len(per_event), "alarms": int(sum(w["drifted"] for w in per_event)),
                                   "crossed": sorted({c for w in per_event for c in w["crossed"]})}
    res["control_excess"] = {k: {"mean": round(float(np.mean(v)), 4), "p95": round(float(np.percentile(v, 95)), 4)}
                             for k in ("item_js", "new_item_share", "item_topk_overlap")
                             for v in [[w["excess"].get(k, 0.0) for w in controls]]}
    for k in ("item_js", "new_item_share", "item_topk_overlap"):
        res["control_excess"][k]["max"] = round(float(max(w["excess"].get(k, 0.0) for w in controls)), 4) if controls else None
    res["control_excess"]["max_psi"] = round(float(max(w["max_psi_excess"] or 0 for w in controls)), 4) if controls else None
    res["control_weeks"] = len(controls)
    res["control_alarms"] = int(sum(w["drifted"] for w in controls))
    res["false_alarm_rate"] = round(res["control_alarms"] / max(1, len(controls)), 4)
    res["control_crossed"] = [[w["week_end"], w["rows"], w["crossed"]] for w in controls if w["drifted"]]
    res["control_max_c2st"] = max(w["c2st_auc"] for w in controls) if controls else None
    res["detection_rate_fixed"] = round(sum(w["drifted"] for w in res["real_fixed"]) / max(1, len(res["real_fixed"])), 4)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def part_refresh(args) -> dict:
    """Real Feast + Redis: refresh (incremental) against a full rebuild, then rollback."""
    home = Path(tempfile.mkdtemp(prefix="ecaug-drift-replay-"))
    os.environ["ECAUG_HOME"] = str(home)
    from ecaug_feast import feast_io, synth_store
    from ecaug_feast.datasets.base import Dataset
    from ecaug_feast.datasets.diginetica import load_diginetica
    from ecaug_feast.datasets.store import load_processed
    from ecaug_feast.features.build import write_features
    from ecaug_feast.features.ingest import ingest_dataset
    from ecaug_feast.quality.gates import GateConfig
    from ecaug_feast.jobs.augment import augment_run
    from ecaug_feast.jobs.refresh import refresh_job
    from ecaug_feast.jobs.workspace import Workspace
    from ecaug_feast.redis_server import EmbeddedRedis, free_port
    from ecaug_feast.synth.gan import GANConfig
    from ecaug_feast.synth.pipeline import AugmentConfig

    server = EmbeddedRedis.for_state(home, port=free_port())
    url = server.start()
    os.environ["ECAUG_REDIS_URL"] = url
    out: dict = {"state": str(home)}

    def cfg(steps: int) -> AugmentConfig:
        return AugmentConfig(gan=GANConfig(max_steps=steps), gates=GateConfig(max_c2st_auc=0.99),
                             max_fit_rows=args.fit_rows, holdout_rows=1000)

    try:
        full = load_diginetica()
        cut = pd.Timestamp(args.refresh_until, tz="UTC")
        inter = full.interactions[pd.to_datetime(full.interactions["event_timestamp"], utc=True) <= cut].reset_index(drop=True)
        ds = Dataset(full.name, inter, full.items, None, full.split_kind, dict(full.meta), full.user_map, full.item_map)
        ing = ingest_dataset(ds)
        repo = feast_io.render_repo(home / "feature_repo", state_dir=home, redis_url=url)
        feast_io.apply(repo)
        feast_io.materialize(repo)
        t = time.perf_counter()
        ws = Workspace(state_dir=home, repo_dir=repo, redis_url=url)
        first = augment_run(ws, rows=args.rows, seed=0, config=cfg(args.cold_steps))
        out["initial_run"] = {k: first.get(k) for k in ("run_id", "gate", "gate_reasons", "activated", "c2st_auc", "rows_accepted")}
        out["initial_run"]["seconds"] = round(time.perf_counter() - t, 1)
        if not first["activated"]:
            out["error"] = "the initial run did not pass its gate; nothing to refresh"
            return out
        data = load_processed(ds.name)
        new = data.interactions[data.interactions["split"] != "train"][["user_id", "item_id", "event_timestamp"]]
        ev_path = home / "new_events.parquet"
        new.to_parquet(ev_path, index=False)
        out["new_events"] = {"rows": int(len(new)), "first": str(new["event_timestamp"].min()), "last": str(new["event_timestamp"].max()),
                             "train_rows_before": ing["features"]["rows"]["train_interactions"]}

        # --- full rebuild: every feature recomputed with the new events in the training split,
        # full materialize of the real views, a cold GAN fit (in a second state dir)
        home2 = Path(tempfile.mkdtemp(prefix="ecaug-drift-full-"))
        t = time.perf_counter()
        inter2 = data.interactions.copy()
        inter2["split"] = "train"
        from ecaug_feast.datasets.store import ProcessedDataset

        full_ds = ProcessedDataset(data.name, inter2, data.items, data.users, data.meta, data.path)
        os.environ["ECAUG_HOME"] = str(home2)
        write_features(full_ds)
        repo2 = feast_io.render_repo(home2 / "feature_repo", state_dir=home2, redis_url=url.rsplit("/", 1)[0] + "/1")  # db 1: its own keys
        feast_io.apply(repo2)
        t_feat = time.perf_counter() - t
        feast_io.materialize(repo2, views=["user_features", "item_features"])
        t_mat = time.perf_counter() - t - t_feat
        cold = augment_run(Workspace(state_dir=home2, repo_dir=repo2, redis_url=url.rsplit("/", 1)[0] + "/1"),
                           rows=args.rows, seed=1, config=cfg(args.cold_steps), publish=False)
        t_full = time.perf_counter() - t
        out["full_rebuild"] = {"seconds": round(t_full, 1), "features_seconds": round(t_feat, 1), "materialize_seconds": round(t_mat, 1),
                               "augment_seconds": round(t_full - t_feat - t_mat, 1), "gate": cold["gate"],
                               "gan_best_step": synth_store.load_run(cold["run_id"]).manifest["metrics"].get("gan_best_step")}
        os.environ["ECAUG_HOME"] = str(home)

        # --- refresh: incremental append + materialize of the appended window + warm start
        t = time.perf_counter()
        aug = lambda ws_, **kw: augment_run(ws_, **{**kw, "config": _with(cfg(args.warm_steps), kw["config"])})
        ref = refresh_job(ws, force=True, events=ev_path, rows=args.rows, steps=args.warm_steps, max_c2st=0.99,
                          augment=aug)
        t_ref = time.perf_counter() - t
        app = ref.get("appended", {})
        out["refresh"] = {"seconds": round(t_ref, 1), "append_seconds": app.get("seconds"), "run_id": ref["run_id"],
                          "parent_run_id": ref["parent_run_id"], "activated": ref["activated"], "gate": ref.get("gate"),
                          "warm_started": ref.get("warm_started"), "reason": ref.get("reason"),
                          "materialized_real": ref.get("materialized_real"), "drift": ref.get("drift"),
                          "quick_study": ref.get("quick_study")}
        if ref["run_id"]:
            m = synth_store.load_run(ref["run_id"]).manifest["metrics"]
            out["refresh"]["gan_best_step"] = m.get("gan_best_step")
            out["refresh"]["augment_seconds"] = m.get("total_seconds")
        out["ratio_full_over_refresh"] = round(t_full / t_ref, 2)
        if ref["activated"]:
            with synth_store.runs_lock():
                back = synth_store.rollback()
                synth_store.publish(back, repo)
            out["rollback"] = {"active_after": back, "restored_parent": back == ref["parent_run_id"]}
    finally:
        server.stop()
    return out


def _with(small, given):
    """The benchmark's GAN size with the refresh's warm start and gates."""
    small.gan.warm_start = given.gan.warm_start
    small.gates = given.gates
    return small


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit-until", default="2016-03-06", help="The reference run's fit window ends here (weekly part).")
    ap.add_argument("--refresh-until", default="2016-04-24", help="Data ingested before the refresh (refresh part).")
    ap.add_argument("--shuffles", type=int, default=3, help="Shuffled-time controls.")
    ap.add_argument("--control-seed", type=int, default=1000, help="Seed of the first control (thresholds were set on seeds 0-1).")
    ap.add_argument("--min-week-rows", type=int, default=500,
                    help="Weeks with fewer examples are skipped (Diginetica's last two weeks hold 52 and 25 purchases).")
    ap.add_argument("--fit-rows", type=int, default=8000, help="Real rows the GAN learns from.")
    ap.add_argument("--rows", type=int, default=2000, help="Synthetic rows per run.")
    ap.add_argument("--cold-steps", type=int, default=1500, help="Max GAN steps of a cold fit (the default of `ecaug augment`).")
    ap.add_argument("--skip-weekly", action="store_true", help="Only the refresh part.")
    ap.add_argument("--warm-steps", type=int, default=500, help="Max GAN steps of the warm-started refresh fit.")
    ap.add_argument("--skip-refresh", action="store_true", help="Only the weekly drift part.")
    ap.add_argument("--json", action="store_true", help="Print one JSON object as the last stdout line.")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from ecaug_feast.drift import DriftThresholds

    th = DriftThresholds()
    res: dict = {"thresholds": th.to_json(), "args": vars(args)}
    res["weekly"] = w = {"real_fixed": [], "control_alarms": 0, "control_weeks": 0, "detection_rate_fixed": 0.0} if args.skip_weekly else part_weekly(args, th)
    print(f"weekly drift: {w['detection_rate_fixed']:.0%} of {len(w['real_fixed'])} real weeks alarmed (fixed reference); "
          f"shuffled control: {w['control_alarms']}/{w['control_weeks']} false alarms", file=sys.stderr)
    for r in w["real_fixed"]:
        print(f"  {r['week_end']} rows {r['rows']:5d} c2st {r['c2st_auc']:.3f} js+ {r['excess'].get('item_js', 0):+.3f} "
              f"new-items+ {r['excess'].get('new_item_share', 0):+.3f} {'DRIFT ' + ','.join(r['crossed']) if r['drifted'] else ''}", file=sys.stderr)
    if not args.skip_refresh:
        res["refresh"] = part_refresh(args)
        r = res["refresh"]
        if "ratio_full_over_refresh" in r:
            print(f"refresh {r['refresh']['seconds']} s vs full rebuild {r['full_rebuild']['seconds']} s "
                  f"(x{r['ratio_full_over_refresh']}); activated {r['refresh']['activated']}", file=sys.stderr)
    print(json.dumps(res, default=str) if args.json else json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
