"""The TPM behind the bus simulators: raw TPM commands to swtpm's server port, and a TPM reset.

swtpm's server port takes a bare TPM command and answers with a bare response whose header says
its size. One TCP connection per command, so the simulators never hold swtpm's only connection
while idle (other tests and programs share the session's swtpm). A reset is swtpm's CMD_INIT on
its control port (`swtpm_ioctl -i`): afterwards the TPM answers TPM_RC_INITIALIZE until Startup.
"""

from __future__ import annotations

import socket
import struct
import subprocess

from tests.peers.sim import require_program

HEADER_SIZE = 10  # tag u16, size u32, code u32
COMMAND_TIMEOUT_S = 120.0  # swtpm's RSA key generation takes seconds
RESET_TIMEOUT_S = 10.0


class SwtpmRaw:
    """swtpm at `host:port` (server) and `host:ctrl_port` (control)."""

    def __init__(self, host: str, port: int, ctrl_port: int | None = None) -> None:
        self.host = host
        self.port = port
        self.ctrl_port = port + 1 if ctrl_port is None else ctrl_port

    def execute(self, command: bytes) -> bytes:
        """Send one whole TPM command, return the whole response (OSError when swtpm fails)."""
        with socket.create_connection((self.host, self.port), timeout=COMMAND_TIMEOUT_S) as sock:
            # Closed with a reset, not a FIN: a connection per command would otherwise leave one
            # TIME-WAIT port behind per command, and thousands of them exhaust the ports other
            # tests (and `free_port_pair`) need.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.sendall(command)
            header = _receive(sock, HEADER_SIZE)
            (size,) = struct.unpack_from(">I", header, 2)
            if size < HEADER_SIZE:
                raise OSError(f"swtpm answered a response of size {size}")
            return header + _receive(sock, size - HEADER_SIZE)

    def reset(self) -> None:
        """TPM_Init: the TPM forgets its Startup; its next command answers TPM_RC_INITIALIZE."""
        subprocess.run(
            [
                require_program("swtpm_ioctl", "swtpm-tools"),
                "--tcp",
                f"{self.host}:{self.ctrl_port}",
                "-i",
            ],
            check=True,
            capture_output=True,
            timeout=RESET_TIMEOUT_S,
        )


def _receive(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("swtpm closed the connection mid-response")
        data += chunk
    return bytes(data)
