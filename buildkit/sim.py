"""`build.py sim start|stop|status`: the sim board's services under .sim/, which outlive build.py
so that one command starts them and a later one stops them."""

from __future__ import annotations

from buildkit.log import BuildError, log
from buildkit.packages import install_debian_packages
from buildkit.paths import SIM_DIR
from tests.peers.sim import MissingComponent, ServiceFailed, SimBoard

SIM_ACTIONS = ("start", "stop", "status")
EXIT_SERVICE_DOWN = 3  # `sim status` when a service is not running


def sim_board() -> SimBoard:
    return SimBoard(SIM_DIR)


def start_services() -> SimBoard:
    """Start the services that are not running yet (a missing package or a service that does
    not come up is a BuildError)."""
    board = sim_board()
    try:
        board.start()
    except (MissingComponent, ServiceFailed) as error:
        raise BuildError(str(error)) from error
    return board


def describe(board: SimBoard) -> None:
    for name, up in board.status().items():
        words = ("token ready", "no token") if name == "softhsm" else ("running", "stopped")
        print(f"{name:10} {words[0] if up else words[1]}")
    print(f"engine socket   {board.dockerd.uri}")
    print(f"swtpm           {board.swtpm.tcti} (control port {board.swtpm.ctrl_port})")
    print(f"SOFTHSM2_CONF   {board.softhsm.conf} (token {board.softhsm.token_label!r})")
    print(f"run dir         {board.run_dir}")
    print(f"console pty     written by the daemon to {board.run_dir}/console.pty")
    print(f"config          {board.config_file}")


def sim_command(action: str) -> int:
    install_debian_packages()
    if action == "start":
        describe(start_services())
    elif action == "stop":
        sim_board().stop()
        log("sim services stopped")
    else:
        board = sim_board()
        describe(board)
        return 0 if all(board.status().values()) else EXIT_SERVICE_DOWN
    return 0
