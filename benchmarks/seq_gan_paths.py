"""Side-by-side CPU cost of the sequence GAN's fast paths against the step-by-step ones, per
component, on ONE small fitted generator (seconds of CPU time, one thread: meaningful on a busy
machine, unlike wall time). A benchmark, not a test.

    python benchmarks/seq_gan_paths.py [--max-users 3000]

Each row: (cpu_s, sys_s, minor page faults in thousands) for the new and the old path, and the
CPU ratio old/new. Components: one adversarial fake batch (128 rows, 31 steps), ``expand`` of 1024
short histories by 10, ``sample_users(512)`` (cached decoding vs ``_sample_tokens(cached=False)``,
the same tokens), a policy-gradient step and 8 MLE batches in training order (logits only where
the target is a token vs over the padded batch).
"""
import argparse
import functools
import json
import resource
import time
import warnings

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-users", type=int, default=3000)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    from torch.nn import functional as F
    from ecaug_feast.jobs.train_data import build_in_memory
    from recommender.data import truncate_history
    from ecaug_feast.datasets import load_dataset
    from ecaug_feast.datasets.split import split_interactions
    from recommender.seq_train import histories_for, seq_config_for
    from ecaug_feast.study.cell import sample_users
    from ecaug_feast.synth.seq_gan import SeqGANConfig, SequenceGAN
    ds = load_dataset("beauty"); sp = split_interactions(ds)
    train, _, _ = sample_users(sp.train, sp.valid, sp.test, a.max_users)
    data = build_in_memory(truncate_history(train, 0.25), ds.items)
    h = histories_for(data, seq_config_for(data), "valid")
    def tm(f, n=1):
        r0 = resource.getrusage(resource.RUSAGE_SELF); c0 = time.process_time()
        for _ in range(n): f()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        return round((time.process_time() - c0) / n, 3), round((r1.ru_stime - r0.ru_stime) / n, 3), (r1.ru_minflt - r0.ru_minflt) // n // 1000
    g = SequenceGAN(SeqGANConfig(mle_epochs=2, adversarial=False, threads=1)).fit(h.values, h.offsets)
    g.gen.eval(); V = len(g.vocab)
    res = {}
    def both(name, f, n=1):
        new = tm(lambda: f(True), n); old = tm(lambda: f(False), n)
        res[name] = {"new_cpu_sys_faultsK": new, "old_cpu_sys_faultsK": old, "cpu_ratio": round(old[0] / new[0], 2)}
        print(name, res[name], flush=True)
    pr = (V + 2 + np.arange(128) % 4)[:, None]
    both("fake_batch_128x31", lambda c: g._sample_tokens(pr, 31, True, g._torch_rng(1), cached=c), 2)
    short = np.flatnonzero(h.lengths < 8)[:1024]
    orig = g._sample_tokens
    def ex(c):
        g._sample_tokens = functools.partial(orig, cached=c)
        try: g.expand(h.values, h.offsets, short, 10, seed=0)
        finally: g._sample_tokens = orig
    both("expand_1024_by_10", ex)
    def su(c):
        g._sample_tokens = functools.partial(orig, cached=c)
        try: g.sample_users(512, seed=1)
        finally: g._sample_tokens = orig
    both("sample_users_512", su)
    tok = g._sample_tokens(pr, 31, True, g._torch_rng(1))
    res["fake_tokens_per_row"] = float((tok[:, 1:] > 0).sum(1).float().mean())
    print("fake tokens per row", float((tok[:, 1:] > 0).sum(1).float().mean()))
    g.gen.train()
    def pg(c):
        x = tok; keep = x[:, 1:] > 0
        if c:
            lp = torch.zeros(keep.shape); lp[keep] = -F.cross_entropy(g.gen(x[:, :-1], keep), x[:, 1:][keep], reduction="none")
        else:
            lp = torch.log_softmax(g.gen(x[:, :-1]).float(), -1).gather(-1, x[:, 1:, None]).squeeze(-1)
        (lp * keep).sum().backward()
    both("pg_step_fwd_bwd", pg, 2)
    batches = list(g._batches(g._train, np.random.default_rng(0), 128))[:8]  # training order: length-sorted
    def mle(c):
        for b in batches:
            if c: loss = g._mle_loss(b, g.gen)
            else:
                x = torch.from_numpy(g._pad(b)); lg = g.gen(x[:, :-1]); loss = F.cross_entropy(lg.reshape(-1, g.n_out), x[:, 1:].reshape(-1), ignore_index=0)
            loss.backward()
    both("mle_8_batches", mle)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
