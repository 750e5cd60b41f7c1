"""User-facing errors. The CLI prints them as one line and exits non-zero, without a traceback."""

from __future__ import annotations

from pathlib import Path


class EcaugError(Exception):
    """An expected user mistake (bad input, missing state). Message is shown as is."""

    exit_code = 2


class DataValidationError(EcaugError):
    """Bad input data: names the file, the column (if any) and the reason."""

    def __init__(self, file: str | Path | None, column: str | None, reason: str):
        self.file = str(file) if file is not None else None
        self.column = column
        self.reason = reason
        where = self.file or "<input>"
        col = f", column '{column}'" if column else ""
        super().__init__(f"{where}{col}: {reason}")
