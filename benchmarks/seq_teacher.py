"""Is the generator a better next-item ranker than the recommender it would teach?

A generated history used as training data teaches the recommender the generator's next-item
distribution: augmentation is, in effect, distillation from the generator. It can add what the
recommender does not already know only where that distribution ranks held-out items better than the
recommender does. This benchmark measures both on the study's validation users (the same 8,000-user
sample, the same full ranking that excludes training items), per history fraction, in one run:

- ``recommender``: the sequence model trained on the fraction's training histories (the study's
  ``real_only``; the full preset's budgets);
- ``generator (as sampled)``: a FORWARD twin of the study's generator (same class and settings,
  ``reverse=False``, MLE only) ranking by :meth:`SequenceGAN.next_log_probs`, i.e. the distribution
  its first draw comes from, with the transition mix, epsilon and attribute coherence applied;
- ``generator alone``: the same network's softmax, no sampling settings;
- ``training transitions``: the transition table alone (``transition_mix`` 1), a first-order
  Markov chain; rows whose last item has no unseen transition fall back to the softmax;
- ``recommender + sampling`` / ``+ transitions`` / ``+ coherence``: the recommender's own scores
  under the generator's sampling settings (all; the transition mix alone; attribute coherence
  alone): what a generator built on the recommender's network would teach;
- ``twin {...}``: with ``--gen-settings``, further forward twins fitted with other training
  settings (as sampled, and alone): whether the network itself can be made a better ranker.

The study's generator runs backwards (pseudo-prior items), so it cannot rank the NEXT item itself;
its forward twin measures what this generator class learns from the same data.

    ECAUG_HOME=<state with the dataset ingested> python benchmarks/seq_teacher.py \\
        --fractions 0.1,0.25 --seed 0 --threads 2 [--no-recommender] [--gen-settings JSON] [--out FILE.json]

Prints one table per fraction (validation NDCG@10 / Recall@10, all users and users with one kept
item) and writes the rows as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="beauty")
    p.add_argument("--fractions", default="0.1,0.25")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--valid-users", type=int, default=8000, help="the study's validation sample (0 = all)")
    p.add_argument("--no-recommender", action="store_true", help="skip training the sequence model")
    p.add_argument("--out", default=None, help="write the rows here (JSON)")
    p.add_argument("--rec-settings", default="[]",
                   help='further sampling settings for the recommender\'s scores, a JSON list of SeqGANConfig overrides, '
                        'e.g. \'[{"transition_mix": 0.2}, {"attr_coherence": 4}]\'')
    p.add_argument("--gen-settings", default="[]",
                   help='further forward twins to fit and rank with (as sampled, and alone), a JSON list of SeqGANConfig overrides, '
                        'e.g. \'[{"dropout": 0.5, "patience": 5}]\'')
    a = p.parse_args()

    from ecaug_feast.noise import quiet_known_noise

    quiet_known_noise()
    import numpy as np
    import pandas as pd
    import torch

    from ecaug_feast.datasets import load_dataset
    from ecaug_feast.features.build import item_attributes
    from ecaug_feast.datasets.split import split_interactions
    from ecaug_feast.synth.seq_gan import SeqGANConfig, SequenceGAN
    from ecaug_feast.jobs.train_data import build_in_memory
    from recommender.data import truncate_history
    from recommender.evaluate import bucket_metrics, evaluate, make_eval_set
    from recommender.seq_train import SeqTrainConfig, evaluate_seq, histories_for, seq_config_for, seq_scorer, train_seq

    torch.set_num_threads(a.threads)
    ds = load_dataset(a.dataset)
    sp = split_interactions(ds)
    vu = np.sort(sp.valid["user_id"].unique())  # the old study's fixed validation sample (seed 777)
    if a.valid_users and len(vu) > a.valid_users:
        vu = np.random.default_rng(777).choice(vu, a.valid_users, replace=False)
    valid = make_eval_set(sp.valid[sp.valid["user_id"].isin(vu)], [sp.train])
    rows_out = []
    for f in [float(x) for x in a.fractions.split(",") if x.strip()]:
        data = build_in_memory(truncate_history(sp.train, f), ds.items, sp.valid)
        n_items = data.num_items
        scfg = seq_config_for(data)
        hist = histories_for(data, scfg, "valid")  # training events only
        pos = pd.Series(np.arange(len(hist.user_ids)), index=hist.user_ids).reindex(valid.users).to_numpy()

        def line(name: str, m: dict, seconds: float) -> None:
            b = bucket_metrics(m.pop("_per_user"), valid.users, data.train) if "_per_user" in m else m.pop("buckets", {})
            one = b.get("1", {})
            row = {"fraction": f, "seed": a.seed, "ranker": name, "ndcg@10": m["ndcg@10"], "recall@10": m["recall@10"],
                   "ndcg@10_one_item": one.get("ndcg@10"), "users_one_item": one.get("users"), "seconds": round(seconds, 1)}
            rows_out.append(row)
            print(f"  {name:<28} NDCG@10 {m['ndcg@10']:.4f}  Recall@10 {m['recall@10']:.4f}  "
                  f"one kept item: NDCG@10 {one.get('ndcg@10', float('nan')):.4f} (n={one.get('users')})  {seconds:.0f} s", flush=True)

        print(f"fraction {f:g}: {int((hist.lengths > 0).sum())} training histories, {len(valid.users)} validation users", flush=True)
        rec = None
        if not a.no_recommender:
            t = time.time()
            res = train_seq(data, valid, scfg, SeqTrainConfig(seed=a.seed, epochs=60, patience=5, batch_size=128, lr=2e-3, threads=a.threads))
            line("recommender (real_only)", evaluate_seq(res.model, data, valid, "valid", seed=a.seed, buckets=True), time.time() - t)
            rec = seq_scorer(res.model, data, valid, "valid")  # logits <h_u, r_i>: its softmax is its distribution
        t = time.time()
        g = SequenceGAN(SeqGANConfig(reverse=False, adversarial=False, max_len=scfg.max_len, seed=a.seed, threads=a.threads))
        g.fit(hist.values, hist.offsets).set_item_attributes(item_attributes(data.items))
        fit_s = time.time() - t
        as_sampled = g.cfg
        rankers = [("generator (as sampled)", as_sampled, False),
                   ("generator alone", replace(as_sampled, transition_mix=0.0, epsilon=0.0, attr_coherence=0.0), False),
                   ("training transitions", replace(as_sampled, transition_mix=1.0, epsilon=0.0, attr_coherence=0.0), False)]
        if rec is not None:  # the recommender's scores under the generator's sampling settings
            rankers += [("recommender + sampling", as_sampled, True),
                        ("recommender + transitions", replace(as_sampled, epsilon=0.0, attr_coherence=0.0), True),
                        ("recommender + coherence", replace(as_sampled, transition_mix=0.0, epsilon=0.0), True)]
            rankers += [(f"recommender + {json.dumps(o, separators=(',', ':'))}", replace(as_sampled, **o), True)
                        for o in json.loads(a.rec_settings)]

        def _rank(gen: SequenceGAN, p_idx: np.ndarray, base_scorer) -> torch.Tensor:
            """Scores [users, items + 1] of validation users ``p_idx``: ``gen``'s first-draw
            log-probabilities (``base_scorer``'s logits in place of its network's, when given)."""
            cols = torch.from_numpy(gen.vocab.astype(np.int64))
            S = torch.full((len(p_idx), n_items + 1), -float("inf"))
            r = pos[p_idx]
            ok = ~np.isnan(r)
            if ok.any():
                known = r[ok].astype(np.int64)
                base = base_scorer(p_idx[ok])[:, cols] if base_scorer is not None else None
                sub = torch.full((int(ok.sum()), n_items + 1), -float("inf"))
                sub[:, cols] = gen.next_log_probs(hist.values, hist.offsets, known, base_logits=base)
                S[torch.from_numpy(np.flatnonzero(ok))] = sub
            return S

        for name, cfg, on_rec in rankers:
            g.cfg = cfg
            t = time.time()

            m = evaluate(lambda p_idx, on_rec=on_rec: _rank(g, p_idx, rec if on_rec else None), valid, n_items, seed=a.seed, per_user=True)
            line(name, m, time.time() - t + (fit_s if name == "generator (as sampled)" else 0.0))
        g.cfg = as_sampled
        for o in json.loads(a.gen_settings):  # other forward twins: what their training settings buy
            t = time.time()
            tw = SequenceGAN(replace(as_sampled, **o)).fit(hist.values, hist.offsets).set_item_attributes(item_attributes(data.items))
            fit_s = time.time() - t
            tag = json.dumps(o, separators=(",", ":"))
            for name, cfg in ((f"twin {tag} (as sampled)", tw.cfg), (f"twin {tag} alone", replace(tw.cfg, transition_mix=0.0, epsilon=0.0, attr_coherence=0.0))):
                tw.cfg = cfg
                t = time.time()
                m = evaluate(lambda p_idx, tw=tw: _rank(tw, p_idx, None), valid, n_items, seed=a.seed, per_user=True)
                line(name, m, time.time() - t + fit_s)
                fit_s = 0.0
    if a.out:
        with open(a.out, "w") as fh:
            json.dump({"dataset": a.dataset, "seed": a.seed, "threads": a.threads, "rows": rows_out}, fh, indent=1)


if __name__ == "__main__":
    main()
