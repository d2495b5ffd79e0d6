"""Log events for every layer: `get_logger(part)` and `extra=fields(key=value)`.

Any module logs with `get_logger("runtime")` (the logger `edgekeeper.runtime`) and attaches
key=value fields with `extra=fields(...)`. A field whose name says it holds a secret (ends in
pin, password, passphrase, secret, token, key, credential(s); or mentions private or sas) is
written as `***` by the daemon's formatters (`firmware.daemon.logs`), which own where lines go.

Secrets inside longer text (a PKCS#11 URI's PIN, a connection string's key) are hidden by
`firmware.redaction.redact` wherever text leaves the program, log lines included.
"""

from __future__ import annotations

import logging
import re

ROOT = "edgekeeper"
SECRET_FIELD = re.compile(
    r"(^|_)(pin|password|passwd|passphrase|secret|token|key|credentials?)$|private|(^|_)sas",
    re.I,
)


def fields(**values: object) -> dict[str, dict[str, object]]:
    """`extra=` argument attaching key=value fields to a log event."""
    return {"fields": values}


def get_logger(name: str) -> logging.Logger:
    """The logger of a part of edgekeeper, e.g. `get_logger("console")` -> `edgekeeper.console`."""
    return logging.getLogger(f"{ROOT}.{name}")
