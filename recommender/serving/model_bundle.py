"""The model as served: a user encoder + the FAISS index over item embeddings + a version,
swapped atomically when a new checkpoint appears (hot reload, no restart).

A bundle is immutable once built; a request reads ``holder.current`` once and uses that bundle
to the end, so a reload in the middle of a request never mixes two models. Loading happens on a
background thread (or ``/admin/reload``); a failed load keeps the old bundle and is counted.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from recommender.serving.components import UserFeatures
from recommender.serving.index import ItemIndex

log = logging.getLogger(__name__)

UserEncoder = Callable[[Sequence[UserFeatures]], np.ndarray]


@dataclass(frozen=True)
class ModelBundle:
    """What ``/recommend`` needs from a trained model."""

    version: str
    index: ItemIndex
    encode_users: UserEncoder  # features of n users -> (n, d) float32, same space as the index
    source: str | None = None
    loaded_at: float = field(default_factory=time.time)
    info: dict = field(default_factory=dict)
    # a model trained from a shop's repo: its item keys and the popularity and seen items in its
    # indices (:class:`recommender.serving.shop.ShopVocab`), swapped with the model on a reload
    vocab: Any = None


class ModelHolder:
    """Holds the current :class:`ModelBundle` and replaces it when ``fingerprint()`` changes.

    ``loader()`` builds a bundle from whatever is on disk now; ``fingerprint()`` is a cheap
    summary of the on-disk state (e.g. mtimes of the checkpoint files) polled every ``poll_s``.
    """

    def __init__(
        self,
        loader: Callable[[], ModelBundle],
        fingerprint: Callable[[], Hashable] | None = None,
        poll_s: float = 2.0,
        on_reload: Callable[[str, ModelBundle | None], None] | None = None,
    ):
        self._loader = loader
        self._fingerprint = fingerprint
        self._poll_s = poll_s
        self._on_reload = on_reload
        self._current: ModelBundle | None = None
        self._seen_fp: Hashable | None = None
        self._lock = threading.Lock()  # one load at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    @property
    def current(self) -> ModelBundle | None:
        return self._current

    def load(self) -> ModelBundle:
        """Load now (first load or forced reload). Raises if the loader fails and nothing is held."""
        with self._lock:
            fp = self._fingerprint() if self._fingerprint else None
            try:
                bundle = self._loader()
            except Exception as exc:  # keep serving the old model; a half-written checkpoint is normal
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("model load failed, keeping %s: %s",
                            self._current.version if self._current else "nothing", self.last_error)
                if self._on_reload:
                    self._on_reload("error", None)
                if self._current is None:
                    raise
                return self._current
            self._current = bundle  # atomic reference swap
            self._seen_fp = fp
            self.last_error = None
            log.info("serving model %s (%d items)", bundle.version, len(bundle.index))
            if self._on_reload:
                self._on_reload("ok", bundle)
            return bundle

    def maybe_reload(self) -> bool:
        """Reload if the on-disk fingerprint changed since the last load; True if it did."""
        if self._fingerprint is None:
            return False
        try:
            fp = self._fingerprint()
        except Exception as exc:  # checkpoint dir mid-rename: try again next tick
            log.debug("fingerprint failed: %s", exc)
            return False
        if fp == self._seen_fp:
            return False
        before = self._current
        self.load()
        if self._current is before:  # failed: don't retry the same broken state every tick
            self._seen_fp = fp
            return False
        return True

    def start(self) -> None:
        """Start polling for new checkpoints in a daemon thread."""
        if self._fingerprint is None or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(self._poll_s):
                try:
                    self.maybe_reload()
                except Exception:  # never let the watcher die
                    log.exception("reload check failed")

        self._thread = threading.Thread(target=loop, name="model-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def files_fingerprint(paths: Callable[[], Sequence[Path]]) -> Callable[[], Hashable]:
    """A fingerprint over (path, inode, size, mtime_ns) of the files ``paths()`` returns."""

    def fp() -> Hashable:
        out = []
        for p in paths():
            st = Path(p).stat()
            out.append((str(p), st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(out)

    return fp
