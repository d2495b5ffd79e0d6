"""`python -m tests.peers.bus_tpm` serves both simulators until SIGTERM, as the sim board and the
binary's tests run it."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
from pathlib import Path

from tests.peers.raw_bus import RawBus
from tests.peers.sim import REPO, Swtpm
from tests.peers.tis_device import DID_VID


def test_serves_i2c_and_spi_until_sigterm(swtpm: Swtpm, bus_dir: Path) -> None:
    i2c, spi = bus_dir / "i2c.sock", bus_dir / "spi.sock"
    buses = ["--i2c", str(i2c), "--spi", str(spi)]
    backend = ["--swtpm", f"{swtpm.host}:{swtpm.port}", "--ctrl", str(swtpm.ctrl_port)]
    program = subprocess.Popen(
        [sys.executable, "-m", "tests.peers.bus_tpm", *buses, *backend],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert program.stdout is not None
        assert select.select([program.stdout], [], [], 10.0)[0], "no 'ready' within 10 s"
        assert program.stdout.readline() == "ready\n"
        bus = RawBus(i2c)
        assert bus.i2c((0x2E, b"\x48"), (0x2E, 4)) == (0, DID_VID.to_bytes(4, "little"))
        bus.close()
        bus = RawBus(spi)
        status, rx = bus.spi((b"\x83\xd4\x0f\x00" + bytes(4), False))
        assert status == 0 and rx[4:] == DID_VID.to_bytes(4, "little")
        bus.close()
        program.send_signal(signal.SIGTERM)
        assert program.wait(timeout=5) == 0
        assert not i2c.exists() and not spi.exists()
    finally:
        program.kill()
        program.wait(timeout=5)
        if program.stdout is not None:
            program.stdout.close()
