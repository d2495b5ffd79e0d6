"""Daemon test support: the daemon's logs to a string; contexts and daemons built the way
`edgekeeper run` builds them (`async def` tests run through tests/conftest.py's hook).

- `logs`: a `LogControl` writing to `log_stream` (restores the root logger's level after);
- `daemon_context(config)`: a `DaemonContext` with a real router, executor, supervisor, store;
- `make_daemon(config, wire=Wiring, config_file=None)`: a `Daemon` with its lock and store on the
  test's temp dir (`config_file` is what a reload reads);
- `serving(daemon)`: an async context manager running `daemon.serve()` until its services are
  started ("edgekeeper ready"), and stopping it (exit code 0) at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from firmware.api.router import Router
from firmware.config.schema import Config
from firmware.daemon.app import Daemon
from firmware.daemon.lock import InstanceLock
from firmware.daemon.logs import LogControl
from firmware.daemon.service import ConfigCell, DaemonContext, ServiceDirectory
from firmware.daemon.supervisor import Supervisor
from firmware.daemon.wiring import Wiring
from firmware.executor import BoundedExecutor
from firmware.store.state import StateStore
from tests.peers.waiting import wait_until_async

READY_TIMEOUT_S = 10.0


@pytest.fixture
def log_stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def logs(log_stream: io.StringIO) -> Iterator[LogControl]:
    root = logging.getLogger()
    before = root.level
    control = LogControl(stream=log_stream)
    yield control
    control.close()
    root.setLevel(before)


@pytest.fixture
def daemon_context(tmp_path: Path, logs: LogControl) -> Iterator[Callable[[Config], DaemonContext]]:
    executors: list[BoundedExecutor] = []

    def make(config: Config) -> DaemonContext:
        executor = BoundedExecutor()
        executors.append(executor)
        return DaemonContext(
            config_cell=ConfigCell(config),
            store=StateStore(tmp_path / "state"),
            router=Router(),
            executor=executor,
            supervisor=Supervisor(),
            logs=logs,
            started_at=time.time(),
            services=ServiceDirectory(),
            request_stop=lambda: None,
        )

    yield make
    for executor in executors:
        executor.shutdown(wait=False)


@pytest.fixture
def make_daemon(tmp_path: Path, logs: LogControl) -> Iterator[Callable[..., Daemon]]:
    made: list[Daemon] = []

    def make(
        config: Config,
        wire: Callable[[DaemonContext], Wiring] = Wiring,
        config_file: Path | None = None,
    ) -> Daemon:
        store = StateStore(tmp_path / "state")
        store.ensure()
        lock = InstanceLock(tmp_path)
        daemon = Daemon(config_file, None, config, logs, lock, store, (False, False), wire=wire)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.notifier.close()
        daemon.executor.shutdown(wait=False)


@pytest.fixture
def serving(
    log_stream: io.StringIO,
) -> Callable[[Daemon], contextlib.AbstractAsyncContextManager[Daemon]]:
    @contextlib.asynccontextmanager
    async def serve(daemon: Daemon) -> AsyncIterator[Daemon]:
        task = asyncio.create_task(daemon.serve())
        await wait_until_async(
            lambda: task.done() or "edgekeeper ready" in log_stream.getvalue(),
            timeout_s=READY_TIMEOUT_S,
            what="the daemon to start its services",
        )
        if task.done():
            raise AssertionError(f"serve() ended before ready: {task.result()!r}")
        try:
            yield daemon
        finally:
            daemon.request_stop()
            code = await task
        assert code == 0, log_stream.getvalue()

    return serve
