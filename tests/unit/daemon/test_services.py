"""The service registry: entries, config sections, and lazy imports that keep start-up light."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from firmware.config.schema import Config, Console
from firmware.daemon.services import SERVICES, enabled_services

REPO = Path(__file__).resolve().parents[3]
HEAVY = ("cryptography", "tpm2_pytss", "serial", "h11", "firmware.console.service")


def test_console_enabled_only_with_a_device() -> None:
    names = [e.name for e in enabled_services(Config(hostname="gw", console=Console("none")))]
    assert "api" in names and "console" not in names
    with_console = Config(hostname="gw", console=Console("loop://"))
    assert "console" in [e.name for e in enabled_services(with_console)]


def test_entries_are_unique_and_name_real_sections() -> None:
    names = [entry.name for entry in SERVICES]
    assert len(names) == len(set(names))
    config = Config(hostname="gw")
    for entry in SERVICES:
        for section in entry.sections:
            assert hasattr(config, section), f"{entry.name}: no config section {section!r}"
        module, _, attribute = entry.target.partition(":")
        assert module.startswith("firmware.") and attribute, entry.target


def test_section_changed() -> None:
    (console,) = [entry for entry in SERVICES if entry.name == "console"]
    old = Config(hostname="gw", console=Console("loop://"))
    assert not console.section_changed(old, Config(hostname="other", console=Console("loop://")))
    assert console.section_changed(old, Config(hostname="gw", console=Console("loop://", 9600)))


def test_daemon_start_imports_no_backend_libraries() -> None:
    probe = (
        "import json, sys\n"
        "from firmware.config.schema import Config, Console\n"
        "from firmware.daemon import app\n"
        "from firmware.daemon.services import enabled_services\n"
        "after_app = sorted(sys.modules)\n"
        "for entry in enabled_services(Config(hostname='gw', console=Console('none'))):\n"
        "    entry.create()\n"
        "print(json.dumps({'app': after_app, 'services': sorted(sys.modules)}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    loaded = json.loads(done.stdout)

    def heavy(modules: list[str]) -> list[str]:
        return [m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY]

    assert heavy(loaded["app"]) == [], "importing the daemon must not load backend libraries"
    unexpected = [m for m in heavy(loaded["services"]) if m.split(".")[0] != "h11"]
    assert unexpected == [], "services for a console-less config loaded " + ", ".join(unexpected)
