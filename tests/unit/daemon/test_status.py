"""The daemon's routes: GET /daemon/status and PUT /daemon/log-level through the real router."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from firmware import __version__
from firmware.api.model import ApiRequest
from firmware.api.router import Router
from firmware.api.versions import LATEST
from firmware.daemon.logs import LogControl
from firmware.daemon.service import ConfigCell, DaemonContext
from firmware.daemon.status import DaemonStatus, memory_kb
from firmware.daemon.supervisor import Supervisor
from firmware.executor import BoundedExecutor
from firmware.store.state import StateStore


class Described:
    name = "console"

    async def run(self, ctx: object) -> None:
        await asyncio.Event().wait()

    def describe(self) -> dict[str, object]:
        return {"port": "/dev/pts/9"}


@pytest.fixture
def logs() -> Iterator[LogControl]:
    root = logging.getLogger()
    before = root.level
    control = LogControl(stream=io.StringIO())
    yield control
    control.close()
    root.setLevel(before)


def context(tmp_path: Path, logs: LogControl) -> DaemonContext:
    config = SimpleNamespace(board=SimpleNamespace(name="sim"))
    return DaemonContext(
        config_cell=ConfigCell(config),
        store=StateStore(tmp_path),
        router=Router(),
        executor=BoundedExecutor(),
        supervisor=Supervisor(),
        logs=logs,
        started_at=time.time(),
    )


def request(method: str, path: str, body: object = None) -> ApiRequest:
    return ApiRequest(
        method,
        path,
        query={"api-version": LATEST},
        body=b"" if body is None else json.dumps(body).encode(),
    )


async def test_status_document(tmp_path: Path, logs: LogControl) -> None:
    ctx = context(tmp_path, logs)
    DaemonStatus(ctx, lambda: "running").register(ctx.router)
    ctx.supervisor.start(Described(), ctx)
    await asyncio.sleep(0)
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
    (service,) = doc["services"]
    assert service["name"] == "console"
    assert service["state"] == "running"
    assert service["restarts"] == 0
    assert service["last_error"] is None
    assert service["detail"] == {"port": "/dev/pts/9"}
    await ctx.supervisor.stop_all(1)


async def test_log_level_route(tmp_path: Path, logs: LogControl) -> None:
    ctx = context(tmp_path, logs)
    DaemonStatus(ctx, lambda: "running").register(ctx.router)
    response = await ctx.router.dispatch(request("PUT", "/daemon/log-level", {"level": "debug"}))
    assert (response.status, response.json()) == (200, {"level": "debug"})
    assert logs.level == "debug"
    bad = await ctx.router.dispatch(request("PUT", "/daemon/log-level", {"level": "loud"}))
    assert bad.status == 400
    assert "unknown log level 'loud'" in bad.json()["message"]
    missing = await ctx.router.dispatch(request("PUT", "/daemon/log-level", {"lvl": "info"}))
    assert missing.status == 400 and '"level"' in missing.json()["message"]
    assert logs.level == "debug"


def test_memory_reads_proc(tmp_path: Path) -> None:
    (tmp_path / "status").write_text("Name:\tx\nVmRSS:\t  2048 kB\nRssAnon:\t  1024 kB\n")
    (tmp_path / "smaps_rollup").write_text("00400000-7fff [rollup]\nRss:  2048 kB\nPss:  1500 kB\n")
    assert memory_kb(tmp_path) == {"rss_kb": 2048, "anon_kb": 1024, "pss_kb": 1500}
    assert memory_kb(tmp_path / "absent") == {}
