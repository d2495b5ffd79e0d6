"""A stand-in daemon for CLI tests: the real API server and router on a temp socket, in a thread,
answering the daemon routes with the documented JSON shapes."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import Router
from firmware.api.server import ApiSocketServer
from firmware.errors import BadRequest

STATUS = {
    "version": "0.1.0",
    "board": "sim",
    "state": "degraded",
    "uptime_s": 3725.5,
    "pid": 4242,
    "memory": {"rss_kb": 32150, "anon_kb": 12400},
    "services": [
        {"name": "api", "state": "running", "restarts": 0, "last_error": None},
        {"name": "console", "state": "failed", "restarts": 5, "last_error": "no such device"},
    ],
}


def daemon_router(levels: list[str] | None = None) -> Router:
    """Routes as the daemon registers them; log-level changes are appended to `levels`."""
    router = Router()
    seen = levels if levels is not None else []

    async def status(request: ApiRequest) -> ApiResponse:
        return ApiResponse(body=STATUS)

    async def log_level(request: ApiRequest) -> ApiResponse:
        level = request.json_object().get("level")
        if level not in ("debug", "info", "warning", "error"):
            raise BadRequest(
                f"unknown log level {level!r}", hint="use debug, info, warning or error"
            )
        seen.append(level)
        return ApiResponse(body={"level": level})

    router.add("GET", "/daemon/status", status)
    router.add("PUT", "/daemon/log-level", log_level)
    return router


class ThreadedDaemon:
    """Serves `router` on `directory`/mgmt.sock from a loop in its own thread."""

    def __init__(self, directory: Path, router: Router) -> None:
        self.path = directory / "mgmt.sock"
        self.uri = f"unix://{self.path}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server = ApiSocketServer(self.uri, router)

    def __enter__(self) -> ThreadedDaemon:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._server.start(), self._loop).result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._server.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
