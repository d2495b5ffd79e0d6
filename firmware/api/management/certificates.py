"""`GET /certificates` and `POST /certificates/{name}/renew` on the management API."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import RouteTable

if TYPE_CHECKING:
    from firmware.certs.service import CertificateService


def routes(certs: Callable[[], CertificateService]) -> RouteTable:
    """The certificate routes; `certs()` gives the running service (or raises `Unavailable`)."""

    async def list_certificates(request: ApiRequest) -> ApiResponse:
        service = certs()
        infos = await service.list()
        return ApiResponse(
            200,
            {"certificates": [info.document() for info in infos], "degraded": service.degraded},
        )

    async def renew_certificate(request: ApiRequest, name: str) -> ApiResponse:
        return ApiResponse(200, (await certs().renew(name)).document())

    return [
        ("GET", "/certificates", list_certificates),
        ("POST", "/certificates/{name}/renew", renew_certificate),
    ]
