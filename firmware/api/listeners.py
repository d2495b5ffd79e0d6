"""Daemon service "api": the management API's sockets, bound in `prepare` and served in `run`."""

from __future__ import annotations

import asyncio
from typing import Any

from firmware.api.server import ApiSocketServer, ServerLimits, start_servers

# The daemon's listeners: (listener name, the `[listen]` key holding its URI).
LISTENERS: tuple[tuple[str, str], ...] = (("mgmt", "management_uri"),)



class ApiServerService:
    """Daemon service "api": binds the configured API sockets in `prepare`, serves them in `run`."""

    name = "api"

    def __init__(self, limits: ServerLimits | None = None) -> None:
        self._limits = limits
        self._servers: list[ApiSocketServer] = []

    async def prepare(self, ctx: Any) -> None:
        listen = ctx.config.listen
        self._servers = await start_servers(
            [(getattr(listen, key), listener) for listener, key in LISTENERS],
            ctx.router,
            mode=listen.socket_mode,
            group=listen.socket_group,
            limits=self._limits,
        )

    async def run(self, ctx: Any) -> None:
        if not self._servers:
            await self.prepare(ctx)
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
