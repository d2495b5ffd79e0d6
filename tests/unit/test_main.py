"""The binary's entry point (`firmware.__main__`): the CLI with `run` offered, and `run` handing
the global options to the daemon, which it imports only when run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import firmware.__main__ as entry
from tests.peers.program import program_env

REPO = Path(__file__).resolve().parents[2]


def test_help_lists_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["edgekeeper", "help"])
    assert entry.main() == 0
    listing = capsys.readouterr().out
    assert re.search(r"^  run +run the daemon in the foreground", listing, re.MULTILINE)
    assert re.search(r"^  status +the daemon's state", listing, re.MULTILINE)


def test_run_is_offered_and_reaches_the_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    from firmware.daemon import app

    calls = []

    def fake_run(config_file, board, log_level=None, log_format=None):
        calls.append((config_file, board, log_level, log_format))
        return 3

    monkeypatch.setattr(app, "run", fake_run)
    argv = ["edgekeeper", "--board", "sim", "run", "--config", "/c.toml", "--log-format", "json"]
    monkeypatch.setattr(sys, "argv", argv)
    assert entry.main() == 3
    assert calls == [("/c.toml", "sim", None, "json")]
    monkeypatch.setenv("EDGEKEEPER_CONFIG", "/env.toml")
    monkeypatch.setattr(sys, "argv", ["edgekeeper-run", "--log-level", "debug"])
    assert entry.main() == 3
    assert calls[1] == ("/env.toml", None, "debug", None)


def test_cli_commands_do_not_import_the_daemon() -> None:
    probe = (
        "import sys\n"
        "sys.argv = ['edgekeeper', 'version']\n"
        "import firmware.__main__ as entry\n"
        "code = entry.main()\n"
        "print([m for m in sys.modules if m.startswith('firmware.daemon')], code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=program_env(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[] 0"
