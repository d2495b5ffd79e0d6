"""Where the CLI finds the daemon: --socket, the config's [connect] management_uri, the default."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from firmware.api.client import DEFAULT_MANAGEMENT_URI
from firmware.cli import connect
from firmware.errors import ConfigError


def args(**given: object) -> argparse.Namespace:
    return argparse.Namespace(**{"socket": None, "config": None, "board": None, **given})


def test_default_config_file_matches_the_loader() -> None:
    from firmware.config.loader import DEFAULT_CONFIG_FILE

    assert connect.DEFAULT_CONFIG_FILE == DEFAULT_CONFIG_FILE


def test_socket_option_wins() -> None:
    assert connect.management_uri(args(socket="unix:///x.sock")) == "unix:///x.sock"


def test_config_file_names_the_socket(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[connect]\nmanagement_uri = "unix:///elsewhere/mgmt.sock"\n')
    assert connect.management_uri(args(config=str(config))) == "unix:///elsewhere/mgmt.sock"


def test_without_a_config_file_the_built_in_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connect, "DEFAULT_CONFIG_FILE", tmp_path / "absent.toml")
    assert connect.management_uri(args()) == DEFAULT_MANAGEMENT_URI


def test_a_broken_config_file_given_is_an_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[connect\n")
    with pytest.raises(ConfigError):
        connect.management_uri(args(config=str(broken)))
