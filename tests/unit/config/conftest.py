"""Helpers for the config tests: write layers into a temporary /etc-like tree."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test sees this machine's /etc/edgekeeper, board variable or compiled-in board."""
    etc = tmp_path / "etc" / "edgekeeper" / "config.toml"
    monkeypatch.setattr("firmware.config.loader.DEFAULT_CONFIG_FILE", etc)
    monkeypatch.setattr(
        "firmware.config.boards.COMPILED_BOARD", tmp_path / "firmware" / "board.toml"
    )
    monkeypatch.delenv("EDGEKEEPER_BOARD", raising=False)
    return etc


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """`write("a/b.toml", text)` writes a 0600 file under tmp_path (making folders), returns its
    path. 0600 as a config holding secrets must be; tests of the mode rule chmod it themselves."""

    def writer(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)
        return path

    return writer
