"""`ModuleSockets`: one workload socket per module at `<run_dir>/mnt/<module>.sock`.

Each socket is its own listener, "workload:<module>", so a request on it may act only as that
module. The `mnt` directory is 0700 (only the daemon and the engine reach it on the host); the
socket file is 0666 because only its own module's container has it, bind-mounted.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.api.server import ApiSocketServer, ServerLimits
from firmware.errors import DaemonError

log = logging.getLogger("edgekeeper.workload")

MNT_DIR = "mnt"
SOCKET_MODE = 0o666
LISTENER_KIND = "workload"


def listener_for(module: str) -> str:
    return f"{LISTENER_KIND}:{module}"


@dataclass(frozen=True)
class SocketStatus:
    """A module's workload socket as `identity sockets` shows it."""

    module: str
    path: str
    listening: bool
    connections: int

    def document(self) -> dict[str, object]:
        return {
            "module": self.module,
            "path": self.path,
            "listening": self.listening,
            "connections": self.connections,
        }


class ModuleSockets:
    """Opens, closes and reports the per-module workload sockets."""

    def __init__(
        self, run_dir: Path | str, router: Any, limits: ServerLimits | None = None
    ) -> None:
        self.directory = Path(run_dir) / MNT_DIR
        self._router = router
        self._limits = limits
        self._servers: dict[str, ApiSocketServer] = {}

    def path(self, module: str) -> Path:
        return self.directory / f"{module}.sock"

    async def open(self, module: str) -> Path:
        """Serve `module`'s socket (a no-op when it is served already); returns its path."""
        path = self.path(module)
        if module in self._servers:
            return path
        self._make_directory()
        server = ApiSocketServer(
            f"unix://{path}",
            self._router,
            listener=listener_for(module),
            mode=SOCKET_MODE,
            limits=self._limits,
        )
        await server.start()
        self._servers[module] = server
        return path

    async def close(self, module: str) -> None:
        """Stop serving `module`'s socket and remove its file."""
        server = self._servers.pop(module, None)
        if server is not None:
            await server.close()
            log.info("workload socket of module %s removed", module)

    async def close_all(self) -> None:
        for module in list(self._servers):
            await self.close(module)

    def status(self) -> list[SocketStatus]:
        return [
            SocketStatus(module, str(self.path(module)), True, server.connection_count)
            for module, server in sorted(self._servers.items())
        ]

    def _make_directory(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.directory, 0o700)
        except OSError as error:
            raise DaemonError(
                f"cannot create the module socket directory {self.directory}: {error.strerror}",
                hint="check the permissions of [paths] run_dir",
            ) from None
