"""Serve the I²C and SPI TPM simulators on bus sockets until killed (for the sim board and the
binary's tests):

    python -m tests.peers.bus_tpm --i2c PATH --spi PATH --swtpm HOST:PORT [--ctrl PORT]


Prints "ready" (flushed) once every requested socket listens; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from tests.peers.i2c_tpm import I2cTpm
from tests.peers.spi_tpm import SpiTpm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.peers.bus_tpm", description=__doc__)
    parser.add_argument("--i2c", type=Path, help="bus socket of the I²C TPM")
    parser.add_argument("--i2c-address", type=lambda text: int(text, 0), default=0x2E)
    parser.add_argument("--spi", type=Path, help="bus socket of the SPI TPM")
    parser.add_argument("--swtpm", required=True, metavar="HOST:PORT", help="swtpm's server port")
    parser.add_argument("--ctrl", type=int, help="swtpm's control port (default: PORT + 1)")
    options = parser.parse_args(argv)
    if options.i2c is None and options.spi is None:
        parser.error("give --i2c PATH, --spi PATH or both")
    host, _, port = options.swtpm.rpartition(":")
    if not host or not port.isdigit():
        parser.error(f"--swtpm {options.swtpm!r} is not HOST:PORT")

    devices: list[I2cTpm | SpiTpm] = []
    if options.i2c is not None:
        devices.append(I2cTpm(options.i2c, host, int(port), options.ctrl, options.i2c_address))
    if options.spi is not None:
        devices.append(SpiTpm(options.spi, host, int(port), options.ctrl))
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        for device in devices:
            device.start()
        print("ready", flush=True)
        while not stopping.wait(1.0):
            pass
    finally:
        for device in devices:
            device.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
