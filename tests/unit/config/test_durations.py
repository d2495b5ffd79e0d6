"""Configured durations: a number and a unit, whole text only, the key named when wrong."""

from __future__ import annotations

import pytest

from firmware.config.durations import duration_seconds
from firmware.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2s", 2.0), ("5m", 300.0), ("1 h", 3600.0), ("1d", 86400.0), ("2w", 1209600.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert duration_seconds(text, "[console] lockout") == seconds


@pytest.mark.parametrize("text", ["", "0m", "5", "m", "5 minutes", "-1s", "5m\n5m"])
def test_a_bad_duration_names_the_setting(text: str) -> None:
    with pytest.raises(ConfigError, match=r"\[console\] lockout = .* is not a duration"):
        duration_seconds(text, "[console] lockout")
