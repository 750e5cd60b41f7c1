"""How cost grows with data: each pipeline stage at 1x, 4x and 16x the Beauty volume.

    .venv/bin/python benchmarks/scaling.py --json                 # 1x and 4x, every stage in full
    # 1x in full; 4x and 16x: 50 timed batches per epoch, 4 chunks per generation use (~1 h, quiet)
    .venv/bin/python benchmarks/scaling.py --scales 1 4 16 --max-batches 50 --gen-chunks 4 \
        --extrapolate-above 1 --stage-timeout 2400 --json

Scaled data (documented method): ``k`` copies of Beauty. Copy ``r`` gets fresh user ids
(``u + r*U``) and its own block of the item catalogue (``i + r*I``, item rows duplicated with the
same attributes and the same event times), so every user keeps the exact shape of the sequence
it was copied from, users and items grow k-fold, and the interaction density per user and per
item stays Beauty's. (Shared attribute vocabulary: attributes do not grow.) ``k`` < 1: the first
``k`` share of Beauty's users (tests and quick checks).

``--linear`` (issue 33): ``gen_fit``, ``generate`` and ``train_epoch`` take the linear-cost paths,
the generator's sampled loss and FAISS candidate draws (``SeqGANConfig(loss="sampled",
generation="candidates", candidate_index="ivf")``, ``synth/seq_candidates.py``) and the sequence
model's sampled softmax (``SeqTrainConfig(loss="sampled")``); without it, the full softmax and
full-vocabulary draws.

    .venv/bin/python benchmarks/scaling.py --linear --clock cpu --scales 1 4 --stages ingest gen_fit generate train_epoch \
        --max-batches 50 --gen-chunks 4 --extrapolate-above 1 --stage-timeout 2400 --json

Stages, each in its own subprocess (so peak RSS belongs to one stage; ``--stage`` runs one):
``ingest`` (split + feature tables + parquet, :func:`ecaug_feast.features.ingest.ingest_dataset`),
``materialize`` (Feast apply + materialize into an embedded Redis), ``gen_fit`` (the sequence GAN,
``SequenceGAN(...).fit`` on ALL the scaled training histories: ``--gen-mle-epochs`` maximum-likelihood
epochs, default 1, never early-stopped, then ``--gen-adv-steps`` adversarial steps, default 10
(0: no adversarial phase), 1 thread; MLE cost grows with histories x items, the adversarial
steps' with items only), ``generate`` (the pipeline's two uses on a generator with the same
vocabulary: ``expand`` every history shorter than 8 by 10 items, and ``sample_users`` for 25% of
the histories; the generator is fitted with 0 MLE epochs, untimed, because its weights do not
change the work: ``expand`` always samples 10 tokens, and ``sample_users`` runs up to
``gen_max_len`` steps per chunk, until every history of the chunk has ended), ``train_epoch`` (one epoch of the sequence model,
:func:`recommender.seq_train.train_seq`, 1 thread, no validation), ``index`` (checkpoint load +
FAISS item index, ``load_bundle``), ``recommend`` (services + app built, then ``/recommend``
through FastAPI's TestClient: median of 20 calls).

Full or extrapolated (chosen per run: ``--max-batches N`` and ``--gen-chunks C`` at the scales
above ``--extrapolate-above``; without them everything runs in full, the default). An extrapolated
figure carries ``"extrapolated": true`` (``~`` in the table) and says what was measured:

- ``train_epoch``: the epoch's first ``1 + N`` optimizer steps run (the first is a warm-up and is
  not timed); ``seconds = seconds_per_batch x batches_per_epoch`` (``measured_batches`` = N). The
  checkpoint the later stages load is then the untrained model (same shapes, same index work).
- ``gen_fit``: ``seconds = after_mle_s + mle_s`` with ``after_mle_s`` = a fit with 0 MLE epochs
  and the adversarial steps, in full (held-out pass, discriminator warm-up, adversarial steps) and
  ``mle_s = epochs x (seconds_per_batch x batches_per_epoch + heldout_pass_s)``, the per-batch time
  taken as for ``train_epoch`` on a separate MLE-only fit stopped after ``1 + N`` steps.
- ``generate``: ``C`` chunks (512 prompts) of each use, drawn at random (seed 0); each use's time
  is scaled by (all rows / rows done) (``measured_expanded``, ``measured_synthetic``).

The batch order is random (the generator's MLE batches hold histories of one length each), so N
batches are a sample of the epoch's batches, not the epoch. Peak RSS of an extrapolated stage is
the peak over the batches that ran (the longest batch of the epoch may need more).

Memory: every stage runs under an address-space cap of ``--max-gb`` GiB above what its process
held after its imports (``RLIMIT_AS``). A stage that needs more fails at the allocation and is
reported as ``"cannot_run_here": true`` with the reason; the stages that do not need it still run.

For each stage: seconds, peak RSS (``ru_maxrss`` of the stage's process), the RSS after the
imports (so the stage's own share is visible) and the 1-minute load average at the stage's start
and end (the machine may be shared: a figure taken under load is slower than the code). Growth exponent: the log-log slope of seconds
(and of peak RSS above the import baseline) against the number of users, fitted over the scales
run; projection to 10M and 100M users is ``value * (target_users / users)**slope`` from the
largest scale. The first stage whose projected memory passes ``--machine-gb`` or whose time
passes ``--hours`` hours breaks one machine; the table names the engine that takes it over.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

STAGES = ("ingest", "materialize", "gen_fit", "generate", "train_epoch", "index", "recommend")
# what each stage reads from an earlier one (a failed need skips the stage; the others still run)
NEEDS = {"materialize": ("ingest",), "gen_fit": ("ingest",), "generate": ("ingest",), "train_epoch": ("ingest",),
         "index": ("train_epoch",), "recommend": ("materialize", "index")}
TAKEOVER = {
    "ingest": "Spark offline store (offline_store: type: spark) for the feature tables",
    "materialize": "Feast spark.engine batch materialization into Redis Cluster",
    "gen_fit": "the generator trained data-parallel under torchrun (DDP) on GPUs",
    "generate": "generation split by user across processes/GPUs (each rank expands its slice)",
    "train_epoch": "TorchRec DMP under torchrun on GPUs (nccl), sharded tables",
    "index": "FAISS IVF/HNSW (or IVF-PQ) index, built offline, sharded",
    "recommend": "more serving replicas; Redis Cluster online store",
}
TARGETS = (10_000_000, 100_000_000)
MODEL = "scaling"
GEN_CHUNK = 512  # prompts per generation chunk (SequenceGAN.expand / sample_users default)
SHORT, EXPAND_BY, SYNTH_SHARE = 8, 10, 0.25  # the pipeline's defaults (benchmarks/seq_gan_fit.py)
OOM_MARKS = ("can't allocate memory", "MemoryError", "Cannot allocate memory", "std::bad_alloc")


def _status_mb(field: str) -> float:
    """A ``/proc/self/status`` size of this process (MB): ``VmRSS``, ``VmSize``, ..."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    """Current RSS of this process (MB)."""
    return _status_mb("VmRSS")


def _cap_memory(gb: float | None) -> None:
    """Let this process grow by at most ``gb`` GiB of address space from now on: an allocation
    past it fails (torch/numpy raise) instead of the kernel's OOM killer taking the machine."""
    if not gb:
        return
    cap = int((_status_mb("VmSize") + gb * 1024) * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))


