"""The whole study: every (fraction, seed) cell of a protocol, then the report.

Reads the dataset ``ecaug ingest`` wrote (``<state>/datasets/<name>``), runs the cells
(``study.cell``; ``workers`` processes, one thread each) in private workspaces beside the output,
and writes ``results.json`` (protocol, command, rows, summary), ``per_user.npz`` (the per-user
arrays the intervals come from), ``table.md`` and ``report.md``, through a temp folder renamed
into place. A screen's outputs hold validation figures only.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ecaug_feast.errors import EcaugError
from ecaug_feast.names import check_name, owned_child
from ecaug_feast.study.cell import run_cell
from ecaug_feast.study.protocol import Protocol, make_protocol
from ecaug_feast.study.report import (cold_table_markdown, contrast_markdown, summarize, summarize_cold,
                                      summarize_contrasts, table_markdown)

OUTPUT_FILES = {"results.json", "per_user.npz", "table.md", "report.md"}


def _cell_entry(args: tuple[dict[str, Any], str, float, int, str]) -> list[dict[str, Any]]:
    pj, data_dir, fraction, seed, work = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from ecaug_feast.noise import quiet_known_noise

    quiet_known_noise()
    return run_cell(make_protocol(pj), data_dir, fraction, seed, work)


def run_study(state_dir: Path, p: Protocol, out_dir: Path | None = None, command: str = "",
              progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Run protocol ``p`` on ``<state_dir>/datasets/<p.dataset>``; returns the summary written to
    ``results.json`` (``out_dir``, default ``<state>/experiments/<name>-<time>``)."""
    t0 = time.time()
    data_dir = owned_child(Path(state_dir) / "datasets", p.dataset, "dataset name")
    if not (data_dir / "meta.json").exists():
        raise EcaugError(f"{data_dir}: no processed dataset '{p.dataset}' (run `ecaug ingest --dataset {p.dataset}` first)")
    out_dir = Path(out_dir or default_out_dir(state_dir, p.name))
    check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.cells-", dir=out_dir.parent))
    cells = sorted(((float(f), int(s)) for f in p.fractions for s in range(p.first_seed, p.first_seed + p.seeds)), key=lambda c: -c[0])
    args = [(p.to_json(), str(data_dir), f, s, str(work)) for f, s in cells]
    rows: list[dict[str, Any]] = []
    try:
        if p.workers > 1 and len(cells) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(max_workers=p.workers, mp_context=mp.get_context("spawn")) as ex:
                futs = {ex.submit(_cell_entry, a): a for a in args}
                for i, fut in enumerate(as_completed(futs), 1):
                    rows += fut.result()
                    if progress:
                        progress(i, len(cells), f"fraction={futs[fut][2]} seed={futs[fut][3]}")
        else:
            for i, a in enumerate(args, 1):
                rows += _cell_entry(a)
                if progress:
                    progress(i, len(cells), f"fraction={a[2]} seed={a[3]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {
        "protocol": p.to_json(), "command": command, "screen": p.screen,
        "scored_on": "validation, choose half (a screen: no test figure)" if p.screen else "test, once per (fraction, seed, method)",
        "cold_items": p.cold_frac is not None,
        "results": (summarize_cold if p.cold_frac is not None else summarize)(rows, p.bootstrap, p.bootstrap_seed),
        "contrasts": [] if p.cold_frac is not None else summarize_contrasts(rows, p.bootstrap, p.bootstrap_seed),
        "runs": [{k: v for k, v in r.items() if k not in ("per_user", "users")} for r in rows],
        "seconds": round(time.time() - t0, 1), "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    summary["out_dir"] = str(write_outputs(summary, rows, out_dir))
    return summary


def default_out_dir(state_dir: Path, name: str) -> Path:
    """``<state>/experiments/<name>-<time>-<random>``: the name checked (no ``..`` or ``/``), and
    unique even for studies started in the same second."""
    check_name(name, "protocol name")
    root = Path(state_dir) / "experiments"
    while True:
        out = root / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        if not out.exists():
            return out


def check_out_dir(out_dir: Path) -> None:
    """``--out`` must be new, empty, or an earlier study's output (replaced), never anything else."""
    out_dir = Path(out_dir).expanduser()
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_symlink() or not out_dir.is_dir():
        raise EcaugError(f"{out_dir}: the output exists and is not a folder")
    names = {q.name for q in out_dir.iterdir()}
    if names and not ("results.json" in names and names <= OUTPUT_FILES):
        raise EcaugError(f"{out_dir}: the output folder holds other files; give a new or empty folder")


LIFT_NOTE = ("Lift: NDCG@10 vs real_only over the same users; interval: two-stage bootstrap (seeds, then users "
             "within each seed, paired), 2.5-97.5 percentiles.")
LIFT_NOTE_COLD = ("Cold-item split: a share of the items (cold_frac, drawn by cold_seed) has no training interaction and no "
                  "feature; every user is ranked over warm and cold items together (full ranking); `cold` = users whose "
                  "target is a cold item. Lift: NDCG@10 vs cold_attr_tower over the same users, paired two-stage bootstrap.")


def report_markdown(summary: dict[str, Any]) -> str:
    p = summary["protocol"]
    head = ("**Screen: validation figures only (the choose half); no test figure was computed.**" if summary["screen"]
            else "Test scored once per (fraction, seed, method), after every choice was made on the choose half.")
    return "\n".join([f"# ecaug experiment: protocol `{p['name']}` on `{p['dataset']}`", "", head, "",
                      f"Command: `{summary['command']}`. Wall time {summary['seconds']:.0f} s.", "",
                      LIFT_NOTE_COLD if summary.get("cold_items") else LIFT_NOTE, "",
                      summary_table(summary), *_contrast_section(summary), "## Protocol", "", "```json",
                      json.dumps(p, indent=1), "```", ""])


CONTRAST_NOTE = ("The GAN method against its controls and ablations: lift of the method minus lift of the control, both "
                 "over real_only on the same users, in NDCG@10 lift points; paired two-stage bootstrap as above.")


def _contrast_section(summary: dict[str, Any]) -> list[str]:
    table = contrast_markdown(summary.get("contrasts") or [], summary["screen"])
    return ["## Contrasts", "", CONTRAST_NOTE, "", table] if table else []


def summary_table(summary: dict[str, Any]) -> str:
    """The cold / warm / all table for a cold-item study, the lift table otherwise."""
    fn = cold_table_markdown if summary.get("cold_items") else table_markdown
    return fn(summary["results"], summary["screen"])


def write_outputs(summary: dict[str, Any], rows: list[dict[str, Any]], out_dir: Path) -> Path:
    """The output files, written to a temp folder and renamed into place."""
    out_dir = out_dir.expanduser().resolve()
    check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)  # a new results folder's parent (merge_study --out a/b)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (tmp / "results.json").write_text(json.dumps(summary, indent=1, default=_jsonable))
        arrays = {f"{r['method']}|{r['fraction']:g}|{r['seed']}|{k}": v for r in rows for k, v in r.get("per_user", {}).items()}
        arrays.update({f"users|{r['fraction']:g}|{r['seed']}": r["users"] for r in rows})
        np.savez_compressed(tmp / "per_user.npz", **arrays)
        (tmp / "table.md").write_text(summary_table(summary))
        (tmp / "report.md").write_text(report_markdown(summary))
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _replace_dir(new: Path, out_dir: Path) -> None:
    """``new`` renamed to ``out_dir``; an earlier output is renamed aside first and removed only
    once the new one is in place (a crash in between leaves it, restored or aside, never lost)."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{secrets.token_hex(3)}")
        out_dir.rename(old)
    try:
        new.rename(out_dir)
    except BaseException:
        if old is not None:
            old.rename(out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


# settings that may differ between the runs of one study split over seeds (merge_studies)
PER_RUN = ("seeds", "first_seed", "workers")


def read_outputs(d: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A study output folder read back, as :func:`write_outputs` wrote it: ``results.json``, and
    its runs as rows, each with its per-user arrays (``per_user``) and test user ids (``users``).
    A folder that is not a study output: one-line error."""
    try:
        res = json.loads((d / "results.json").read_text())
        npz = np.load(d / "per_user.npz")
    except (OSError, ValueError) as exc:
        raise EcaugError(f"{d}: not a study output ({type(exc).__name__})") from None
    rows = []
    for r in res["runs"]:
        tag = f"{r['method']}|{r['fraction']:g}|{r['seed']}|"
        per_user = {k[len(tag):]: npz[k] for k in npz.files if k.startswith(tag)}
        rows.append({**r, "per_user": per_user, "users": npz[f"users|{r['fraction']:g}|{r['seed']}"]})
    return res, rows


