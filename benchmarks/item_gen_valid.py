"""Item generators on pseudo-cold items, VALIDATION only (issue 34): does a generated vector rank a
held-out item for its users?

    python benchmarks/item_gen_valid.py [--dataset beauty] [--seed 0] [--cold 0.2] [--epochs 30]
                                        [--max-seconds 900] [--cache DIR] [--gar '{"alpha": 0.5}']

1. ``--cold`` of the catalogue's items (by ``--seed``) become pseudo-cold: every TRAINING
   interaction with them is removed (validation and test events stay where the split put them);
2. a real-only sequence model is trained on the rest (early stopping on validation users whose
   target is warm); its item rows of warm items are the warm vectors, its states of training
   histories the user vectors (``--cache DIR`` keeps them, to rerun the generators alone);
3. each generator of ``synth.item_gen.ITEM_GENERATORS`` is fitted on the warm items and writes the
   cold items' rows; the id-only model's own cold rows (never a target in training) are the floor;
4. validation users are scored with full ranking over warm and cold items together: Recall@10 and
   NDCG@10 for users whose validation item is cold, warm, and all; also the mean rank of a cold
   target among the cold items alone (the generator's own signal, without warm competition);
   ``--scales``: attr_mean's vectors scaled up, the trade-off a norm alone buys.

Prints one ``RESULT {json}`` line. Test events are never read.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ecaug_feast.noise import quiet_known_noise


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="beauty")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cold", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--max-seconds", type=float, default=900)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", type=Path, default=None)
    p.add_argument("--scales", default="", help="also attr_mean's vectors times each of these (comma list): "
                   "how much of a generator's cold/warm trade-off a plain norm gives")
    p.add_argument("--gar", default="{}", help="GARConfig overrides (JSON object, or a list of them: one gar row each)")
    a = p.parse_args()
    quiet_known_noise()
    import torch

    from ecaug_feast.datasets import load_dataset
    from ecaug_feast.datasets.split import split_interactions
    from ecaug_feast.jobs.train_data import build_in_memory
    from ecaug_feast.synth.item_gen import GARConfig, GARGenerator, ITEM_GENERATORS
    from recommender.evaluate import evaluate, make_eval_set
    from recommender.seq_train import SeqTrainConfig, catalog_of, histories_for, seq_config_for, train_seq, user_vectors

    torch.set_num_threads(a.threads)
    ds = load_dataset(a.dataset)
    sp = split_interactions(ds)
    items = np.sort(ds.items["item_id"].to_numpy(np.int64))
    cold = np.sort(np.random.default_rng(a.seed).choice(items, int(round(a.cold * len(items))), replace=False))
    train = sp.train[~sp.train["item_id"].isin(cold)].reset_index(drop=True)
    data = build_in_memory(train, ds.items, sp.valid)
    cat = catalog_of(data)
    cfg = seq_config_for(data)
    v_cold = sp.valid[sp.valid["item_id"].isin(cold)]
    v_warm = sp.valid[~sp.valid["item_id"].isin(cold)]
    sets = {"cold": make_eval_set(v_cold, [train]), "warm": make_eval_set(v_warm, [train]), "all": make_eval_set(sp.valid, [train])}
    warm = np.setdiff1d(np.unique(train["item_id"].to_numpy(np.int64)), cold)

    cache = a.cache / f"{a.dataset}-seed{a.seed}-cold{a.cold}.npz" if a.cache else None
    t0 = time.time()
    if cache is not None and cache.exists():
        z = np.load(cache)
        R, U_all, users_all, best_epoch = z["R"], z["U"], z["users"], int(z["best_epoch"])
    else:
        res = train_seq(data, sets["warm"], cfg, SeqTrainConfig(seed=a.seed, epochs=a.epochs, max_seconds=a.max_seconds, threads=a.threads),
                        progress=lambda e, r: print(e, round(r["loss"], 3), r["train_s"], round(r.get("valid_ndcg@10", 0), 4), flush=True))
        model = res.model.eval()
        with torch.no_grad():
            Rt = model.item_matrix().float()
        hist = histories_for(data, model.cfg, "valid")
        users_all = np.unique(np.concatenate([s.users for s in sets.values()]))
        U_all = user_vectors(model, Rt, hist, users_all).numpy()
        R, best_epoch = Rt.numpy(), int(res.best_epoch)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, R=R, U=U_all, users=users_all, best_epoch=best_epoch)
    train_s = round(time.time() - t0)
    pos_of = {int(u): i for i, u in enumerate(users_all)}
    train_users = np.unique(train["user_id"].to_numpy(np.int64))
    rng = np.random.default_rng(a.seed)
    sample = rng.choice(train_users, min(4096, len(train_users)), replace=False)
    U_fit = U_all[[pos_of[int(u)] for u in sample if int(u) in pos_of]]  # states of training histories

    def metrics(Rx: np.ndarray) -> dict:
        out = {}
        Rt = torch.from_numpy(Rx)
        for name, es in sets.items():
            Ue = torch.from_numpy(U_all[[pos_of[int(u)] for u in es.users]])
            m = evaluate(lambda pos: Ue[torch.from_numpy(pos)] @ Rt.T, es, cat.num_items, seed=a.seed)
            out[name] = {k: round(m[k], 4) for k in ("recall@10", "ndcg@10")} | {"users": int(m["users"])}
        # a cold target's rank among the cold items only (1 = first)
        es = sets["cold"]
        Ue = U_all[[pos_of[int(u)] for u in es.users]]
        tgt = es.target_values[es.target_offsets[:-1]]
        S = Ue @ Rx[cold].T
        col = np.searchsorted(cold, tgt)
        ranks = 1 + (S > S[np.arange(len(tgt)), col][:, None]).sum(1)
        out["cold_rank_among_cold"] = {"mean": round(float(ranks.mean()), 1), "median": float(np.median(ranks)), "of": int(len(cold))}
        return out

    results = {"id_only_floor": metrics(R)}
    gars = json.loads(a.gar)
    gars = gars if isinstance(gars, list) else [gars]
    runs = [("attr_mean", ITEM_GENERATORS["attr_mean"]())]
    runs += [("gar" + (json.dumps(g, sort_keys=True) if len(gars) > 1 else ""), GARGenerator(GARConfig(**{"seed": a.seed, **g}))) for g in gars]
    assert set(ITEM_GENERATORS) == {"attr_mean", "gar"}  # a new generator gets a row here
    fit_s = {}
    for name, gen in runs:
        t = time.time()
        gen.fit(cat, warm, R[warm], U_fit)
        Rx = R.copy()
        Rx[cold] = gen.generate(cat, cold)
        fit_s[name] = round(time.time() - t, 2)
        results[name] = metrics(Rx) | {"report": {k: v for k, v in gen.report.items() if k != "config"}}
        print(name, json.dumps(results[name]), flush=True)
        if name == "attr_mean":
            base = Rx[cold]
            for c in [float(x) for x in a.scales.split(",") if x]:
                Rx[cold] = c * base
                results[f"attr_mean_x{c:g}"] = metrics(Rx)
                print(f"attr_mean_x{c:g}", json.dumps(results[f"attr_mean_x{c:g}"]), flush=True)
    print("RESULT", json.dumps({"dataset": a.dataset, "seed": a.seed, "cold_share": a.cold, "cold_items": int(len(cold)),
                                "warm_items": int(len(warm)), "best_epoch": best_epoch, "train_seconds": train_s,
                                "gar": gars, "generator_seconds": fit_s, "valid": results}, default=str), flush=True)


if __name__ == "__main__":
    main()
