"""`GET /workload/sockets` on the management API: each module's workload socket and its state."""

from __future__ import annotations

from collections.abc import Callable

from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import RouteTable
from firmware.api.workload.sockets import ModuleSockets

# The running workload service's module sockets (None before it has opened any).
SocketListing = ModuleSockets | None


def routes(sockets: Callable[[], SocketListing]) -> RouteTable:
    async def socket_status(request: ApiRequest) -> ApiResponse:
        current = sockets()
        listing = current.status() if current is not None else []
        return ApiResponse(200, {"sockets": [entry.document() for entry in listing]})

    return [("GET", "/workload/sockets", socket_status)]
