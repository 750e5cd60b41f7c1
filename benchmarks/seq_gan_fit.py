"""Sequence GAN fit + generation time on Beauty's TRAINING histories (no timed test: a benchmark).

    python benchmarks/seq_gan_fit.py --fraction 0.25 [--max-users N] [--mle-epochs 5 --adv-steps 40]
    python benchmarks/seq_gan_fit.py ... --compare 0f16aa2   # also seq_gan.py as of that commit (before KV-cached decoding)
    torchrun --nproc_per_node 2 benchmarks/seq_gan_fit.py ...   # data-parallel fit (DDP; rank 0 prints)

Prints one JSON line: users, vocabulary, fit seconds (``mle_s`` of them the MLE phase), generation
seconds for the pipeline's two uses (expand every history shorter than 8 by 10 items; synthetic
users for 25% of the histories), the load average while it ran, and the threads used. ``cpu_s`` is
the process's CPU time: with ``--threads 1`` on a busy machine it is roughly what the run takes
alone on one core (wall time is not; sharing caches inflates it somewhat), so about an upper bound
for a quiet 2-core run. ``sys_s`` and ``page_faults_k`` (minor page faults, thousands) show
allocation churn: large tensors freed and allocated anew each step.

``--compare REF`` also runs ``ecaug_feast/synth/seq_gan.py`` as committed at git ref ``REF`` (loaded
from ``git show``) on the same histories with the same seeds, right before this tree's, and prints
both runs and the ratios old/new: on a busy machine absolute seconds are inflated, the ratio of two
runs taken side by side is the figure to read.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np


def _module_at(ref: str, rel: str, name: str) -> ModuleType:
    """The file ``rel`` as committed at ``ref``, imported under ``name``."""
    root = Path(__file__).resolve().parents[1]
    src = subprocess.check_output(["git", "show", f"{ref}:{rel}"], cwd=root)
    path = Path(tempfile.mkdtemp()) / f"{name}.py"
    path.write_bytes(src)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def reference_module(ref: str) -> ModuleType:
    """``ecaug_feast/synth/seq_gan.py`` as committed at ``ref``, with the chunked loss of that
    commit too (``linear_ce.py``, when it had one): the generator calls it through its module name."""
    mod = _module_at(ref, "ecaug_feast/synth/seq_gan.py", "seq_gan_ref")
    if hasattr(mod, "linear_cross_entropy"):
        mod.linear_cross_entropy = _module_at(ref, "ecaug_feast/synth/linear_ce.py", "linear_ce_ref").linear_cross_entropy
    return mod


def run(mod: ModuleType, h, a: argparse.Namespace, attributes: dict) -> dict:
    """Fit ``mod.SequenceGAN`` and generate as the pipeline does (with the items' attributes, for
    ``attr_coherence``, where that version has it); seconds per stage (rank 0)."""
    import torch

    torch.set_num_threads(a.threads)
    load0 = os.getloadavg()[0]
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    c0 = time.process_time()
    t0 = time.time()
    g = mod.SequenceGAN(mod.SeqGANConfig(mle_epochs=a.mle_epochs, adv_steps=a.adv_steps, threads=a.threads)).fit(h.values, h.offsets)
    fit = time.time() - t0
    if not g.is_writer:
        return {}
    torch.set_num_threads(a.threads)
    t1 = time.time()
    if hasattr(g, "set_item_attributes"):
        g.set_item_attributes(attributes)
    short = np.flatnonzero(h.lengths < 8)
    g.expand(h.values, h.offsets, short, 10, seed=0)
    t_exp = time.time() - t1
    t2 = time.time()
    n_syn = int(0.25 * len(h.user_ids))
    g.sample_users(n_syn, seed=1)
    t_syn = time.time() - t2
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"vocab": int(len(g.vocab)), "mle_epochs": g.report["mle_epochs"], "adv_steps": g.report.get("adversarial", {}).get("steps"),
            "fit_s": round(fit, 1), "expand_s": round(t_exp, 1), "expanded": int(len(short)),
            "synthetic_s": round(t_syn, 1), "synthetic": n_syn, "total_s": round(time.time() - t0, 1),
            "mle_s": g.report.get("mle_seconds"), "cpu_s": round(time.process_time() - c0, 1),
            "sys_s": round(ru.ru_stime - ru0.ru_stime, 1), "page_faults_k": (ru.ru_minflt - ru0.ru_minflt) // 1000,
            "device": g.report["device"], "ddp": g.report.get("ddp"), "attr_coherence": getattr(g, "attr_coherence_applied", None),
            "loadavg_start": round(load0, 2), "loadavg_end": round(os.getloadavg()[0], 2),
            "nll": [g.report.get("nll_mle"), g.report.get("nll_after_adversarial")]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fraction", type=float, default=0.25)
    ap.add_argument("--max-users", type=int, default=None)
    ap.add_argument("--mle-epochs", type=int, default=5)
    ap.add_argument("--adv-steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compare", metavar="REF", default=None, help="also run seq_gan.py as of this git ref (e.g. main)")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(a.threads)
    from ecaug_feast.jobs.train_data import build_in_memory
    from recommender.data import truncate_history
    from ecaug_feast.datasets import load_dataset
    from ecaug_feast.features.build import item_attributes
    from ecaug_feast.datasets.split import split_interactions
    from recommender.seq_train import histories_for, seq_config_for
    from ecaug_feast.study.cell import sample_users
    from ecaug_feast.synth import seq_gan
    from ecaug_feast.synth.seq_gan import init_distributed

    init_distributed()  # under torchrun: join the process group (gloo on CPU, nccl on CUDA)

    ds = load_dataset("beauty")
    sp = split_interactions(ds)
    train, _, _ = sample_users(sp.train, sp.valid, sp.test, a.max_users)  # the study's user sample
    data = build_in_memory(truncate_history(train, a.fraction), ds.items)
    h = histories_for(data, seq_config_for(data), "valid")
    attrs = item_attributes(ds.items)
    head = {"fraction": a.fraction, "users": int(len(h.user_ids)), "events": int(len(h.values)), "threads": a.threads}
    if a.compare:
        old = run(reference_module(a.compare), h, a, attrs)
        new = run(seq_gan, h, a, attrs)
        if new:
            ratio = {k: round(old[k] / new[k], 2) if new[k] else None for k in ("fit_s", "expand_s", "synthetic_s", "total_s", "cpu_s", "sys_s", "page_faults_k")}
            print(json.dumps({**head, "ref": a.compare, "old": old, "new": new, "old_over_new": ratio}))
        return
    res = run(seq_gan, h, a, attrs)
    if res:
        print(json.dumps({**head, **res}))


if __name__ == "__main__":
    main()
