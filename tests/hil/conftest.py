"""HIL harness: pytest-embedded's serial DUT on the edgekeeper console, sim board or real one.

pytest-embedded is switched off for the rest of the suite (`-p no:pytest_embedded` in
pyproject.toml: its autouse fixtures would start a multiprocessing manager and make log dirs for
every test). Here its fixtures and hooks are taken into this conftest, so they exist for
tests/hil only. Run the HIL tests with `pytest tests/hil ...` so that its options (`--port`,
`--baud`, `--count`, `--embedded-services`) are known when the command line is read.

Without `--port`, the `port` fixture starts the sim board's daemon the way every test does
(tests/peers/program.py: the program the built binary unpacks, or `python -m firmware` when
EDGEKEEPER_FROM_SOURCE=1) with a private config whose console is a pty, waits for
`<run_dir>/console.pty` and hands that path to pytest-embedded's serial service.
With `--port /dev/ttyUSB0` (or `rfc2217://...`, `socket://...`) the same tests drive that board.
`--embedded-services` defaults to `serial`.

On the sim board the daemon runs its modules on a dockerd of its own, with a sleeping busybox
agent (on the session's `sim_dockerd` its reconciler would adopt the other tests' module
containers for the whole session), and its console is 80 columns wide (`[console] columns`). The
`sim_board` fixture gives the board's directory, where a test may put files for the daemon to
read (a manifest to `deploy`), or None on a farm board.

The login tests (test_login.py) need a console with a password: on the sim board a
second daemon (`sim_login_console`) whose `[console] password_hash` is made by the CLI's
`console-password` from `SIM_PASSWORD`; on a board farm the board's password given with
`--console-password` (the tests are skipped without it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.fixtures import FixtureFunctionDefinition

from firmware.runtime.spec import MODULE_LABEL
from tests.peers.program import cli_argv, daemon_argv, program_env
from tests.peers.sim import (
    BackgroundProcess,
    Dockerd,
    MissingComponent,
    ServiceFailed,
    busybox_rootfs,
)
from tests.peers.waiting import WaitTimeout, log_tail, wait_until

_EMBEDDED_ACTIVE = "pytest_embedded.plugin" in sys.modules

import pytest_embedded.plugin as _embedded  # noqa: E402
from pytest_embedded.plugin import multi_dut_argument  # noqa: E402

if not _EMBEDDED_ACTIVE:
    globals().update(
        {
            name: value
            for name, value in vars(_embedded).items()
            if name.startswith("pytest_") or isinstance(value, FixtureFunctionDefinition)
        }
    )

READY_TIMEOUT_S = 30.0
SIM_PASSWORD = "hil-console-pass"
SIM_CONFIG = """\
hostname = "hil-sim"

[paths]
data_dir = "{data_dir}"
run_dir = "{run_dir}"

[logging]
level = "info"

[console]
device = "pty"
baud = 115200
prompt = "edgekeeper> "
columns = {columns}
"""
SIM_COLUMNS = 80
SIM_AGENT_IMAGE = "edgekeeper-hil/busybox:latest"
# The sim board's container engine and agent (a sleeping busybox), appended after [console].
SIM_RUNTIME = """
[runtime]
uri = "{uri}"

[image_garbage_collection]
enabled = false

[agent]
name = "{agent}"
imagePullPolicy = "never"

[agent.config]
image = "{image}"

