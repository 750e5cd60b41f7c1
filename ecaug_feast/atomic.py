"""Small filesystem primitives for publishing state atomically and exclusively.

- :func:`swap_symlink`: point a link at a new target in one ``rename`` (readers see the old or the
  new target, never a missing link);
- :func:`exclusive_lock`: an ``fcntl.flock`` on a lock file, held for a ``with`` block (released
  by the kernel when the process dies, so a crash never leaves a stale lock); re-entrant within
  one process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import threading
from pathlib import Path
from typing import Any, Iterator


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists (signal 0 probes without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def swap_symlink(link: Path, target: str) -> None:
    """Make ``link`` point at ``target`` (kept as given: a relative target keeps the folder movable)."""
    link = Path(link)
    tmp = link.with_name(f".{link.name}-{os.getpid()}-{secrets.token_hex(3)}")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)  # rename(2): atomic on POSIX
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_held: dict[str, list[Any]] = {}  # resolved lock path -> [RLock, depth, fd]
_held_guard = threading.Lock()


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the ``with`` block.

    Re-entrant in one process (a function that locks may call another that locks), exclusive
    across processes and across threads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    with _held_guard:
        entry = _held.setdefault(key, [threading.RLock(), 0, None])
    entry[0].acquire()
    try:
        if entry[1] == 0:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            entry[2] = fd
        entry[1] += 1
        try:
            yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                os.close(entry[2])  # closing the descriptor releases the flock
                entry[2] = None
    finally:
        entry[0].release()
