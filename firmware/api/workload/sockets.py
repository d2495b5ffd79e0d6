"""`ModuleSockets`: one directory per module, `<run_dir>/mnt/<module>/`, holding its sockets.

`workload.sock` is its own listener, "workload:<identity>", so a request on it may act only as the
module's identity (`$edgeHub` for the module edgeHub, `$edgeAgent` for the agent); the agent's
directory also holds `mgmt.sock`, the management API. The directory is what is bind-mounted into
the container (at /var/run/iotedge, read-only), so a socket a restarted daemon creates again is at
once visible to the running container. The `mnt` directory is 0700 (only the
daemon and the engine reach it on the host); a module's directory is 0755 and its sockets 0666
because only that module's container has them.

A module's directory is treated as the module's, whatever its mount: sockets are made in a private
directory under `mnt` and renamed into it (`bind_unix_socket`), and the directory itself is
changed only through a descriptor opened without following a symlink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from firmware.api.router import Router
from firmware.api.server import ApiSocketServer, ServerLimits, start_servers
from firmware.errors import DaemonError

log = logging.getLogger("edgekeeper.workload")

MNT_DIR = "mnt"
WORKLOAD_SOCKET = "workload.sock"
MANAGEMENT_SOCKET = "mgmt.sock"
MODULE_DIR_MODE = 0o755
SOCKET_MODE = 0o666
LISTENER_KIND = "workload"


def listener_for(module_id: str) -> str:
    """The listener of the workload socket of the module acting as identity `module_id`."""
    return f"{LISTENER_KIND}:{module_id}"


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
    """Opens, closes and reports the per-module socket directories and their sockets."""

    def __init__(
        self, run_dir: Path | str, router: Router, limits: ServerLimits | None = None
    ) -> None:
        self.directory = Path(run_dir) / MNT_DIR
        self._router = router
        self._limits = limits
        self._servers: dict[str, list[ApiSocketServer]] = {}
        self._opening: dict[str, asyncio.Lock] = {}

    def directory_of(self, module: str) -> Path:
        """The host directory mounted into `module`'s container at /var/run/iotedge."""
        return self.directory / module

    def path(self, module: str) -> Path:
        return self.directory_of(module) / WORKLOAD_SOCKET

    async def open(self, module: str, module_id: str, *, management: bool = False) -> Path:
        """Serve `module`'s workload socket, for its identity `module_id`, and the management API
        beside it for the agent (a no-op when served already); returns the module's socket
        directory."""
        directory = self.directory_of(module)
        # The runtime hook and the service's start-up may open the same module at once.
        async with self._opening.setdefault(module, asyncio.Lock()):
            if module in self._servers:
                return directory
            self._make_directory(directory)
            sockets = [(f"unix://{directory / WORKLOAD_SOCKET}", listener_for(module_id))]
            if management:
                sockets.append((f"unix://{directory / MANAGEMENT_SOCKET}", "mgmt"))
            self._servers[module] = await start_servers(
                sockets,
                self._router,
                mode=SOCKET_MODE,
                limits=self._limits,
                staging=self.directory,
            )
        return directory

    async def close(self, module: str) -> None:
        """Stop serving `module`'s sockets (the module is gone): remove them and the directory."""
        await self._stop(module)
        with contextlib.suppress(OSError):
            self.directory_of(module).rmdir()
        log.info("workload socket of module %s removed", module)

    async def close_all(self) -> None:
        """Stop serving every socket (the daemon stops) but keep the directories: running
        containers have them mounted, and the next daemon serves its sockets in them again."""
        for module in list(self._servers):
            await self._stop(module)

    async def _stop(self, module: str) -> None:
        self._opening.pop(module, None)
        for server in self._servers.pop(module, []):
            await server.close()

    def status(self) -> list[SocketStatus]:
        return [
            SocketStatus(module, str(self.path(module)), True, servers[0].connection_count)
            for module, servers in sorted(self._servers.items())
        ]

    def _make_directory(self, module_dir: Path) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.directory, 0o700)
            module_dir.mkdir(exist_ok=True)
            directory = os.open(module_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                os.fchmod(directory, MODULE_DIR_MODE)
            finally:
                os.close(directory)
        except OSError as error:
            raise DaemonError(
                f"cannot create the module socket directory {module_dir}: {error.strerror}",
                hint="check the permissions of [paths] run_dir",
            ) from None