[agent.config.createOptions]
Cmd = ["sleep", "3600"]
StopTimeout = 1
HostConfig = {{ NetworkMode = "none" }}
"""


def pytest_addoption(parser: pytest.Parser) -> None:
    """pytest-embedded's options (when it is not a plugin of the run), and the board's console
    password for the login tests."""
    if not _EMBEDDED_ACTIVE:
        _embedded.pytest_addoption(parser)
    parser.getgroup("edgekeeper").addoption(
        "--console-password",
        default=None,
        help="the console password of the board given with --port (for the login tests)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/hil carries the `hil` marker (select or deselect with -m)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.hil)


class SimBoard:
    """The sim board's daemon in the background, its console on a pty."""

    def __init__(self, root: Path, binary: Path | None, console_toml: str = "") -> None:
        self.root = root
        self.console_toml = console_toml
        self.run_dir = root / "run"
        self.data_dir = root / "data"
        self.config = root / "config.toml"
        self.process = BackgroundProcess(root, "edgekeeper")
        self.binary = binary

    def start(self) -> str:
        """Start the daemon; the console's pty path once it is there."""
        self.config.write_text(
            SIM_CONFIG.format(data_dir=self.data_dir, run_dir=self.run_dir, columns=SIM_COLUMNS)
            + self.console_toml,
            encoding="utf-8",
        )
        self.config.chmod(0o600)  # it may hold a secret
        argv = [*daemon_argv(self.binary), "run", "--config", str(self.config), "--board", "sim"]
        self.process.spawn(argv, env=program_env())
        pty_file = self.run_dir / "console.pty"

        def console_path() -> str | bool:
            if self.process.exited():
                pytest.fail(
                    f"the sim board's daemon exited during start-up ({' '.join(argv)}); "
                    f"log {self.process.log}:\n{log_tail(self.process.log)}",
                    pytrace=False,
                )
            return pty_file.is_file() and pty_file.read_text().strip()

        try:
            return wait_until(
                console_path, timeout_s=READY_TIMEOUT_S, what=f"the pty named in {pty_file}"
            )
        except WaitTimeout as timeout:
            self.stop()
            pytest.fail(
                f"{timeout}; log {self.process.log}:\n{log_tail(self.process.log)}", pytrace=False
            )

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="session")
def sim_daemon(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SimBoard, str]]:
    """The sim board's daemon, its modules on a dockerd of its own, and its console pty's path
    (both run for the whole session)."""
    from_source = os.environ.get("EDGEKEEPER_FROM_SOURCE") == "1"
    binary = None if from_source else request.getfixturevalue("edgekeeper_binary")
    dockerd = Dockerd(tmp_path_factory.mktemp("hil-docker"))
    try:
        dockerd.start()
        image = dockerd.import_image(
            busybox_rootfs(tmp_path_factory.mktemp("hil-busybox")), SIM_AGENT_IMAGE
        )
    except (MissingComponent, ServiceFailed) as error:
        dockerd.stop()
        pytest.fail(str(error), pytrace=False)
    runtime = SIM_RUNTIME.format(
        uri=dockerd.uri, agent=f"hilagent{uuid.uuid4().hex[:6]}", image=image
    )
    board = SimBoard(tmp_path_factory.mktemp("hil-sim"), binary, runtime)
    try:
        path = board.start()
        yield board, path
    finally:
        board.stop()
        dockerd.remove_containers(MODULE_LABEL)
        dockerd.stop()


@pytest.fixture(scope="session")
def sim_console(sim_daemon: tuple[SimBoard, str]) -> str:
    """Path of the sim board daemon's console pty."""
    return sim_daemon[1]


@pytest.fixture
def sim_board(request: pytest.FixtureRequest) -> SimBoard | None:
    """The sim board (its directory, readable by its daemon), or None on a farm board."""
    if request.config.getoption("port", None):
        return None
    board: SimBoard = request.getfixturevalue("sim_daemon")[0]
    return board


@pytest.fixture(scope="session")
def sim_login_console(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Path of the console pty of a second sim daemon whose console asks for SIM_PASSWORD."""
    from_source = os.environ.get("EDGEKEEPER_FROM_SOURCE") == "1"
    binary = None if from_source else request.getfixturevalue("edgekeeper_binary")
    made = subprocess.run(
        [*([str(binary)] if binary else cli_argv()), "console-password"],
        input=SIM_PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=program_env(),
        check=False,
    )
    if made.returncode != 0:
        pytest.fail(f"console-password failed: {made.stderr}", pytrace=False)
    board = SimBoard(
        tmp_path_factory.mktemp("hil-sim-login"),
        binary,
        made.stdout + "login_attempts = 5\n",
    )
    path = board.start()
    try:
        yield path
    finally:
        board.stop()


@pytest.fixture
def console_password(request: pytest.FixtureRequest) -> str:
    """The console password: `--console-password` (a farm board), else the sim board's."""
    given: str | None = request.config.getoption("console_password")
    return given or SIM_PASSWORD


@pytest.fixture
@multi_dut_argument
def port(request: pytest.FixtureRequest) -> str | None:
    """`--port` when given (a board on the farm), else the sim board's console pty."""
    given = request.config.getoption("port", None)
    if given:
        return given
    return request.getfixturevalue("sim_console")


@pytest.fixture
@multi_dut_argument
def embedded_services(request: pytest.FixtureRequest) -> str | None:
    """`--embedded-services` when given, else `serial`: the console is a serial port."""
    return request.config.getoption("embedded_services", None) or "serial"
