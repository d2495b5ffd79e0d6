"""The token PIN: from config, or from a file nobody else can read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from firmware.errors import ConfigError
from firmware.keys.pkcs11.errors import PinFileRefused
from firmware.keys.pkcs11.pin import resolve_pin


def _pin_file(tmp_path: Path, content: bytes, mode: int) -> Path:
    path = tmp_path / "pin"
    path.write_bytes(content)
    os.chmod(path, mode)
    return path


def test_pin_from_config() -> None:
    assert resolve_pin("1234", None) == b"1234"
    assert resolve_pin(None, None) is None


def test_pin_file_0600_first_line(tmp_path: Path) -> None:
    assert resolve_pin(None, _pin_file(tmp_path, b"98 76\nignored\n", 0o600)) == b"98 76"
    assert resolve_pin(None, _pin_file(tmp_path, b"1234\r\n", 0o400)) == b"1234"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_pin_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = _pin_file(tmp_path, b"1234\n", mode)
    with pytest.raises(PinFileRefused) as caught:
        resolve_pin(None, path)
    assert f"PIN file {path} is readable by others (mode {mode:04o})" == caught.value.message
    assert caught.value.hint == f"run `chmod 600 {path}`"


def test_missing_empty_and_directory_pin_files(tmp_path: Path) -> None:
    with pytest.raises(PinFileRefused, match="cannot be read"):
        resolve_pin(None, tmp_path / "absent")
    with pytest.raises(PinFileRefused, match="is empty"):
        resolve_pin(None, _pin_file(tmp_path, b"\n", 0o600))
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)
    with pytest.raises(PinFileRefused):
        resolve_pin(None, directory)


def test_pin_and_pin_file_together_are_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="both set"):
        resolve_pin("1234", _pin_file(tmp_path, b"1234", 0o600))
