"""Silence the known noise of the libraries ecaug drives, and nothing else.

Each entry names the library module (or logger) and the warning category, so a real warning from
anywhere else, or of another kind from the same library, still shows. Called once by the CLI
entry (``ecaug_feast.cli.main``); a library import never changes warning filters.

What was seen on ``ecaug demo`` (feast 0.67, torchrec 1.x, fbgemm_gpu, faiss 1.x) and is muted:

- ``DeprecationWarning`` from ibis' duckdb backend (Feast's offline store), fbgemm_gpu's op
  modules, ``torch.jit`` (called by fbgemm/torchrec) and ``torchrec.optim``;
- ``FutureWarning`` from torchrec's planner and DistributedModelParallel, and torch's
  ShardedTensor deprecation raised through our single-process ``recommender.distributed``;
- fbgemm_gpu's INFO lines on the root logger ("Successfully loaded: '...so'", "[TBE=...]");
- ``faiss.loader`` INFO lines (it probes AVX512/AVX2 builds one by one);
- torchrec planner WARNING lines about its own topology/storage heuristics;
- torchrec's "Sharding Type is data_parallel, caching params will be ignored" (once per table);
- torch.fx's "is_fx_tracing will return true ..." warning (torch's own logger);
- starlette's warning about httpx when FastAPI's TestClient is imported, httpx's per-request INFO.

Feast's modules call ``warnings.simplefilter("once", DeprecationWarning)`` when imported, which puts
a catch-all filter *in front of* ours; so besides the filters, ``warnings.showwarning`` is wrapped
to drop exactly the warnings listed here, whatever filters a later import adds.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from typing import Any

# (category, module regex matched at the start of the warning's module, message regex)
KNOWN_WARNINGS: list[tuple[type[Warning], str, str]] = [
    (DeprecationWarning, r"ibis\.backends\.duckdb", ""),
    (DeprecationWarning, r"fbgemm_gpu(\.|$)", ""),
    (DeprecationWarning, r"torch\.jit\._script", r"`torch\.jit\.(script|interface)` is deprecated"),
    (DeprecationWarning, r"torchrec\.optim", ""),
    (FutureWarning, r"torchrec\.distributed", ""),
    (FutureWarning, r"recommender\.distributed", r"Please use DTensor instead"),
    # the sequence model's tables run on TorchRec's dense kernel; fbgemm registers its backward
    # through its own autograd Function, and torch warns about the op anyway (gradients do reach
    # the tables: tests/recommender/test_seq_model.py checks that a step changes them)
    (UserWarning, r"torch\.autograd\.graph", r"fbgemm::dense_embedding_codegen_lookup_function: an autograd kernel"),
    # starlette's StarletteDeprecationWarning (a UserWarning) when FastAPI's TestClient is imported
    (Warning, r"fastapi\.testclient", r"Using `httpx` with `starlette\.testclient` is deprecated"),
]

# logger name -> the lowest level still shown
KNOWN_LOGGERS: dict[str, int] = {
    "faiss.loader": logging.WARNING,
    "torchrec.distributed.planner": logging.ERROR,
    "torch.fx._symbolic_trace": logging.ERROR,
    "torch.distributed": logging.ERROR,
    "fbgemm_gpu": logging.WARNING,
    "httpx": logging.WARNING,  # one INFO line per request (the demo's in-process /recommend)
}

# Packages that log INFO through the *root* logger (``logging.info(...)``): their records are
# recognised by the file that emitted them.
ROOT_LOGGING_PACKAGES = ("/fbgemm_gpu/",)
# WARNING records on the root logger that are known noise: (emitting file's package, message regex).
# torchrec says this for every data-parallel (unsharded) table when it builds the model's state dict.
KNOWN_ROOT_WARNINGS = [("/torchrec/", re.compile(r"^Sharding spec not found for "))]


class _RootInfoFromPackages(logging.Filter):
    """Drops sub-WARNING records that a known package logged on the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname.replace("\\", "/")
        if record.levelno >= logging.WARNING:
            return not any(p in path and rx.search(str(record.msg)) for p, rx in KNOWN_ROOT_WARNINGS)
        return not any(p in path for p in ROOT_LOGGING_PACKAGES)


# logger name -> WARNING messages of that logger that are known noise (other messages still show).
# torchrec's sharding utils say this once per data-parallel table whenever a model is built (the
# sequence model's tables are data-parallel on one CPU process: there is no cache to configure).
KNOWN_LOGGER_MESSAGES: dict[str, re.Pattern[str]] = {
    "torchrec.distributed.utils": re.compile(r"^(Sharding Type is data_parallel|Compute Kernel is dense), caching params will be ignored$"),
}


class _KnownMessages(logging.Filter):
    """Drops the records of one logger whose message matches its known-noise pattern."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


_ROOT_FILTER = _RootInfoFromPackages()
_COMPILED = [(c, re.compile(r"(^|\.)" + m), re.compile(t, re.IGNORECASE) if t else None) for c, m, t in KNOWN_WARNINGS]


def _dotted(filename: str) -> str:
    """``.../site-packages/ibis/backends/duckdb/__init__.py`` -> ``...site-packages.ibis.backends.duckdb``."""
    stem = os.path.splitext(filename)[0].replace("\\", "/").strip("/")
    dotted = stem.replace("/", ".")
    return dotted[: -len(".__init__")] if dotted.endswith(".__init__") else dotted


def is_known_noise(message: Any, category: type[Warning], filename: str) -> bool:
    """True for a warning listed in ``KNOWN_WARNINGS`` (by category, emitting module, message)."""
    mod = _dotted(filename)
    text = str(message)
    return any(issubclass(category, c) and m.search(mod) and (t is None or t.search(text)) for c, m, t in _COMPILED)


def _guard_showwarning() -> None:
    original = warnings.showwarning
    if getattr(original, "_ecaug_guard", False):
        return

    def showwarning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        if is_known_noise(message, category, filename):
            return
        original(message, category, filename, lineno, file, line)

    showwarning._ecaug_guard = True  # type: ignore[attr-defined]
    warnings.showwarning = showwarning


def quiet_known_noise() -> None:
    """Install the filters above (idempotent)."""
    for category, module, message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name, level in KNOWN_LOGGERS.items():
        logger = logging.getLogger(name)
        if logger.level < level:
            logger.setLevel(level)
    for name, pattern in KNOWN_LOGGER_MESSAGES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _KnownMessages) for f in logger.filters):
            logger.addFilter(_KnownMessages(pattern))
    root = logging.getLogger()
    if _ROOT_FILTER not in root.filters:
        root.addFilter(_ROOT_FILTER)
    _guard_showwarning()
