"""The daemon's own API: `GET /daemon/status` and `PUT /daemon/log-level`.

Status answers `{"version", "board", "state", "uptime_s", "pid", "memory", "services"}` where
`state` is "running", "degraded" (a service was given up) or "stopping", and `memory` holds the
process's resident, anonymous and proportional set sizes in KiB read from /proc.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firmware.daemon.service import DaemonContext
from firmware.errors import BadRequest
from firmware.logs import fields, get_logger

log = get_logger("status")

PROC = Path("/proc/self")


def memory_kb(proc: Path = PROC) -> dict[str, int]:
    """`rss_kb`, `anon_kb` and (where the kernel has smaps_rollup) `pss_kb` of this process."""
    usage: dict[str, int] = {}
    wanted = {"VmRSS:": "rss_kb", "RssAnon:": "anon_kb"}
    _read_kb(proc / "status", wanted, usage)
    _read_kb(proc / "smaps_rollup", {"Pss:": "pss_kb"}, usage)
    return usage


def _read_kb(path: Path, wanted: dict[str, str], into: dict[str, int]) -> None:
    try:
        text = path.read_text()
    except OSError:
        return
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in wanted and wanted[words[0]] not in into:
            into[wanted[words[0]]] = int(words[1])


class DaemonStatus:
    """Builds the status document and serves the daemon's routes."""

    def __init__(self, ctx: DaemonContext, state: Callable[[], str]) -> None:
        self.ctx = ctx
        self._state = state
        self._started = time.monotonic()

    def document(self) -> dict[str, Any]:
        """The status as the API and the console show it."""
        from firmware import __version__

        services = []
        for entry in self.ctx.supervisor.snapshot():
            item: dict[str, Any] = {
                "name": entry.name,
                "state": entry.state,
                "restarts": entry.restarts,
                "last_error": entry.last_error,
                "since": round(entry.since, 3),
            }
            describe = getattr(self.ctx.supervisor.service(entry.name), "describe", None)
            if describe is not None:
                item["detail"] = describe()
            services.append(item)
        return {
            "version": __version__,
            "board": self.ctx.config.board.name,
            "state": self._state(),
            "uptime_s": round(time.monotonic() - self._started, 3),
            "pid": os.getpid(),
            "memory": memory_kb(),
            "services": services,
        }

    def register(self, router: Any) -> None:
        """Add the daemon's routes to the management API (and so to the console)."""
        from firmware.api.model import ApiResponse

        async def get_status(request: Any) -> ApiResponse:
            return ApiResponse(200, self.document())

        async def put_log_level(request: Any) -> ApiResponse:
            body = request.json_object()
            level = body.get("level")
            if not isinstance(level, str):
                raise BadRequest(
                    'field "level" is missing or not a string',
                    hint='send {"level": "debug"|"info"|"warning"|"error"}',
                )
            before = self.ctx.logs.level
            now = self.ctx.logs.set_level(level)
            log.warning("log level changed", extra=fields(to=now, was=before))
            return ApiResponse(200, {"level": now})

        router.add("GET", "/daemon/status", get_status)
        router.add("PUT", "/daemon/log-level", put_log_level)
