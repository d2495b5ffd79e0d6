"""`GET /keys` on the management API: every backend's keys, and the backends out of reach."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import RouteTable

if TYPE_CHECKING:
    from firmware.keys.service import KeyService


def routes(keys: Callable[[], KeyService]) -> RouteTable:
    """The key routes; `keys()` gives the running key service (or raises `Unavailable`)."""

    async def list_keys(request: ApiRequest) -> ApiResponse:
        listing = await keys().list()
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

    return [("GET", "/keys", list_keys)]
