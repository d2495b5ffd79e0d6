"""Log events for every layer: `get_logger(part)`, `extra=fields(key=value)`, and `redact(text)`.

Any module logs with `get_logger("runtime")` (the logger `edgekeeper.runtime`) and attaches
key=value fields with `extra=fields(...)`. A field whose name says it holds a secret (ends in
pin, password, passphrase, secret, token, key, credential(s); or mentions private or sas) is
written as `***` by the daemon's formatters (`firmware.daemon.logs`), which own where lines go.

`redact(text)` hides the secrets that travel inside longer text: a PKCS#11 URI's `pin-value=`, a
connection string's `SharedAccessKey=`, a SAS token's `sig=`, the password of a URL's
`user:password@`, and the body of a PEM private key. It is applied where text leaves the
program: every log line (and so the console and `/system/logs`), every configuration problem,
and `config show`.
"""

from __future__ import annotations

import logging
import re

ROOT = "edgekeeper"
SECRET_FIELD = re.compile(
    r"(^|_)(pin|password|passwd|passphrase|secret|token|key|credentials?)$|private|(^|_)sas",
    re.I,
)
REDACTED = "***"

#: Secrets inside text; group 1 is kept, the rest of the match is the secret.
_SECRETS_IN_TEXT = (
    re.compile(r"(pin-value=)[^;&?#\s\"'\\]+", re.I),
    re.compile(r"(SharedAccessKey=)[^;&\s\"'\\]+", re.I),
    re.compile(r"((?:^|[?&;\s])sig=)[^;&\s\"'\\]+", re.I),
    re.compile(r"(://[^/@\s:\"'\\]*:)[^/@\s\"'\\]+(?=@)"),
    re.compile(r"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)[\s\S]*?(?=-----END|\Z)"),
)


def fields(**values: object) -> dict[str, dict[str, object]]:
    """`extra=` argument attaching key=value fields to a log event."""
    return {"fields": values}


def get_logger(name: str) -> logging.Logger:
    """The logger of a part of edgekeeper, e.g. `get_logger("console")` -> `edgekeeper.console`."""
    return logging.getLogger(f"{ROOT}.{name}")


def redact(text: str, mask: str = REDACTED) -> str:
    """`text` with every secret written inside it (see above) replaced by `mask`."""
    for pattern in _SECRETS_IN_TEXT:
        text = pattern.sub(lambda found: found.group(1) + mask, text)
    return text


def holds_secret(text: str) -> bool:
    """True if `text` has a secret inside it that `redact` would hide."""
    return any(pattern.search(text) for pattern in _SECRETS_IN_TEXT)
