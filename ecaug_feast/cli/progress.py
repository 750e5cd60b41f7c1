"""Progress on stderr: a rich bar on a terminal, plain lines elsewhere (CI, log files).

A bar redrawn in place means nothing in a log, and rich draws nothing at all when stderr is not
a terminal; so there ``progress_lines`` prints ``<label> 40% (12.3 s)`` every ``step`` percent
(or every ``every_s`` seconds while the total is unknown).
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


class PlainProgress:
    """``update(done, total)`` prints a line when another ``step`` percent is done."""

    def __init__(self, label: str, stream: TextIO | None = None, step: int = 10, every_s: float = 10.0,
                 clock: Callable[[], float] = time.perf_counter):
        self.label, self.step, self.every_s, self.clock = label, step, every_s, clock
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = clock()
        self._last_pct = -1
        self._last_t = self.t0

    def _say(self, text: str) -> None:
        print(f"{self.label} {text} ({self.clock() - self.t0:.1f} s)", file=self.stream, flush=True)

    def update(self, done: float, total: float | None = None, extra: str = "") -> None:
        now = self.clock()
        if total:
            pct = int(min(100.0, 100.0 * done / total))
            if pct // self.step > self._last_pct // self.step or (pct == 100 and self._last_pct < 100):
                self._last_pct = pct
                self._last_t = now
                self._say(f"{pct}%" + (f" {extra}" if extra else ""))
        elif now - self._last_t >= self.every_s:
            self._last_t = now
            self._say(f"{done:g} done" + (f" {extra}" if extra else ""))

    def __call__(self, done: float, total: float | None = None) -> None:
        self.update(done, total)


def is_terminal(stream: TextIO | None = None) -> bool:
    s = stream if stream is not None else sys.stderr
    try:
        return bool(s.isatty())
    except (AttributeError, ValueError):
        return False