class _Enough(Exception):
    """Raised from the optimizer-step hook once the measured batches have run (ends the fit early)."""


@contextmanager
def _step_clock(max_steps: int):
    """Timestamps at the end of every step of the first optimizer that steps (the training loop's
    own). With ``max_steps`` > 0 the loop is stopped (``_Enough``, swallowed here) after
    ``1 + max_steps`` steps: the first is the warm-up, the next ``max_steps`` are measured."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    ticks: list[float] = []
    first: list[object] = []

    def hook(opt, args, kwargs) -> None:
        if not first:
            first.append(opt)
        if opt is first[0]:
            ticks.append(_now())
            if max_steps and len(ticks) > max_steps:
                raise _Enough

    handle = register_optimizer_step_post_hook(hook)
    try:
        yield ticks
    except _Enough:
        pass
    finally:
        handle.remove()


def _per_batch(ticks: list[float], batches_per_epoch: int) -> dict:
    """Extrapolated epoch from the step timestamps (the first step is the warm-up)."""
    n = len(ticks) - 1
    if n < 1:
        raise RuntimeError("fewer than 2 optimizer steps ran: nothing to extrapolate from")
    per = (ticks[-1] - ticks[0]) / n
    return {"seconds_per_batch": round(per, 4), "measured_batches": n, "batches_per_epoch": int(batches_per_epoch),
            "epoch_seconds": round(per * batches_per_epoch, 4)}


def _name(k: float) -> str:
    return "beauty_x" + f"{k:g}".replace(".", "p")


def scaled_beauty(k: float):
    """``k`` copies of Beauty with fresh user ids and remapped item ids (see the module doc);
    ``k`` < 1: the first ``k`` share of the users (and the items they touched)."""
    import pandas as pd

    from ecaug_feast.datasets import load_dataset, subset_users
    from ecaug_feast.datasets.base import Dataset

    ds = load_dataset("beauty")
    if k < 1:
        sub = subset_users(ds, int(ds.interactions["user_id"].max() * k))
        return Dataset(name=_name(k), interactions=sub.interactions, items=sub.items, meta=sub.meta)
    k = int(k)
    n_u, n_i = int(ds.interactions["user_id"].max()), int(ds.items["item_id"].max())
    inter = pd.concat([ds.interactions.assign(user_id=ds.interactions["user_id"] + r * n_u,
                                              item_id=ds.interactions["item_id"] + r * n_i) for r in range(k)],
                      ignore_index=True)
    items = pd.concat([ds.items.assign(item_id=ds.items["item_id"] + r * n_i) for r in range(k)], ignore_index=True)
    return Dataset(name=_name(k), interactions=inter, items=items, meta={**ds.meta, "scaled_copies": k})


def _redis(home: Path) -> tuple[object, str]:
    from ecaug_feast.redis_server import EmbeddedRedis, free_port

    server = EmbeddedRedis.for_state(home, port=free_port())
    return server, server.start()


def _training_histories(name: str):
    """The scaled dataset's training data, the sequence model's config and its training histories
    (the serving rows' ``recent_items``: the histories both the recommender and the GAN fit on)."""
    from ecaug_feast.datasets.store import load_processed
    from ecaug_feast.jobs.train_data import build_in_memory
    from recommender.seq_train import histories_for, seq_config_for

    data = load_processed(name)
    td = build_in_memory(data.train, data.items)
    cfg = seq_config_for(td, embedding_dim=32)
    return td, cfg, histories_for(td, cfg, "valid")


# ``--linear`` (issue 33): the generator's fit takes the sampled loss and its draws FAISS candidate
# sets (an IVF index at every scale, the kind used above IVF_ABOVE items), the sequence model's
# epoch the sampled softmax; without it, the full softmax and full-vocabulary draws (today's path
# below the SAMPLED_ABOVE threshold)
LINEAR = {"on": False}
# ``--clock cpu``: stages timed by this process's CPU time (user + system; every stage runs one
# thread) instead of wall time, for a shared machine where the load moves wall time several-fold.
# It misses work done in other processes (the Redis server of materialize and recommend).
CLOCK = {"cpu": False}


def _now() -> float:
    return time.process_time() if CLOCK["cpu"] else time.perf_counter()
LINEAR_GAN = {"loss": "sampled", "generation": "candidates", "candidate_index": "ivf"}


def _gan_config(**kw):
    from ecaug_feast.synth.seq_gan import SeqGANConfig

    return SeqGANConfig(threads=1, device="cpu", seed=0, **(LINEAR_GAN if LINEAR["on"] else {"loss": "full", "generation": "full"}),
                        **kw)


def _gen_fit(values, offsets, epochs: int, adv_steps: int, max_batches: int) -> dict:
    """Time the generator's fit (see the module doc for the extrapolated variant)."""
    import numpy as np

    from ecaug_feast.synth.seq_gan import SequenceGAN

    if not max_batches:
        t = _now()
        with _step_clock(0) as ticks:  # the MLE optimizer's steps: where the MLE epochs end
            g = SequenceGAN(_gan_config(mle_epochs=epochs, patience=epochs + 1, adversarial=adv_steps > 0,
                                        adv_steps=adv_steps)).fit(values, offsets)
        seconds = _now() - t
        mle_s = ticks[-1] - t if ticks else 0.0
        return {"seconds": seconds, "mle_s": round(mle_s, 2), "after_mle_s": round(seconds - mle_s, 2), "mle_epochs": g.report["mle_epochs"],
                "adv_steps": g.report.get("adversarial", {}).get("steps", 0), "vocab": g.report["vocab"], "histories": g.report["histories"]}
    cfg = _gan_config(mle_epochs=epochs, adv_steps=adv_steps)
    n_rows = int((np.diff(offsets) >= 1).sum())
    n_fit = n_rows - max(1, int(n_rows * cfg.holdout))  # the rows its MLE epoch walks (the rest is held out)
    with _step_clock(max_batches) as ticks:  # the MLE epoch: its first 1 + max_batches steps
        SequenceGAN(_gan_config(mle_epochs=1, patience=2, adversarial=False)).fit(values, offsets)
    mle = _per_batch(ticks, math.ceil(n_fit / cfg.batch_size))
    t = _now()  # everything else of the fit, in full (held-out pass, adversarial steps)
    g = SequenceGAN(_gan_config(mle_epochs=0, adversarial=adv_steps > 0, adv_steps=adv_steps)).fit(values, offsets)
    rest = _now() - t
    t = _now()
    g.heldout_nll()  # the pass every MLE epoch ends with
    nll_s = _now() - t
    return {"seconds": rest + epochs * (mle["epoch_seconds"] + nll_s), "extrapolated": True, **mle, "mle_epochs": epochs,
            "mle_s": round(epochs * (mle["epoch_seconds"] + nll_s), 2), "after_mle_s": round(rest, 2), "heldout_pass_s": round(nll_s, 2),
            "adv_steps": g.report.get("adversarial", {}).get("steps", 0), "vocab": g.report["vocab"], "histories": g.report["histories"]}


def _generate(g, values, offsets, n_users: int, max_chunks: int) -> dict:
    """Time the pipeline's two generation uses (at most ``max_chunks`` chunks of each, scaled up)."""
    import numpy as np

    short = np.flatnonzero(np.diff(offsets) < SHORT)
    n_syn = int(SYNTH_SHARE * n_users)
    rows, syn = short, n_syn
    if max_chunks:
        rng = np.random.default_rng(0)
        rows = np.sort(rng.choice(short, min(len(short), max_chunks * GEN_CHUNK), replace=False))
        syn = min(n_syn, max_chunks * GEN_CHUNK)
    t = _now()
    g.expand(values, offsets, rows, EXPAND_BY, seed=0)
    t_exp = (_now() - t) * len(short) / max(len(rows), 1)
    t = _now()
    g.sample_users(syn, seed=1)
    t_syn = (_now() - t) * n_syn / max(syn, 1)
    out = {"seconds": t_exp + t_syn, "expand_s": round(t_exp, 2), "expanded": int(len(short)), "synthetic_s": round(t_syn, 2),
           "synthetic": n_syn}
    if len(rows) < len(short) or syn < n_syn:
        out.update(extrapolated=True, measured_expanded=int(len(rows)), measured_synthetic=int(syn))
    return out


def run_stage(stage: str, k: float, home: Path, max_batches: int = 0, max_gb: float | None = None,
              gen_epochs: int = 1, gen_adv_steps: int = 10, gen_chunks: int = 0) -> dict:
    """Run one stage for scale ``k`` in this process; returns its figures. ``max_batches``: time
    that many batches and extrapolate (0: in full); ``gen_chunks``: the same for ``generate``;
    ``max_gb``: the stage's memory cap."""
    os.environ["ECAUG_HOME"] = str(home)
    import torch

    torch.set_num_threads(1)
    from ecaug_feast import feast_io
    from ecaug_feast.datasets.store import load_processed

    name = _name(k)
    extra: dict = {}
    if stage == "ingest":
        ds = scaled_beauty(k)
        extra = {"users": int(ds.interactions["user_id"].nunique()), "items": len(ds.items), "interactions": len(ds.interactions)}
        from ecaug_feast.features.ingest import ingest_dataset

        base = _rss_mb()
        _cap_memory(max_gb)
        t = _now()
        ingest_dataset(ds)
    elif stage == "materialize":
        server, url = _redis(home)
        try:
            repo = feast_io.render_repo(home / "feature_repo", state_dir=home, redis_url=url)
            feast_io.apply(repo)
            base = _rss_mb()
            _cap_memory(max_gb)
            t = _now()
            mat = feast_io.materialize(repo)
            seconds = _now() - t
            extra = {"users_written": mat["views"]["user_features"]["entities_written"]}
        finally:
            server.stop()  # SHUTDOWN SAVE: the recommend stage reloads the rows
        return _figures(seconds, base, extra)
    elif stage in ("gen_fit", "generate"):
        from ecaug_feast.synth.seq_gan import SequenceGAN

        _, _, h = _training_histories(name)
        base = _rss_mb()
        _cap_memory(max_gb)
        if stage == "gen_fit":
            fig = _gen_fit(h.values, h.offsets, gen_epochs, gen_adv_steps, max_batches)
        else:
            t = _now()  # untimed setup: a generator with the full vocabulary, no MLE epoch
            g = SequenceGAN(_gan_config(mle_epochs=0, adversarial=False, holdout=0.0)).fit(h.values, h.offsets)
            setup = _now() - t
            fig = {**_generate(g, h.values, h.offsets, len(h.user_ids), gen_chunks), "setup_s": round(setup, 2), "vocab": len(g.vocab)}
        return _figures(fig.pop("seconds"), base, fig)
    elif stage == "train_epoch":
        from recommender.checkpoint import save_checkpoint
        from recommender.seq_model import SeqTwoTower
        from recommender.seq_train import SeqTrainConfig, catalog_of, config_dict, train_seq

        td, cfg, h = _training_histories(name)
        tcfg = SeqTrainConfig(epochs=1, threads=1, seed=0, loss="sampled" if LINEAR["on"] else "full")
        per_epoch = math.ceil(int((h.lengths >= 2).sum()) / tcfg.batch_size)  # users with a next item to predict
        base = _rss_mb()
        _cap_memory(max_gb)
        res = None
        t = _now()
        with _step_clock(max_batches) as ticks:
            res = train_seq(td, None, cfg, tcfg, histories=h)
        seconds = _now() - t
        if res is not None:  # the whole epoch ran (it may have fewer batches than max_batches)
            extra = {"examples_per_s": round(res.examples_per_s), "batches_per_epoch": per_epoch}
            state = res.state if res.state is not None else res.model.state_dict()
        else:
            extra = {"extrapolated": True, **_per_batch(ticks, per_epoch), "stopped_after_s": round(seconds, 2)}
            seconds = extra.pop("epoch_seconds")
            torch.manual_seed(0)
            state = SeqTwoTower(cfg, catalog=catalog_of(td)).state_dict()  # untrained: same shapes for index/recommend
            extra["checkpoint"] = "untrained (extrapolated epoch)"
        save_checkpoint(home / "models" / MODEL, state, cfg, catalog_of(td), train=config_dict(tcfg), data={"dataset": name})
        return _figures(seconds, base, extra)
    elif stage == "index":
        from recommender.serving.loader import load_bundle

        data = load_processed(name)
        pop = data.train["item_id"].value_counts()
        base = _rss_mb()
        _cap_memory(max_gb)
        t = _now()
        bundle = load_bundle(home / "models" / MODEL, pop)
        extra = {"indexed_items": len(bundle.index)}
    elif stage == "recommend":
        from fastapi.testclient import TestClient

        from recommender.serving.app import create_app
        from recommender.serving.wiring import build_services, configure_threads

        server, url = _redis(home)
        try:
            configure_threads(1)
            repo = feast_io.render_repo(home / "feature_repo", state_dir=home, redis_url=url)
            base = _rss_mb()
            _cap_memory(max_gb)
            t0 = _now()
            services = build_services(MODEL, store=feast_io.get_store(repo), poll_s=3600)
            uids = load_processed(name).train["user_id"].drop_duplicates().sample(20, random_state=0).tolist()
            with TestClient(create_app(services)) as client:
                startup = _now() - t0
                lat = []
                for u in uids:
                    t = _now()
                    r = client.get("/recommend", params={"user_id": int(u), "k": 10})
                    lat.append(_now() - t)
                    assert r.status_code == 200 and not r.json()["degraded"], r.text
        finally:
            server.stop()
        lat.sort()
        return _figures(lat[len(lat) // 2], base, {"startup_s": round(startup, 2)})
    else:
        raise SystemExit(f"unknown stage {stage!r} (one of {', '.join(STAGES)})")
    return _figures(_now() - t, base, extra)


def _figures(seconds: float, base_mb: float, extra: dict) -> dict:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # peak address space too: --max-gb caps its growth, so this says how close the stage came
    return {"seconds": round(seconds, 4), "peak_rss_mb": round(peak, 1), "base_rss_mb": round(base_mb, 1),
            "peak_vm_mb": round(_status_mb("VmPeak"), 1), **extra}


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(y) on log(x) (None with fewer than two usable points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else None


def _solve(n0: float, ratio: float, exponent: float) -> float | None:
    """Users at which ``value * (n / n0) ** exponent`` reaches ``ratio`` times today's value;
    None when that lies beyond any float (a near-flat stage)."""
    try:
        return n0 * ratio ** (1 / exponent)
    except OverflowError:
        return None


def _stage_error(p: subprocess.CompletedProcess, max_gb: float | None) -> dict:
    """What a failed stage process reports: out of memory under the cap (or killed) says that the
    stage cannot run on this machine, anything else is the last line of its stderr."""
    err = p.stderr.strip()
    last = (err.splitlines() or ["?"])[-1][:300]
    if any(m in err for m in OOM_MARKS) or p.returncode == -9:
        why = f"needs more than {max_gb:g} GiB above its imports (--max-gb)" if max_gb else "out of memory"
        if p.returncode == -9:
            why = "killed (SIGKILL: the kernel's OOM killer?)"
        return {"error": f"cannot run on this machine: {why}: {last}", "cannot_run_here": True}
    return {"error": last}


def run_scale(k: float, stages: list[str], a: argparse.Namespace) -> dict:
    """Every stage for scale ``k``, each in its own process, in one temp ECAUG_HOME."""
    out: dict = {}
    mb, chunks = (a.max_batches, a.gen_chunks) if k > a.extrapolate_above else (0, 0)
    with tempfile.TemporaryDirectory(prefix=f"ecaug-scaling-{_name(k)}-") as home:
        for stage in stages:
            failed = [n for n in NEEDS.get(stage, ()) if "error" in out.get(n, {}) or "skipped" in out.get(n, {})]
            if failed:
                out[stage] = {"skipped": f"needs {', '.join(failed)}"}
                print(f"x{k:g} {stage}: skipped (needs {', '.join(failed)})", file=sys.stderr)
                continue
            cmd = [sys.executable, __file__, "--stage", stage, "--scales", f"{k:g}", "--home", home, "--max-batches", str(mb), "--gen-chunks", str(chunks),
                   "--max-gb", f"{a.max_gb:g}", "--gen-mle-epochs", str(a.gen_mle_epochs), "--gen-adv-steps", str(a.gen_adv_steps)]
            cmd += (["--linear"] if a.linear else []) + ["--clock", a.clock]
            load0 = os.getloadavg()[0]  # shared machine: each figure carries the load it ran under
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.stage_timeout)
            except subprocess.TimeoutExpired:
                out[stage] = {"error": f"over {a.stage_timeout:.0f}s (--stage-timeout)"}
                print(f"x{k:g} {stage}: over {a.stage_timeout:.0f}s", file=sys.stderr)
                continue
            if p.returncode != 0:
                out[stage] = _stage_error(p, a.max_gb)
                print(f"x{k:g} {stage}: failed: {out[stage]['error']}", file=sys.stderr)
                continue
            out[stage] = json.loads(p.stdout.strip().splitlines()[-1])
            out[stage]["loadavg_1m"] = [round(load0, 2), round(os.getloadavg()[0], 2)]  # start, end
            print(f"x{k:g} {stage}: {out[stage]}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", type=float, nargs="+", default=[1, 4], help="multiples of Beauty (< 1: a share of its users)")
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--stage-timeout", type=float, default=600, help="seconds one stage may take")
    ap.add_argument("--max-batches", type=int, default=0,
                    help="train_epoch/gen_fit: time this many batches after a warm-up one and extrapolate to the epoch; "
                         "generate: this many chunks of each use (0: everything in full)")
    ap.add_argument("--gen-chunks", type=int, default=0, help="generate: time this many chunks (512 prompts) of each use "
                    "and scale up (0: every history)")
    ap.add_argument("--extrapolate-above", type=float, default=0, help="--max-batches and --gen-chunks apply only to scales above this")
    ap.add_argument("--max-gb", type=float, default=16, help="GiB a stage may grow by (address space); 0: no cap")
    ap.add_argument("--gen-mle-epochs", type=int, default=1, help="gen_fit: maximum-likelihood epochs (never early-stopped)")
    ap.add_argument("--gen-adv-steps", type=int, default=10, help="gen_fit: adversarial steps (0: MLE only, no adversarial phase)")
    ap.add_argument("--machine-gb", type=float, default=128, help="memory of the one machine (projection)")
    ap.add_argument("--hours", type=float, default=24, help="wall time one stage may take on it (projection)")
    ap.add_argument("--linear", action="store_true", help="gen_fit, generate, train_epoch: the sampled losses and candidate draws "
                    "(issue 33) instead of the full softmax and full-vocabulary draws")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="time stages by wall clock or by the stage "
                    "process's CPU time (one thread; a shared machine's load does not move it; misses Redis's own work)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--previous", help="an earlier --json output: its scales join the fit (run scales one at a time); "
                    "at a scale run again, the stages run now replace its figures and the others are kept")
    ap.add_argument("--stage", help=argparse.SUPPRESS)  # internal: run one stage here
    ap.add_argument("--home", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    LINEAR["on"] = a.linear
    CLOCK["cpu"] = a.clock == "cpu"
    if a.stage:
        print(json.dumps(run_stage(a.stage, a.scales[0], Path(a.home), a.max_batches, a.max_gb or None,
                                   a.gen_mle_epochs, a.gen_adv_steps, a.gen_chunks)))
        return 0

    results: dict[float, dict] = {}
    known_users: dict[float, int] = {}
    if a.previous:
        for key, rec in json.loads(Path(a.previous).read_text())["scales"].items():
            rec = dict(rec)
            known_users[float(key)] = rec.pop("users", None)
            results[float(key)] = {st: v for st, v in rec.items() if isinstance(v, dict)}
    for k in a.scales:  # a scale run again keeps the earlier run's stages it does not rerun
        results[k] = {**results.get(k, {}), **run_scale(k, a.stages, a)}
    stages = [st for st in STAGES if any(st in r for r in results.values())]
    out = growth(results, known_users, stages, a.machine_gb, a.hours)
    out.update(linear=a.linear, clock=a.clock, max_batches=a.max_batches, gen_chunks=a.gen_chunks, extrapolate_above=a.extrapolate_above, max_gb=a.max_gb,
               generator={"mle_epochs": a.gen_mle_epochs, "adv_steps": a.gen_adv_steps, "expand_shorter_than": SHORT,
                          "expand_by": EXPAND_BY, "synthetic_share": SYNTH_SHARE})
    if a.json:
        print(json.dumps(out))  # one line: the last stdout line is the JSON object
    else:
        print(table_text(out))
    return 0


def growth(results: dict[float, dict], known_users: dict[float, int], stages: list[str], machine_gb: float, hours: float) -> dict:
    """Per-stage exponents, projections and the first stage to break one machine."""
    scales = sorted(results)
    users = {k: results[k].get("ingest", {}).get("users") or known_users.get(k) for k in scales}
    table = []
    for stage in stages:
        ks = [k for k in scales if "seconds" in results[k].get(stage, {}) and users[k]]
        xs = [float(users[k]) for k in ks]
        t_slope = slope(xs, [results[k][stage]["seconds"] for k in ks])
        m_slope = slope(xs, [results[k][stage]["peak_rss_mb"] - results[k][stage]["base_rss_mb"] for k in ks])
        row = {"stage": stage, "time_exponent": None if t_slope is None else round(t_slope, 2),
               "memory_exponent": None if m_slope is None else round(m_slope, 2),
               "extrapolated_at": [f"{k:g}" for k in ks if results[k][stage].get("extrapolated")],
               "cannot_run_at": [f"{k:g}" for k in scales if results[k].get(stage, {}).get("cannot_run_here")]}
        if ks:
            top = results[ks[-1]][stage]
            for n in TARGETS:
                f = n / xs[-1]
                row[f"seconds_at_{n}"] = round(top["seconds"] * f ** t_slope) if t_slope is not None else None
                own = max(top["peak_rss_mb"] - top["base_rss_mb"], 1.0)
                row[f"gb_at_{n}"] = round((top["base_rss_mb"] + own * f ** m_slope) / 1024, 1) if m_slope is not None else None
        table.append(row)
    breaks = None  # the stage that passes a limit at the fewest users (solving the fitted power law)
    for row in table:
        ks = [k for k in scales if "seconds" in results[k].get(row["stage"], {}) and users[k]]
        if not ks:
            continue
        top, n0 = results[ks[-1]][row["stage"]], float(users[ks[-1]])
        own = max(top["peak_rss_mb"] - top["base_rss_mb"], 1.0)
        limits = []
        # a near-flat stage (exponent ~0) never reaches a limit: its power overflows, so it is skipped
        if row["time_exponent"] and row["time_exponent"] > 0:
            limits.append((_solve(n0, hours * 3600 / top["seconds"], row["time_exponent"]), f"time > {hours:g} h"))
        if row["memory_exponent"] and row["memory_exponent"] > 0:
            room = machine_gb * 1024 - top["base_rss_mb"]
            limits.append((_solve(n0, room / own, row["memory_exponent"]), f"memory > {machine_gb:g} GB"))
        for n, why in limits:
            if n is None:
                continue
            if breaks is None or n < breaks["users"]:
                breaks = {"users": int(n), "stage": row["stage"], "why": why, "engine": TAKEOVER[row["stage"]]}
    return {"scales": {f"{k:g}": {"users": users[k], **results[k]} for k in scales}, "growth": table,
            "first_to_break": breaks, "machine_gb": machine_gb, "hours": hours,
            "method": "k copies of Beauty: fresh user ids, remapped item ids (own catalogue block per copy)"}


def table_text(out: dict) -> str:
    """The human table: seconds and peak RSS per stage and scale (``~`` = extrapolated, see the
    module doc; ``--`` = did not run, with the reason below), then exponents and projections."""
    scales = list(out["scales"])
    lines = ["stage        " + "".join(f"{'x' + k:>22}" for k in scales)]
    notes = []
    for row in out["growth"]:
        cells = []
        for k in scales:
            f = out["scales"][k].get(row["stage"], {})
            if "seconds" in f:
                mark = "~" if f.get("extrapolated") else " "
                cells.append(f"{mark}{f['seconds']:>9.2f}s {f['peak_rss_mb'] / 1024:>6.2f}GB")
                if f.get("extrapolated") and "measured_batches" in f:
                    notes.append(f"x{k} {row['stage']}: ~ = {f['measured_batches']} of {f['batches_per_epoch']} batches timed, x batches")
                elif f.get("extrapolated"):
                    notes.append(f"x{k} {row['stage']}: ~ = {f['measured_expanded']} expanded + {f['measured_synthetic']} synthetic timed, scaled")
            else:
                cells.append(f"{'--':>22}")
                notes.append(f"x{k} {row['stage']}: {f.get('error') or f.get('skipped') or 'not run'}")
        lines.append(f"{row['stage']:<13}" + "".join(f"{c:>22}" for c in cells))
    lines.append("")
    lines.append(f"{'stage':<13}{'time exp':>9}{'mem exp':>9}" + "".join(f"{'s@' + f'{n:.0e}':>12}{'GB@' + f'{n:.0e}':>10}" for n in TARGETS))
    for row in out["growth"]:
        def fmt(v, w):
            return f"{'-' if v is None else v:>{w}}"
        lines.append(f"{row['stage']:<13}{fmt(row['time_exponent'], 9)}{fmt(row['memory_exponent'], 9)}"
                     + "".join(fmt(row.get(f"seconds_at_{n}"), 12) + fmt(row.get(f"gb_at_{n}"), 10) for n in TARGETS))
    lines += ["", *notes, f"first to break: {out['first_to_break']}"]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
