"""Daemon service "api": the management API's sockets, bound in `prepare` and served in `run`."""

from __future__ import annotations

import asyncio

from firmware.api.router import Router
from firmware.api.server import ApiSocketServer, ServerLimits, start_servers
from firmware.config.schema import Listen


class ApiServerService:
    """Binds `[listen] management_uri` in `prepare` and serves it in `run`."""

    name = "api"

    def __init__(self, listen: Listen, router: Router, limits: ServerLimits | None = None) -> None:
        self._listen = listen
        self._router = router
        self._limits = limits
        self._servers: list[ApiSocketServer] = []

    async def prepare(self) -> None:
        listen = self._listen
        self._servers = await start_servers(
            [(listen.management_uri, "mgmt")],
            self._router,
            mode=listen.socket_mode,
            group=listen.socket_group,
            limits=self._limits,
        )

    async def run(self) -> None:
        if not self._servers:
            await self.prepare()
        try:
            await asyncio.gather(*(server.serve_forever() for server in self._servers))
        finally:
            servers, self._servers = self._servers, []
            for server in servers:
                await server.close()

    def describe(self) -> dict[str, object]:
        return {
            "sockets": [server.uri for server in self._servers],
            "connections": sum(server.connection_count for server in self._servers),
        }