def merge_studies(dirs: list[Path], out_dir: Path, methods_may_differ: bool = False) -> dict[str, Any]:
    """One study's outputs from runs of the same protocol over different seeds (``first_seed``):
    the rows and per-user arrays read back from each run's ``results.json`` / ``per_user.npz``,
    summarized and written as :func:`run_study` writes them. Protocols that differ in anything
    but the seeds, or a seed that appears twice: one-line error. ``methods_may_differ``: runs may
    leave methods out (a method too costly for every seed); each row then counts the seeds it
    has, every lift is paired within those seeds, and ``methods_by_seed`` records who ran where."""
    per_run = PER_RUN + (("methods",) if methods_may_differ else ())
    rows: list[dict[str, Any]] = []
    methods_by_seed: dict[int, list[str]] = {}
    protos, commands, seconds = [], [], 0.0
    for d in map(Path, dirs):
        res, run_rows = read_outputs(d)
        protos.append({k: v for k, v in res["protocol"].items() if k not in per_run})
        for r in res["runs"]:
            methods_by_seed.setdefault(int(r["seed"]), []).append(r["method"])
        commands.append(res.get("command", ""))
        seconds += float(res.get("seconds", 0))
        rows.extend(run_rows)
    if any(p != protos[0] for p in protos):
        raise EcaugError("merge: the runs' protocols differ in more than their seeds")
    keys = [(r["method"], r["fraction"], r["seed"]) for r in rows]
    if len(set(keys)) != len(keys):
        raise EcaugError("merge: a (method, fraction, seed) appears in more than one run")
    seeds = sorted({r["seed"] for r in rows})
    merged = {**protos[0], "seeds": len(seeds), "first_seed": seeds[0]}
    if methods_may_differ:
        merged["methods"] = list(dict.fromkeys(m for s in seeds for m in methods_by_seed[s]))
    p = make_protocol(merged, source="merged protocol")
    extra = {"methods_by_seed": {str(s): methods_by_seed[s] for s in seeds}} if methods_may_differ else {}
    summary = {
        "protocol": {**p.to_json(), "seed_list": seeds, **extra}, "command": " ; ".join(commands), "screen": p.screen,
        "cold_items": p.cold_frac is not None,
        "scored_on": "validation, choose half (a screen: no test figure)" if p.screen else "test, once per (fraction, seed, method)",
        "results": (summarize_cold if p.cold_frac is not None else summarize)(rows, p.bootstrap, p.bootstrap_seed),
        "contrasts": [] if p.cold_frac is not None else summarize_contrasts(rows, p.bootstrap, p.bootstrap_seed),
        "runs": [{k: v for k, v in r.items() if k not in ("per_user", "users")} for r in rows],
        "seconds": round(seconds, 1), "merged_from": [str(d) for d in dirs],
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    summary["out_dir"] = str(write_outputs(summary, rows, Path(out_dir)))
    return summary
