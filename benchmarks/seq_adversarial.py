"""Does the adversarial stage do measurable work? Before and after refinement, on validation only.

The real-only recommender (the best maximum-likelihood next-item model here) is refined against a
discriminator under a KL penalty to itself (``ecaug_feast.synth.seq_refine``: RLHF-style, Ziegler
et al. 2019; REINFORCE with a leave-one-out baseline). For the start (pi_ref: what
``gan_no_adversarial`` / ``self_distill`` draw from) and the refined policy (what ``gan_augmented``
draws from) it prints:

- held-out NLL of the validation item given the user's training history (items of the history
  banned, as the pools draw), all validation users;
- KL(pi || pi_ref) per continuation on the short histories the pools continue;
- a learned two-sample test: a fresh discriminator's AUC on held-out training episodes;
- the pool: each short history continued by ``n_new`` items (``expansions`` draws each, the
  unfiltered pool; the labeler is left out to isolate the stage), its history C2ST (the gate's
  5-item window detector) and feature C2ST (the derived ``user_features`` rows);
- the pool's validation lift: a fresh model pre-trained on real + pool, fine-tuned on real
  (``jobs.finetune``'s ``pretrain`` protocol), early stopping on the ``stop`` half of the
  validation users, NDCG@10 on the ``choose`` half (``study.protocol.validation_halves``), against
  the real-only model and ``real_twice`` (the same two stages and epochs on real alone) on the
  same half. No test figure is computed.

    python benchmarks/seq_adversarial.py --dataset beauty --fraction 0.25 --seed 0 --threads 1 \\
        [--beta 0.1 --steps 150 --lr 5e-5] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="beauty")
    p.add_argument("--fraction", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--halves-seed", type=int, default=2026, help="the protocol's validation halves")
    p.add_argument("--max-users", type=int, default=None, help="a fixed user subsample (the study's: study.cell.sample_users)")
    p.add_argument("--epochs", type=int, default=40, help="real-only training (early stopping on the stop half)")
    p.add_argument("--patience", type=int, default=5, help="epochs without a better stop-half NDCG@10 (fine-tunes: 2)")
    p.add_argument("--pretrain-epochs", type=int, default=20)
    p.add_argument("--finetune-epochs", type=int, default=10)
    p.add_argument("--expand-below", type=int, default=8)
    p.add_argument("--n-new", type=int, default=2)
    p.add_argument("--expansions", type=int, default=1)
    p.add_argument("--refine", default="{}", help="RefineConfig overrides, JSON (beta, steps, lr, samples, prompts, ...)")
    p.add_argument("--no-lift", action="store_true", help="skip the pools' pre-train -> fine-tune runs")
    p.add_argument("--real-state", default=None,
                   help="a .pt file: the real-only model's weights are loaded from it when it exists, else saved to it")
    p.add_argument("--out", default=None, help="folder for results.json")
    a = p.parse_args()

    from ecaug_feast.noise import quiet_known_noise

    quiet_known_noise()
    import logging

    import numpy as np
    import pandas as pd
    import torch

    from ecaug_feast.datasets import load_dataset
    from ecaug_feast.datasets.split import split_interactions
    from ecaug_feast.features.build import build_user_features, item_attributes
    from ecaug_feast.histories import Histories
    from ecaug_feast.jobs.augment_seq import sample_continuations, short_rows
    from ecaug_feast.jobs.finetune import combine_histories
    from ecaug_feast.jobs.train_data import build_in_memory
    from ecaug_feast.quality import seq_metrics as SM
    from ecaug_feast.study.protocol import validation_halves
    from ecaug_feast.synth.seq_gan import tail_items
    from ecaug_feast.synth.seq_pipeline import feature_c2st, feature_rows, history_end_times
    from ecaug_feast.synth.seq_refine import (RefineConfig, discriminator_auc, episodes_from, item_counts, next_item_nll, refine,
                                               sequence_kl)
    from recommender.data import truncate_history
    from recommender.evaluate import make_eval_set
    from recommender.seq_model import SeqTwoTower
    from recommender.seq_train import NextItemPolicy, catalog_of, SeqTrainConfig, evaluate_seq, histories_for, next_item_scorer, seq_config_for, train_seq

    from ecaug_feast.study.cell import sample_users

    h = logging.StreamHandler()
    h.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    lg = logging.getLogger("ecaug_feast.synth.seq_refine")
    lg.setLevel(logging.INFO)
    lg.addHandler(h)
    torch.set_num_threads(a.threads)
    t_all = time.time()
    out: dict = {"args": vars(a)}

    def say(msg: str) -> None:
        print(f"[{time.time() - t_all:6.0f} s] {msg}", flush=True)

    ds = load_dataset(a.dataset)
    sp = split_interactions(ds)
    sp_train, sp_valid, _ = sample_users(sp.train, sp.valid, sp.test, a.max_users)  # the test split is never read
    kept = truncate_history(sp_train, a.fraction)
    data = build_in_memory(kept, ds.items, sp_valid)
    vu = sp_valid["user_id"].to_numpy(np.int64)
    stop, choose = validation_halves(vu, a.halves_seed)
    es_stop = make_eval_set(sp_valid[stop], [sp_train])
    es_choose = make_eval_set(sp_valid[choose], [sp_train])
    scfg = seq_config_for(data)
    hist = histories_for(data, scfg, "valid")  # the kept training events only
    n_items = data.num_items
    say(f"{a.dataset} at {a.fraction:g}: {len(hist.user_ids)} training histories, {n_items} items, "
        f"validation halves stop {int(stop.sum())} / choose {int(choose.sum())} users")

    def train(histories: Histories | None, epochs: int, init=None, patience: int = a.patience):
        return train_seq(data, es_stop, scfg, SeqTrainConfig(seed=a.seed, epochs=epochs, patience=patience, threads=a.threads),
                         init_state=init, histories=histories)

    def choose_ndcg(model) -> float:
        return round(float(evaluate_seq(model, data, es_choose, "valid", seed=a.seed)["ndcg@10"]), 5)

    t = time.time()
    if a.real_state and Path(a.real_state).exists():
        model = SeqTwoTower(scfg, catalog=catalog_of(data))
        model.load_state_dict(torch.load(a.real_state))
        out["real_only"] = {"loaded_from": a.real_state}
    else:
        real = train(None, a.epochs)
        model = real.model
        out["real_only"] = {"best_epoch": real.best_epoch, "seconds": round(time.time() - t, 1)}
        if a.real_state:
            torch.save(real.state, a.real_state)
    out["real_only"]["choose_ndcg@10"] = choose_ndcg(model)
    say(f"real-only: choose NDCG@10 {out['real_only']['choose_ndcg@10']} ({time.time() - t:.0f} s)")

    if not a.no_lift:  # the control for the extra stage: pre-trained then fine-tuned on real alone, same epochs
        t = time.time()
        pre = train(hist, a.pretrain_epochs)
        ft = train(hist, a.finetune_epochs, init=pre.state, patience=2)
        out["real_twice"] = {"choose_ndcg@10": choose_ndcg(ft.model), "pretrain_epoch": pre.best_epoch,
                             "finetune_epoch": ft.best_epoch, "seconds": round(time.time() - t, 1)}
        say(f"real_twice: {json.dumps(out['real_twice'])}")

    ref_policy = NextItemPolicy(model.eval())
    rcfg = RefineConfig(**{"seed": a.seed, **json.loads(a.refine)})
    t = time.time()
    res = refine(ref_policy, hist.values, hist.offsets, n_items, rcfg, n_new=a.n_new, prompt_below=a.expand_below)
    out["refinement"] = res.report
    say(f"refined in {time.time() - t:.0f} s: {json.dumps({k: v for k, v in res.report.items() if k != 'config'})}")
    policies = {"start (pi_ref)": ref_policy, "refined": res.policy}

    # held-out NLL: the validation item after each validation user's training history
    pos = pd.Series(np.arange(len(hist.user_ids)), index=hist.user_ids)
    vrow = pos.reindex(vu).to_numpy()
    ok = ~np.isnan(vrow)
    rows_v = vrow[ok].astype(np.int64)
    lists = hist.to_lists()
    nz = np.array([len(lists[r]) > 0 for r in rows_v])
    v_prompts = [lists[r] for r in rows_v[nz]]
    v_targets = sp_valid["item_id"].to_numpy(np.int64)[ok][nz]
    fresh = np.array([t not in set(h.tolist()) for h, t in zip(v_prompts, v_targets)])  # a repeat cannot be drawn
    v_prompts, v_targets = [h for h, f in zip(v_prompts, fresh) if f], v_targets[fresh]
    short = short_rows(hist.lengths, a.expand_below)
    rng = np.random.default_rng(a.seed)
    kl_prompts = [lists[r] for r in rng.choice(short, min(3000, len(short)), replace=False)]
    eps = episodes_from(hist.values, hist.offsets, a.n_new, a.expand_below)

    # the pools: each short history continued (expansions draws), as self_distill / the gan pool draw
    tail = tail_items(hist.values)
    ts_all = SM.TrainingStats(hist.values, hist.offsets, tail)
    nonempty = [h for h in lists if len(h)]
    attrs = item_attributes(data.items)
    train_ev = data.train
    real_rows = build_user_features(train_ev, attrs)
    times = train_ev.assign(ts=pd.to_datetime(train_ev["event_timestamp"], utc=True).astype("int64")).groupby("user_id")["ts"].max()
    last_ns = times.reindex(hist.user_ids).fillna(int(times.max())).to_numpy(np.int64)
    rows = np.repeat(short, max(1, a.expansions))
    # real continuation items counted without their own occurrence (as the discriminator reads them): a
    # new real continuation's item is as popular as the OTHER histories make it
    own = ts_all.counts.reindex(eps.continuations.ravel()).fillna(1).to_numpy() - 1
    out["real_continuations_mean_logpop_loo"] = round(float(np.log1p(own).mean()), 4)

    for name, pol in policies.items():
        t = time.time()
        r: dict = {"valid_nll": round(next_item_nll(pol, v_prompts, v_targets, rcfg), 4)}
        r["kl_to_start_per_continuation"] = round(sequence_kl(pol, ref_policy, kl_prompts, a.n_new, rcfg, seed=a.seed), 4)
        r["fresh_discriminator_auc"] = discriminator_auc(pol, eps, n_items, rcfg, seed=a.seed, counts=item_counts(hist.values, n_items))
        pool = sample_continuations(next_item_scorer(pol.model), [lists[i] for i in rows], a.n_new, a.seed, rcfg.temperature)
        pool = [h[-scfg.max_len :] for h in pool]
        w = SM.window_c2st(pool, [lists[i] for i in rows], nonempty, ts_all, width=5, max_rows=3000, seed=a.seed)
        r.update(history_c2st=w["auc"], history_c2st_real_vs_real=w["real_vs_real"])
        syn = feature_rows(pool, history_end_times(rows, last_ns, a.seed), train_ev, attrs, seed=a.seed)
        fa = feature_c2st(syn, real_rows, seed=a.seed)
        r["feature_c2st"] = round(float(fa), 4) if fa == fa else None
        new = np.concatenate([h[-a.n_new :] for h in pool])
        r["pool_new_items_mean_logpop"] = round(float(np.log1p(ts_all.counts.reindex(new).fillna(0).to_numpy()).mean()), 4)
        r["pool_histories"] = len(pool)
        if not a.no_lift:
            t1 = time.time()
            mix = combine_histories(hist, pool, scfg.max_len)
            pre = train(mix, a.pretrain_epochs)
            ft = train(hist, a.finetune_epochs, init=pre.state, patience=2)
            r["lift"] = {"choose_ndcg@10": choose_ndcg(ft.model), "pretrain_epoch": pre.best_epoch, "finetune_epoch": ft.best_epoch,
                         "seconds": round(time.time() - t1, 1)}
            r["lift"]["vs_real_only"] = round(r["lift"]["choose_ndcg@10"] / out["real_only"]["choose_ndcg@10"] - 1, 4)
            r["lift"]["vs_real_twice"] = round(r["lift"]["choose_ndcg@10"] / out["real_twice"]["choose_ndcg@10"] - 1, 4)
        r["seconds"] = round(time.time() - t, 1)
        out[name] = r
        say(f"{name}: {json.dumps(r)}")

    print("\n| | start (pi_ref) | refined |\n|---|---|---|")
    keys = ["valid_nll", "kl_to_start_per_continuation", "fresh_discriminator_auc", "history_c2st", "history_c2st_real_vs_real",
            "feature_c2st", "pool_new_items_mean_logpop"]
    for k in keys:
        print(f"| {k} | {out['start (pi_ref)'].get(k)} | {out['refined'].get(k)} |")
    if not a.no_lift:
        for k in ("choose_ndcg@10", "vs_real_only", "vs_real_twice"):
            print(f"| pool lift: {k} | {out['start (pi_ref)']['lift'][k]} | {out['refined']['lift'][k]} |")
        print(f"| real-only / real_twice choose NDCG@10 | {out['real_only']['choose_ndcg@10']} / {out['real_twice']['choose_ndcg@10']} | |")
    print(f"| real continuations: mean log(1 + item count), own occurrence out | {out['real_continuations_mean_logpop_loo']} | |")
    out["seconds"] = round(time.time() - t_all, 1)
    say("done")
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "results.json").write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
