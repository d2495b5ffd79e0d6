"""`build.py run`: the sim binary's daemon in the foreground on the sim board until Ctrl-C, then
the sim services it started stopped again. Once the daemon has a device identity (through the
sim's DPS, or from its cache), build.py says which device on which hub, from `system status`."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import FrameType

from buildkit.log import log
from buildkit.paths import ROOT
from buildkit.sim import DEFAULT_ATTESTATION, TPM_TRANSPORTS, sim_board, start_services
from buildkit.steps import build

# How the daemon may end when it was asked to stop (Ctrl-C, SIGTERM), all reported as success.
STOPPED_CODES = frozenset({0, -signal.SIGTERM, -signal.SIGINT, 130, 143})
STOP_TIMEOUT_S = 15
IDENTITY_WAIT_S = 120.0  # how long build.py watches for the device identity
IDENTITY_POLL_S = 1.0
SETTLED_STATES = ("provisioned", "reprovisioned", "from cache")


def identity_lines(status_text: str) -> list[str] | None:
    """The provisioning lines of `edgekeeper system status` once the device has an identity
    (`provisioning: dps, provisioned` and `  device: ID on HUB`), else None."""
    lines = status_text.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith("provisioning: "):
            continue
        state = line.rsplit(", ", 1)[-1]
        device = lines[index + 1] if index + 1 < len(lines) else ""
        if state in SETTLED_STATES and device.startswith("  device: "):
            return [line, device.strip()]
        return None
    return None


def run_daemon(
    extra: list[str], attestation: str = DEFAULT_ATTESTATION, tpm: str = TPM_TRANSPORTS[0]
) -> int:
    binary = build("sim")
    already = sim_board().status()
    board = start_services(attestation, tpm)
    env = dict(os.environ, SOFTHSM2_CONF=str(board.softhsm.conf))
    log(
        f"starting {binary.relative_to(ROOT)} run --config {board.config_file} (Ctrl-C stops); "
        f"provisioning through the sim's DPS {board.cloud.dps_endpoint} "
        f"with {board.attestation} as {board.registration_id}"
    )
    daemon = subprocess.Popen(
        [binary, "run", "--config", board.config_file, *extra], cwd=ROOT, env=env
    )
    threading.Thread(
        target=report_identity, args=(binary, board.config_file, daemon), daemon=True
    ).start()

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
            ("cloud", board.cloud),
            ("swtpm", board.swtpm),
            ("softhsm", board.softhsm),
        ):
            if not already[name]:
                service.stop()
        log("stopped the daemon and the sim services it started")
    return 0 if code in STOPPED_CODES else code


def report_identity(binary: Path, config: Path, daemon: subprocess.Popen[bytes]) -> None:
    """Ask `edgekeeper system status` until the device has an identity, and say which; say
    where to look when it has none after IDENTITY_WAIT_S. Ends with the daemon."""
    deadline = time.monotonic() + IDENTITY_WAIT_S
    last = ""
    while daemon.poll() is None and time.monotonic() < deadline:
        shown = subprocess.run(
            [binary, "--config", config, "system", "status"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        last = shown.stdout
        found = identity_lines(last)
        if found is not None:
            log(f"the gateway is online: {found[0]}; {found[1]}")
            return
        time.sleep(IDENTITY_POLL_S)
    if daemon.poll() is None:
        state = next((x for x in last.splitlines() if x.startswith("provisioning: ")), "unknown")
        log(
            f"no device identity after {IDENTITY_WAIT_S:.0f} s ({state}); "
            f"see `{binary.relative_to(ROOT)} --config {config} system status`"
        )
