"""The daemon's own state for `GET /daemon/status` and `PUT /daemon/log-level`.

The status document is `{"version", "board", "config_file", "state", "uptime_s", "pid", "memory",
"tasks", "open_fds", "services"}`, where `config_file` is the file the daemon was started with
(None: the default search), and `state` is "running", "degraded" (a service was given up) or
"stopping", `memory` holds the process's resident, anonymous and proportional set sizes in KiB read
from /proc, `tasks` the number of asyncio tasks not yet done and `open_fds` the number of file
descriptors the process holds (what a soak watches for leaks).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from firmware import __version__
from firmware.daemon.service import DaemonContext
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


def open_fds(proc: Path = PROC) -> int | None:
    """How many file descriptors the process holds (None where /proc does not say)."""
    try:
        with os.scandir(proc / "fd") as entries:
            # the directory being read is one of them while it is read
            return sum(1 for _ in entries) - (1 if proc == PROC else 0)
    except OSError:
        return None


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
    """Builds the status document and changes the log level."""

    def __init__(
        self, ctx: DaemonContext, state: Callable[[], str], config_file: Path | None = None
    ) -> None:
        self.ctx = ctx
        self._state = state
        self._config_file = config_file
        self._started = time.monotonic()

    def document(self) -> dict[str, object]:
        """The status as the API and the console show it."""
        services = []
        for entry in self.ctx.supervisor.snapshot():
            item: dict[str, object] = {
                "name": entry.name,
                "state": entry.state,
                "restarts": entry.restarts,
                "last_error": entry.last_error,
                "since": round(entry.since, 3),
            }
            service = self.ctx.supervisor.service(entry.name)
            if service is not None:
                item["detail"] = service.describe()
            services.append(item)
        return {
            "version": __version__,
            "board": self.ctx.config.board.name,
            "config_file": None if self._config_file is None else str(self._config_file),
            "state": self._state(),
            "uptime_s": round(time.monotonic() - self._started, 3),
            "pid": os.getpid(),
            "memory": memory_kb(),
            "tasks": len(asyncio.all_tasks()),
            "open_fds": open_fds(),
            "services": services,
        }

    def set_log_level(self, level: str) -> str:
        """Change the daemon's log level (`BadRequest` for an unknown one); the level now."""
        before = self.ctx.logs.level
        now = self.ctx.logs.set_level(level)
        log.warning("log level changed", extra=fields(to=now, was=before))
        return now
