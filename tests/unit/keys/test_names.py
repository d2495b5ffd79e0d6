"""Key name validation: what is accepted, what is refused, and that the error names the name."""

from __future__ import annotations

import pytest

from firmware.keys.errors import InvalidKeyName
from firmware.keys.names import MAX_KEY_NAME_LENGTH, validate_key_name


@pytest.mark.parametrize(
    "name", ["device-id", "a", "Module_1.key", "x" * MAX_KEY_NAME_LENGTH, "0-9_a.b"]
)
def test_valid_names_pass_unchanged(name):
    assert validate_key_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * (MAX_KEY_NAME_LENGTH + 1),
        "../etc/passwd",
        "a/b",
        "a\\b",
        "..",
        ".hidden",
        "a..b",
        "name with space",
        "nul\x00byte",
        "ümlaut",
        "line\nbreak",
    ],
)
def test_invalid_names_are_refused(name):
    with pytest.raises(InvalidKeyName) as caught:
        validate_key_name(name)
    assert caught.value.hint
    assert caught.value.http_status == 400


def test_error_names_the_name():
    with pytest.raises(InvalidKeyName, match="a/b"):
        validate_key_name("a/b")


def test_non_string_is_refused():
    with pytest.raises(InvalidKeyName):
        validate_key_name(b"bytes")
