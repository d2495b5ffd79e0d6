"""The daemon's status document and log level (`DaemonStatus`), served by its routes
(`firmware.api.management.daemon`): GET /daemon/status and PUT /daemon/log-level through the real
router."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path

from firmware import __version__
from firmware.api.management import daemon
from firmware.api.model import ApiRequest
from firmware.api.versions import LATEST
from firmware.config.schema import Board, Config
from firmware.daemon.logs import LogControl
from firmware.daemon.service import DaemonContext
from firmware.daemon.status import DaemonStatus, memory_kb, open_fds


class Described:
    name = "console"

    def __init__(self) -> None:
        self.running = asyncio.Event()

    async def prepare(self) -> None:
        pass

    async def run(self) -> None:
        self.running.set()
        await asyncio.Event().wait()

    def describe(self) -> dict[str, object]:
        return {"port": "/dev/pts/9"}


def served(daemon_context: Callable[[Config], DaemonContext]) -> DaemonContext:
    """A context whose router serves the daemon routes of a running daemon's `DaemonStatus`."""
    ctx = daemon_context(Config(hostname="gw", board=Board(name="sim")))
    for method, pattern, handler in daemon.routes(DaemonStatus(ctx, lambda: "running")):
        ctx.router.add(method, pattern, handler)
    return ctx


def request(method: str, path: str, body: object = None) -> ApiRequest:
    return ApiRequest(
        method,
        path,
        query={"api-version": LATEST},
        body=b"" if body is None else json.dumps(body).encode(),
    )


async def test_status_document(daemon_context: Callable[[Config], DaemonContext]) -> None:
    ctx = served(daemon_context)
    service = Described()
    ctx.supervisor.start(service)
    await asyncio.wait_for(service.running.wait(), 1)
    response = await ctx.router.dispatch(request("GET", "/daemon/status"))
    assert response.status == 200
    doc = response.json()
    assert doc["version"] == __version__
    assert doc["board"] == "sim"
    assert doc["state"] == "running"
    assert doc["pid"] == os.getpid()
    assert doc["uptime_s"] >= 0
    assert doc["memory"]["rss_kb"] > 1000
    assert 0 < doc["memory"]["anon_kb"] <= doc["memory"]["rss_kb"]
    assert doc["tasks"] == len(asyncio.all_tasks())
    assert doc["open_fds"] == len(os.listdir("/proc/self/fd")) - 1
    (service,) = doc["services"]
    assert service["name"] == "console"
    assert service["state"] == "running"
    assert service["restarts"] == 0
    assert service["last_error"] is None
    assert service["detail"] == {"port": "/dev/pts/9"}
    await ctx.supervisor.stop_all(1)


async def test_log_level_route(
    daemon_context: Callable[[Config], DaemonContext], logs: LogControl
) -> None:
    ctx = served(daemon_context)
    response = await ctx.router.dispatch(request("PUT", "/daemon/log-level", {"level": "debug"}))
    assert (response.status, response.json()) == (200, {"level": "debug"})
    assert logs.level == "debug"
    bad = await ctx.router.dispatch(request("PUT", "/daemon/log-level", {"level": "loud"}))
    assert bad.status == 400
    assert "unknown log level 'loud'" in bad.json()["message"]
    missing = await ctx.router.dispatch(request("PUT", "/daemon/log-level", {"lvl": "info"}))
    assert missing.status == 400 and '"level"' in missing.json()["message"]
    assert logs.level == "debug"


def test_open_fds_counts_the_descriptors_and_follows_them(tmp_path: Path) -> None:
    before = open_fds()
    assert before is not None and before >= 3
    with (tmp_path / "held").open("w"):
        assert open_fds() == before + 1
    assert open_fds() == before
    assert open_fds(tmp_path / "absent") is None


def test_memory_reads_proc(tmp_path: Path) -> None:
    (tmp_path / "status").write_text("Name:\tx\nVmRSS:\t  2048 kB\nRssAnon:\t  1024 kB\n")
    (tmp_path / "smaps_rollup").write_text("00400000-7fff [rollup]\nRss:  2048 kB\nPss:  1500 kB\n")
    assert memory_kb(tmp_path) == {"rss_kb": 2048, "anon_kb": 1024, "pss_kb": 1500}
    assert memory_kb(tmp_path / "absent") == {}
