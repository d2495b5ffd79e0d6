"""Daemon service "keys": runs the `KeyService` and serves `GET /keys` on the management API.

`prepare` builds the service from `[keys]`/`[tpm]` (no device I/O, so a missing token or TPM never
stops the daemon from starting); `run` creates the handle-validation key in the default backend and
marks the service ready. Other services reach it with `await key_service(ctx)`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from firmware.errors import Unavailable
from firmware.keys.registry import registry_from_config
from firmware.keys.service import KeyService

log = logging.getLogger("edgekeeper.keys")

SERVICE_NAME = "keys"


class KeysService:
    """The key service under the daemon's supervisor."""

    name = SERVICE_NAME

    def __init__(self) -> None:
        self.keys: KeyService | None = None
        self._ready: asyncio.Event | None = None

    async def prepare(self, ctx: Any) -> None:
        self.keys = KeyService(registry_from_config(ctx.config), ctx.executor)
        register_routes(ctx.router, ctx)

    async def run(self, ctx: Any) -> None:
        keys = self.keys
        if keys is None:
            await self.prepare(ctx)
            keys = self.keys
        try:
            await keys.start()
            log.info("key service ready (default backend %s)", keys.default_backend)
            self._event().set()
            await asyncio.Event().wait()
        finally:
            self._event().clear()
            await keys.close()

    async def wait_ready(self) -> KeyService:
        await self._event().wait()
        assert self.keys is not None
        return self.keys

    def current(self) -> KeyService:
        """The key service if it is ready now; `Unavailable` otherwise (never waits)."""
        if self.keys is None or not self._event().is_set():
            raise Unavailable(
                "the key service is not ready: its default key backend has not started",
                hint="see `edgekeeper status` and the daemon log for the backend's error",
            )
        return self.keys

    def describe(self) -> dict[str, Any]:
        ready = self._ready is not None and self._ready.is_set()
        backend = self.keys.default_backend if self.keys else None
        return {"ready": ready, "default_backend": backend}

    def _event(self) -> asyncio.Event:
        if self._ready is None:
            self._ready = asyncio.Event()
        return self._ready


async def key_service(ctx: Any, *, wait: bool = True) -> KeyService:
    """The running `KeyService` (waiting until it is ready unless `wait` is false);
    `Unavailable` if the daemon runs none, or (without `wait`) if it is not ready yet."""
    service = ctx.services.get(SERVICE_NAME)
    if service is None:
        raise Unavailable("the key service is not running", hint="check the daemon log")
    return await service.wait_ready() if wait else service.current()


def register_routes(router: Any, ctx: Any) -> None:
    """`GET /keys` (once per router; handlers find the current service at request time)."""
    from firmware.api.model import ApiResponse

    async def list_keys(request: Any) -> ApiResponse:
        listing = await (await key_service(ctx, wait=False)).list()
        return ApiResponse(
            200,
            {
                "keys": [
                    {"name": info.key_id, "kind": info.kind.value, "backend": info.backend}
                    for info in listing.keys
                ],
                "unavailable": [
                    {"backend": problem.backend, "message": problem.message}
                    for problem in listing.unavailable
                ],
            },
        )

    add_route_once(router, "GET", "/keys", list_keys)


def add_route_once(router: Any, method: str, pattern: str, handler: Any) -> None:
    """Register a management route unless a restarted service registered it before."""
    if any(r.method == method and r.pattern == pattern for r in router.routes()):
        return
    router.add(method, pattern, handler)
