"""`duration_seconds`: the seconds in a configured duration such as "5m", "12h" or "7d".

The schema checks a duration's form (`schema.DURATION`); this turns it into seconds where a
service reads it, naming the key when a value bypassed the schema (a test, an old state file).
"""

from __future__ import annotations

import re

from firmware.errors import ConfigError

_DURATION = re.compile(r"\s*([1-9][0-9]*)\s*([smhdw])\s*")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(text: str, where: str) -> float:
    """Seconds in `text`; `ConfigError` naming `where` (e.g. "[console] lockout") otherwise."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ConfigError(
            f"{where} = {text!r} is not a duration", hint='write a number and a unit: "5m", "12h"'
        )
    return float(int(match.group(1)) * _UNIT_S[match.group(2)])
