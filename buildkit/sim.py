"""`build.py sim start|stop|status`: the sim board's services under .sim/, which outlive build.py
so that one command starts them and a later one stops them. The board's config brings the
gateway online through the sim's DPS, with a symmetric key or (`--attestation tpm`) the swtpm."""

from __future__ import annotations

from buildkit.log import BuildError, log
from buildkit.paths import SIM_DIR, VENV_PYTHON
from buildkit.steps import set_up
from tests.peers.sim import (
    ATTESTATIONS,
    TPM_TRANSPORTS,
    MissingComponent,
    ServiceFailed,
    SimBoard,
)

SIM_ACTIONS = ("start", "stop", "status")
DEFAULT_ATTESTATION = ATTESTATIONS[0]
EXIT_SERVICE_DOWN = 3  # `sim status` when a service is not running


def sim_board(attestation: str = DEFAULT_ATTESTATION, tpm: str = TPM_TRANSPORTS[0]) -> SimBoard:
    """The sim board under .sim/; its cloud program and bus simulators run under the venv's
    python."""
    return SimBoard(SIM_DIR, attestation=attestation, tpm=tpm, python=VENV_PYTHON)


def start_services(
    attestation: str = DEFAULT_ATTESTATION, tpm: str = TPM_TRANSPORTS[0]
) -> SimBoard:
    """Start the services that are not running yet and write the config for `attestation` and
    the TPM transport `tpm` (a missing package or a service that does not come up is a
    BuildError)."""
    board = sim_board(attestation, tpm)
    try:
        board.start()
    except (MissingComponent, ServiceFailed) as error:
        raise BuildError(str(error)) from error
    return board


def describe(board: SimBoard, *, provisioning: bool) -> None:
    """The services' state and where they are; with `provisioning`, how the config provisions."""
    for name, up in board.status().items():
        words = ("token ready", "no token") if name == "softhsm" else ("running", "stopped")
        print(f"{name:10} {words[0] if up else words[1]}")
    print(f"engine socket   {board.dockerd.uri}")
    print(f"swtpm           {board.swtpm.url} (control port {board.swtpm.ctrl_port})")
    print(f"TPM device      {board.tpm_url}")
    print(f"SOFTHSM2_CONF   {board.softhsm.conf} (token {board.softhsm.token_label!r})")
    if board.cloud.enrollment_file.exists():
        print(f"DPS             {board.cloud.dps_endpoint} (id scope {board.cloud.id_scope})")
        print(f"IoT hub         {board.cloud.hub}")
        print(f"cloud CA        {board.cloud.ca_file}")
    if provisioning:
        print(f"attestation     {board.attestation} (registration id {board.registration_id})")
    print(f"run dir         {board.run_dir}")
    print(f"console pty     written by the daemon to {board.run_dir}/console.pty")
    print(f"config          {board.config_file}")


def sim_command(
    action: str, attestation: str = DEFAULT_ATTESTATION, tpm: str = TPM_TRANSPORTS[0]
) -> int:
    set_up()  # Debian packages for the services, the venv for the cloud program
    if action == "start":
        describe(start_services(attestation, tpm), provisioning=True)
    elif action == "stop":
        sim_board().stop()
        log("sim services stopped")
    else:
        board = sim_board()
        describe(board, provisioning=False)
        return 0 if all(board.status().values()) else EXIT_SERVICE_DOWN
    return 0
