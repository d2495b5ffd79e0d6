"""`build.py run`: the sim binary's daemon in the foreground on the sim board until Ctrl-C, then
the sim services it started stopped again."""

from __future__ import annotations

import os
import signal
import subprocess
from types import FrameType

from buildkit.log import log
from buildkit.paths import ROOT
from buildkit.sim import sim_board, start_services
from buildkit.steps import build

# How the daemon may end when it was asked to stop (Ctrl-C, SIGTERM), all reported as success.
STOPPED_CODES = frozenset({0, -signal.SIGTERM, -signal.SIGINT, 130, 143})
STOP_TIMEOUT_S = 15


def run_daemon(extra: list[str]) -> int:
    binary = build("sim")
    already = sim_board().status()
    board = start_services()
    env = dict(os.environ, SOFTHSM2_CONF=str(board.softhsm.conf))
    log(f"starting {binary.relative_to(ROOT)} run --config {board.config_file} (Ctrl-C stops)")
    daemon = subprocess.Popen(
        [binary, "run", "--config", board.config_file, *extra], cwd=ROOT, env=env
    )

    def forward(_signum: int, _frame: FrameType | None) -> None:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, lambda *_: daemon.send_signal(signal.SIGHUP))
    code = 0
    try:
        while True:
            try:
                code = daemon.wait()
                break
            except KeyboardInterrupt:
                forward(signal.SIGINT, None)
    finally:
        if daemon.poll() is None:
            daemon.terminate()
            try:
                daemon.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        for name, service in (
            ("dockerd", board.dockerd),
            ("swtpm", board.swtpm),
            ("softhsm", board.softhsm),
        ):
            if not already[name]:
                service.stop()
        log("stopped the daemon and the sim services it started")
    return 0 if code in STOPPED_CODES else code
