"""The import budget: the modules an idle daemon on the sim board has imported are pinned.

The daemon runs from source under `python -X importtime` on the sim board with a real dockerd,
started a second time (the first start issues its certificates, as a gateway in service has
them): console on a pty, the agent's container running, management and workload sockets
listening. Once it has settled, the modules it imported are compared with
`idle_imports.txt` beside this file. A module imported at idle that the list lacks fails the
test with its import cost (its own and with what it pulled in) and who imported it: import it
where it is first used, or, if an idle daemon needs it, add it to the list and measure its
memory (docs/performance.md). A listed module no longer imported fails too, so the list stays
exact.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from firmware.errors import EdgekeeperError
from tests.peers.gateway import MODULE_LABEL, Gateway, new_gateway
from tests.peers.program import REPO, program_env, stop_daemon
from tests.peers.waiting import wait_for_path, wait_until

PINNED = Path(__file__).with_name("idle_imports.txt")
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")
SETTLE_S = 8.0  # past the daemon's own settling (firmware.daemon.app.SETTLE_S)


@dataclass(frozen=True)
class Imported:
    name: str
    self_us: int
    cumulative_us: int
    importer: str  # the module whose import pulled this one in ("" at the top)


def imports_of(importtime: str) -> dict[str, Imported]:
    """Every module `-X importtime` reported, with its cost and importer. Children are listed
    before their parent, one level deeper: a module's importer is the next line less deep."""
    rows = []
    for line in importtime.splitlines():
        found = IMPORT_LINE.match(line)
        if found:
            own, cumulative, indent, name = found.groups()
            rows.append((len(indent), name, int(own), int(cumulative)))
    modules = {}
    for index, (depth, name, own, cumulative) in enumerate(rows):
        importer = next((row[1] for row in rows[index + 1 :] if row[0] < depth), "")
        modules[name] = Imported(name, own, cumulative, importer)
    return modules


def pinned() -> set[str]:
    lines = PINNED.read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def describe(module: Imported, modules: dict[str, Imported]) -> str:
    chain = []
    importer = module.importer
    while importer and len(chain) < 6:
        chain.append(importer)
        importer = modules[importer].importer if importer in modules else ""
    return (
        f"{module.name}: {module.self_us} us itself, {module.cumulative_us} us with what it "
        f"imported; imported by {' <- '.join(chain) or 'the entry point'}"
    )


def test_parses_importers_and_costs() -> None:
    text = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:        10 |         10 |   b\n"
        "import time:        20 |         30 | a\n"
        "import time:         5 |          5 | c\n"
        "not an import line\n"
    )
    modules = imports_of(text)
    assert modules["b"] == Imported("b", 10, 10, "a")
    assert modules["a"].importer == "" and modules["a"].cumulative_us == 30
    assert describe(modules["b"], modules).endswith("imported by a")


def answers(gateway: Gateway) -> bool:
    try:
        gateway.request("GET", "/daemon/status")
    except EdgekeeperError:
        return False
    return True


def certificates_ready(gateway: Gateway) -> bool:
    status = json.loads(gateway.request("GET", "/daemon/status").body)
    return any(
        service["name"] == "certs" and service.get("detail", {}).get("ready")
        for service in status["services"]
    )


def start_from_source(gateway: Gateway, log: Path) -> subprocess.Popen[str]:
    """The daemon from source under `-X importtime`, once its API answers and the agent runs."""
    argv = [sys.executable, "-X", "importtime", "-m", "firmware", "run", "--config", gateway.config]
    with log.open("w") as output:
        process = subprocess.Popen(
            argv, cwd=REPO, stdout=output, stderr=output, text=True, env=program_env()
        )
    wait_for_path(gateway.management_socket, timeout_s=30, process=process, log=log)
    wait_until(lambda: answers(gateway), timeout_s=30, what=f"the daemon's API (log {log})")
    gateway.container_of(gateway.agent)
    return process


@pytest.fixture
def idle_daemon_imports(sim_dockerd, client_image: str) -> dict[str, Imported]:
    """What the daemon imported at idle on its second start: the first one issues the
    certificates a gateway in service already has."""
    # Warnings only: an info line logged while the interpreter writes an import line (from
    # another thread) could break that line.
    gateway = new_gateway(
        Path("/tmp"),
        sim_dockerd,
        client_image,
        prefix="ekimp",
        extra_toml='[logging]\nlevel = "warning"\n',
    )
    controller, device = os.openpty()
    config = gateway.config.read_text().replace(
        '[console]\ndevice = "none"', f'[console]\ndevice = "{os.ttyname(device)}"'
    )
    gateway.config.write_text(config)
    log = gateway.root / "importtime.log"
    process = None
    try:
        process = start_from_source(gateway, gateway.root / "first-start.log")
        wait_until(lambda: certificates_ready(gateway), timeout_s=30, what="the certificates")
        assert stop_daemon(process) == 0
        process = start_from_source(gateway, log)
        time.sleep(SETTLE_S)
        return imports_of(log.read_text())
    finally:
        stop_daemon(process)
        os.close(controller)
        os.close(device)
        sim_dockerd.remove_containers(MODULE_LABEL)
        shutil.rmtree(gateway.root, ignore_errors=True)


def test_idle_daemon_imports_only_the_pinned_modules(
    idle_daemon_imports: dict[str, Imported],
) -> None:
    modules = idle_daemon_imports
    assert "firmware.daemon.app" in modules, "the daemon did not start"
    new = sorted(set(modules) - pinned(), key=lambda name: -modules[name].cumulative_us)
    gone = sorted(pinned() - set(modules))
    problems = [f"new at idle: {describe(modules[name], modules)}" for name in new]
    problems += [
        f"no longer imported at idle, remove it from {PINNED.name}: {name}" for name in gone
    ]
    assert not problems, "\n".join(problems)
