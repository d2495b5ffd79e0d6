"""Daemon service "certs": runs the `CertificateService` once the key service is ready, and serves
`GET /certificates` and `POST /certificates/{name}/renew` on the management API.

Other services reach it with `await certificate_service(ctx)`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from firmware.errors import Unavailable
from firmware.keys.daemon import add_route_once, key_service

log = logging.getLogger("edgekeeper.certs")

SERVICE_NAME = "certs"


class CertificatesService:
    """The certificate service under the daemon's supervisor."""

    name = SERVICE_NAME

    def __init__(self) -> None:
        self.certs: Any = None
        self._ready: asyncio.Event | None = None

    async def prepare(self, ctx: Any) -> None:
        register_routes(ctx.router, ctx)

    async def run(self, ctx: Any) -> None:
        from firmware.certs.policy import policy_from_config
        from firmware.certs.service import CertificateService

        register_routes(ctx.router, ctx)
        keys = await key_service(ctx)
        certs = CertificateService(keys, policy_from_config(ctx.config), ctx.executor)
        try:
            await certs.start()
            self.certs = certs
            self._event().set()
            log.info("certificate service ready")
            await asyncio.Event().wait()
        finally:
            self._event().clear()
            await certs.stop()

    async def wait_ready(self) -> Any:
        await self._event().wait()
        return self.certs

    def current(self) -> Any:
        """The certificate service if it is ready now; `Unavailable` otherwise (never waits)."""
        if self.certs is None or not self._event().is_set():
            raise Unavailable(
                "the certificate service is not ready (waiting for the key service or the Edge CA)",
                hint="see `edgekeeper status` and the daemon log",
            )
        return self.certs

    def describe(self) -> dict[str, Any]:
        if self.certs is None:
            return {"ready": False}
        return {"ready": self._event().is_set(), **self.certs.describe()}

    def _event(self) -> asyncio.Event:
        if self._ready is None:
            self._ready = asyncio.Event()
        return self._ready


async def certificate_service(ctx: Any, *, wait: bool = True) -> Any:
    """The running `CertificateService` (waiting until ready unless `wait` is false);
    `Unavailable` if the daemon runs none, or (without `wait`) if it is not ready yet."""
    service = ctx.services.get(SERVICE_NAME)
    if service is None:
        raise Unavailable("the certificate service is not running", hint="check the daemon log")
    return await service.wait_ready() if wait else service.current()


def register_routes(router: Any, ctx: Any) -> None:
    from firmware.api.model import ApiResponse

    async def list_certificates(request: Any) -> ApiResponse:
        certs = await certificate_service(ctx, wait=False)
        infos = await certs.list()
        return ApiResponse(
            200, {"certificates": [info.document() for info in infos], "degraded": certs.degraded}
        )

    async def renew_certificate(request: Any, name: str) -> ApiResponse:
        certs = await certificate_service(ctx, wait=False)
        return ApiResponse(200, (await certs.renew(name)).document())

    add_route_once(router, "GET", "/certificates", list_certificates)
    add_route_once(router, "POST", "/certificates/{name}/renew", renew_certificate)
