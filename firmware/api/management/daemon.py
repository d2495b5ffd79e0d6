"""The daemon's own routes: `GET /daemon/status` and `PUT /daemon/log-level`."""

from __future__ import annotations

from typing import Protocol

from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import RouteTable
from firmware.errors import BadRequest


class DaemonControl(Protocol):
    """What the daemon offers these routes."""

    def document(self) -> dict[str, object]:
        """The status document."""

    def set_log_level(self, level: str) -> str:
        """Change the log level; the level now."""


def routes(daemon: DaemonControl) -> RouteTable:
    async def get_status(request: ApiRequest) -> ApiResponse:
        return ApiResponse(200, daemon.document())

    async def put_log_level(request: ApiRequest) -> ApiResponse:
        level = request.json_object().get("level")
        if not isinstance(level, str):
            raise BadRequest(
                'field "level" is missing or not a string',
                hint='send {"level": "debug"|"info"|"warning"|"error"}',
            )
        return ApiResponse(200, {"level": daemon.set_log_level(level)})

    return [("GET", "/daemon/status", get_status), ("PUT", "/daemon/log-level", put_log_level)]
