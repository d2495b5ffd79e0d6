"""The sim board `build.py run` starts: its cloud program (a DPS and a hub, tests/peers/cloud.py)
keeps its CA, enrollment and ports across restarts, the config it writes validates and provisions
through that DPS, and the daemon on that config comes online with each attestation (symmetric
key, TPM on the board's swtpm), as `system status` shows and build.py reports."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from buildkit.daemon import identity_lines
from firmware.config.loader import load_config
from tests.peers.program import REPO, cli_argv, daemon_argv, program_env, stop_daemon
from tests.peers.sim import (
    SIM_REGISTRATION,
    SIM_TPM_REGISTRATION,
    CloudPeersService,
    MissingComponent,
    ServiceFailed,
    SimBoard,
)
from tests.peers.waiting import wait_for_path, wait_until


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[CloudPeersService]:
    service = CloudPeersService(tmp_path / "cloud", sys.executable)
    try:
        service.start()
        yield service
    finally:
        service.stop()


def test_the_cloud_program_keeps_its_ca_enrollment_and_ports_across_restarts(
    cloud: CloudPeersService,
) -> None:
    first = cloud.peers()
    assert first is not None and cloud.running()
    enrollment = cloud.enrollment()
    assert first["dps"] == f"https://127.0.0.1:{enrollment.dps_port}"
    assert first["hubs"] == [f"127.0.0.1:{enrollment.hub_port}"]
    assert Path(str(first["ca"])) == cloud.ca_file
    assert cloud.enrollment_file.stat().st_mode & 0o777 == 0o600
    ca = cloud.ca_file.read_bytes()
    cloud.stop()
    assert not cloud.running() and cloud.peers() is None
    cloud.start()
    second = cloud.peers()
    assert second is not None and second["pid"] != first["pid"]
    assert (second["dps"], second["hubs"]) == (first["dps"], first["hubs"])
    assert cloud.enrollment() == enrollment
    assert cloud.ca_file.read_bytes() == ca


def test_a_cloud_program_that_cannot_listen_fails_naming_its_log(tmp_path: Path) -> None:
    taken = CloudPeersService(tmp_path / "first", sys.executable)
    taken.start()
    try:
        clash = CloudPeersService(tmp_path / "second", sys.executable)
        clash.enrollment_file.parent.mkdir()
        clash.enrollment_file.write_text(taken.enrollment_file.read_text())
        with pytest.raises(ServiceFailed, match=r"cloud\.log"):
            clash.start()
        assert not clash.running()
    finally:
        taken.stop()


@pytest.mark.parametrize(
    ("attestation", "method", "registration"),
    [("symmetric_key", "symmetric_key", SIM_REGISTRATION), ("tpm", "tpm", SIM_TPM_REGISTRATION)],
)
def test_the_written_config_validates_and_provisions_through_the_sim_dps(
    tmp_path: Path, cloud: CloudPeersService, attestation: str, method: str, registration: str
) -> None:
    board = SimBoard(tmp_path, attestation=attestation)
    config = load_config(board.write_config())
    provisioning = config.provisioning
    assert provisioning.source == "dps"
    assert provisioning.global_endpoint == cloud.dps_endpoint
    assert provisioning.id_scope == json.loads(cloud.peers_file.read_text())["id_scope"]
    assert provisioning.attestation is not None
    assert (provisioning.attestation.method, provisioning.attestation.registration_id) == (
        method,
        registration,
    )
    key = provisioning.attestation.symmetric_key
    assert (key.value if key else None) == (
        cloud.enrollment().symmetric_key if method == "symmetric_key" else None
    )
    assert config.trust_bundle_cert == f"file://{cloud.ca_file}"
    assert board.config_file.stat().st_mode & 0o777 == 0o600


def test_an_unknown_attestation_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="x509"):
        SimBoard(tmp_path, attestation="x509")


SimBoardFactory = Callable[..., SimBoard]


@pytest.fixture
def sim_board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimBoardFactory]:
    """`sim_board(attestation, tpm="swtpm")` starts a whole sim board (its own dockerd, swtpm,
    bus simulators, SoftHSM2 token and cloud) as `build.py run` does, or starts what is not
    running of it and writes its config for `attestation` and `tpm`; all stopped at the end of
    the test."""
    root = tmp_path_factory.mktemp("sim")
    root.chmod(0o755)
    boards: list[SimBoard] = []  # each holds the processes it started until it stops them

    def start(attestation: str, tpm: str = "swtpm") -> SimBoard:
        board = SimBoard(root, attestation=attestation, tpm=tpm, python=sys.executable)
        boards.append(board)
        try:
            board.start()
        except (MissingComponent, ServiceFailed) as error:
            pytest.fail(str(error), pytrace=False)
        return board

    try:
        yield start
    finally:
        for board in reversed(boards):
            board.stop()


def start_daemon(board: SimBoard) -> subprocess.Popen[str]:
    """The daemon on the board's config, as `build.py run` starts it."""
    log = board.root / "daemon.log"
    with log.open("a") as output:
        daemon = subprocess.Popen(
            [*daemon_argv(), "run", "--config", str(board.config_file)],
            cwd=REPO,
            stdout=output,
            stderr=output,
            text=True,
            env=program_env(SOFTHSM2_CONF=str(board.softhsm.conf)),
        )
    wait_for_path(board.run_dir / "mgmt.sock", timeout_s=30, process=daemon, log=log)
    return daemon


def online(board: SimBoard) -> list[str]:
    """What build.py reports once `system status` shows the device's identity."""

    def shown() -> list[str] | None:
        done = subprocess.run(
            [*cli_argv(), "--config", str(board.config_file), "system", "status"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            env=program_env(),
        )
        return identity_lines(done.stdout)

    return wait_until(shown, timeout_s=90, what="the device identity", interval_s=0.5)


@pytest.mark.parametrize(
    ("attestation", "registration"),
    [("symmetric_key", SIM_REGISTRATION), ("tpm", SIM_TPM_REGISTRATION)],
)
def test_the_daemon_on_the_sim_board_comes_online_and_restarts_from_its_cache(
    sim_board: SimBoardFactory, attestation: str, registration: str
) -> None:
    board = sim_board(attestation)
    daemon = start_daemon(board)
    try:
        assert online(board) == [
            "provisioning: dps, provisioned",
            f"device: {registration} on {board.cloud.hub}",
        ]
    finally:
        stop_daemon(daemon)
    board.cloud.stop()
    board = sim_board(attestation)  # the cloud again, on the same ports: the cached identity holds
    daemon = start_daemon(board)
    try:
        assert online(board) == [
            "provisioning: dps, from cache",
            f"device: {registration} on {board.cloud.hub}",
        ]
    finally:
        stop_daemon(daemon)


@pytest.mark.parametrize("tpm", ["tis-i2c", "tis-spi"])
def test_the_daemon_attests_with_a_tpm_it_drives_over_a_simulated_bus(
    sim_board: SimBoardFactory, tpm: str
) -> None:
    board = sim_board("tpm", tpm)
    assert f'device = "{tpm}://' in board.config_file.read_text()
    daemon = start_daemon(board)
    try:
        assert online(board) == [
            "provisioning: dps, provisioned",
            f"device: {SIM_TPM_REGISTRATION} on {board.cloud.hub}",
        ]
    finally:
        stop_daemon(daemon)
