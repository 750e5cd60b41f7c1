"""One place that hides secrets before text leaves the process (logs, errors, JSON, files).

Covered: passwords in URLs (``redis://:pw@host``, ``redis://user:pw@host``), Feast connection
strings (``host:port,password=pw``), and the admin and metrics tokens. ``redact`` is idempotent and leaves
text without secrets unchanged.
"""

from __future__ import annotations

import os
import re
from typing import Any

MASK = "***"

# scheme://[user][:password]@host: the password is whatever lies between the first ':' after
# the scheme's '//' and the last '@' of that word (an unencoded '@' in a password is masked too).
_URL_PW = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^\s]*?)(?P<tail>@)(?=[^@\s]*(?:\s|$))")
# key=value / key: value. The key must stand on its own: not the end of a path or a file name
# ("/data/token: unsupported file type" is a path and its error, not a token).
_KV_PW = re.compile(r"(?P<head>(?<![\w/\\.~-])(?:password|passwd|pwd|token|secret)\s*[=:]\s*)(?P<pw>[^,\s'\"}&]+)",
                    re.IGNORECASE)
_ENV_SECRETS = ("ECAUG_ADMIN_TOKEN", "ECAUG_METRICS_TOKEN", "ECAUG_REDIS_PASSWORD")


def redact(text: str) -> str:
    """``text`` with every password/token replaced by ``***``."""
    if not text:
        return text
    out = _URL_PW.sub(lambda m: m["head"] + MASK + m["tail"], text)
    out = _KV_PW.sub(lambda m: m["head"] + (m["pw"] if m["pw"].startswith("${") else MASK), out)
    for name in _ENV_SECRETS:  # a secret that shows up without a telltale prefix (short ones
        value = os.environ.get(name, "")  # would mask ordinary words; the patterns catch those)
        if len(value) >= 8:
            out = out.replace(value, MASK)
    return out


def redact_obj(obj: Any) -> Any:
    """``redact`` applied to every string inside dicts/lists/tuples (for JSON summaries)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_obj(v) for v in obj)
    return obj


_installed = False


def install_log_redaction() -> None:
    """Redact every log message of this process, whichever logger or handler emits it (a log
    record factory, so third-party loggers such as redis-py's are covered too). Idempotent."""
    import logging

    global _installed
    if _installed:
        return
    base = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's business, not ours
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
