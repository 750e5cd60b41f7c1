"""Run ``ecaug`` the way the console script does (``ecaug_feast.cli.main.main``), in-process, and
classify what a user would see: exit code, stdout, stderr, traceback or not."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.err

    @property
    def clean_error(self) -> bool:
        """Exit 2, no traceback, and the message is one line starting with ``error:``."""
        lines = [ln for ln in self.err.splitlines() if ln.startswith("error:")]
        return self.code == 2 and not self.traceback and len(lines) == 1


def run_inprocess(args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    """``ecaug ARGS`` through ``main()`` in this process (fast: no interpreter start)."""
    from ecaug_feast.cli import main as cli

    monkeypatch.setattr(sys, "argv", ["ecaug", *args])
    capsys.readouterr()
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # an uncaught exception is what a traceback looks like to a user
        import traceback

        cap = capsys.readouterr()
        return Outcome(1, cap.out, cap.err + "Traceback (most recent call last)\n" + traceback.format_exc())
    cap = capsys.readouterr()
    return Outcome(code, cap.out, cap.err)


def run_subprocess(args: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> Outcome:
    """``ecaug ARGS`` as a new process (for what only a real process shows: import-time output)."""
    exe = Path(sys.executable).with_name("ecaug")
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-m", "ecaug_feast.cli.main", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=REPO)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)
