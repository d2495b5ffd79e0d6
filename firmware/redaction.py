"""`redact(text)`: hide the secrets that travel inside longer text.

A PKCS#11 URI's `pin-value=`, a connection string's `SharedAccessKey=`, a SAS token's `sig=`, the
password of a URL's `user:password@`, and the body of a PEM private key. It sits at the bottom of
the layers so that every place text leaves the program applies it: every rendered error
(`EdgekeeperError.render`, and so the CLI, HTTP answers, the console and a service's last error
in `status`), every log line (and so `/system/logs`), every configuration problem and `config show`.
"""

from __future__ import annotations

import re

REDACTED = "***"

#: Secrets inside text; group 1 is kept, the rest of the match is the secret.
_SECRETS_IN_TEXT = (
    re.compile(r"(pin-value=)[^;&?#\s\"'\\]+", re.I),
    re.compile(r"(SharedAccessKey=)[^;&\s\"'\\]+", re.I),
    re.compile(r"((?:^|[?&;\s])sig=)[^;&\s\"'\\]+", re.I),
    re.compile(r"(://[^/@\s:\"'\\]*:)[^/@\s\"'\\]+(?=@)"),
    re.compile(r"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)[\s\S]*?(?=-----END|\Z)"),
)


def redact(text: str, mask: str = REDACTED) -> str:
    """`text` with every secret written inside it (see above) replaced by `mask`."""
    for pattern in _SECRETS_IN_TEXT:
        text = pattern.sub(lambda found: found.group(1) + mask, text)
    return text


def holds_secret(text: str) -> bool:
    """True if `text` has a secret inside it that `redact` would hide."""
    return any(pattern.search(text) for pattern in _SECRETS_IN_TEXT)
