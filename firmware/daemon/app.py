"""`edgekeeper run`: start-up checks, the event loop, the services, reload and shutdown.

`run(config_file, board, log_level, log_format)` is what the CLI calls. Before the loop starts it
turns core dumps off and makes the process non-dumpable (`hardening`), loads the config, creates
and checks the run and data directories (`OwnDirectory`: refused if anyone but root and our user
could change them), takes the single-instance lock and opens the state store; a problem there
prints one `error: ...` line and returns 1. Then every enabled service is prepared (a failure is
again one line and exit 1), started under the supervisor, and READY=1 goes to the service manager.
`SETTLE_S` after READY the memory only starting needed is given back (`residency`).
SIGTERM/SIGINT stop the services within `STOP_TIMEOUT_S` and return 0; SIGHUP reloads the config
(an invalid one is logged problem by problem and the old one kept). A service whose config sections
changed is reconfigured in place when it can (`Reconfigurable`: the key service, so holders of keys
and handles never see it go away) and restarted otherwise; one that refuses the new config keeps
running as it was and leaves the daemon degraded until a reload it accepts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from firmware.api.router import Router
from firmware.config import load_config
from firmware.config.errors import ConfigProblems
from firmware.config.schema import Config
from firmware.daemon import signals
from firmware.daemon.hardening import ProcessHardening, harden_process
from firmware.daemon.lock import InstanceLock
from firmware.daemon.logs import LogControl
from firmware.daemon.notify import Notifier
from firmware.daemon.residency import release_start_up_memory
from firmware.daemon.service import (
    ConfigCell,
    DaemonContext,
    Reconfigurable,
    Service,
    ServiceDirectory,
)
from firmware.daemon.status import DaemonStatus
from firmware.daemon.supervisor import FAILED, Supervisor, describe_error
from firmware.daemon.wiring import ServiceEntry, Wiring
from firmware.errors import DaemonError, EdgekeeperError
from firmware.executor import BoundedExecutor
from firmware.logs import fields, get_logger
from firmware.store.directory import OwnDirectory
from firmware.store.state import StateStore

log = get_logger("daemon")

STOP_TIMEOUT_S = 10.0
SETTLE_S = 5.0  # after READY: the agent's container is up and start-up work has finished
STATE_SUBDIR = "state"


def run(
    config_file: str | os.PathLike[str] | None,
    board: str | None,
    log_level: str | None = None,
    log_format: str | None = None,
) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT; the process exit code."""
    try:
        logs = LogControl(level=log_level or "info", fmt=log_format or "text")
    except EdgekeeperError as error:
        print(f"error: {error.render()}", file=sys.stderr)
        return 2
    daemon = None
    try:
        daemon = Daemon.start_up(config_file, board, logs, log_level, log_format)
        code = _run_loop(daemon)
    except EdgekeeperError as error:
        print(f"error: {error.render()}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    finally:
        if daemon is not None:
            daemon.close()
        logs.close()
    return code


def _run_loop(daemon: Daemon) -> int:
    loop = asyncio.new_event_loop()
    try:
        code = loop.run_until_complete(daemon.serve())
        leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.wait(leftovers, timeout=1.0))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
    if daemon.executor.in_flight:
        log.error(
            "blocking calls still running at exit; not waiting for them",
            extra=fields(calls=daemon.executor.in_flight),
        )
        logging.shutdown()
        os._exit(code)
    return code


class Daemon:
    """One running edgekeeper: config, lock, store, services, and the loop-side machinery."""

    def __init__(
        self,
        config_file: str | os.PathLike[str] | None,
        board: str | None,
        config: Config,
        logs: LogControl,
        lock: InstanceLock,
        store: StateStore,
        pinned_logging: tuple[bool, bool],
        wire: Callable[[DaemonContext], Wiring] = Wiring,
    ) -> None:
        self.config_file = None if config_file is None else Path(config_file)
        self.board = board
        self.config = ConfigCell(config)
        self.logs = logs
        self.lock = lock
        self.store = store
        self._wire = wire
        self.executor = BoundedExecutor()
        self.notifier = Notifier.from_env()
        self.supervisor = Supervisor(on_change=self._services_changed)
        self.services = ServiceDirectory()
        self.entries: dict[str, ServiceEntry] = {}
        self.unapplied: dict[str, str] = {}
        self._pinned_logging = pinned_logging
        self._stopping = False
        self._stop_event: asyncio.Event | None = None
        self._reload_lock: asyncio.Lock | None = None
        self._reloads: set[asyncio.Task[bool]] = set()
        self._settled: asyncio.TimerHandle | None = None
        self._release: asyncio.Task[None] | None = None
        self._last_status = ""
        self.ctx: DaemonContext | None = None
        self.wiring: Wiring | None = None

    @classmethod
    def start_up(
        cls,
        config_file: str | os.PathLike[str] | None,
        board: str | None,
        logs: LogControl,
        log_level: str | None = None,
        log_format: str | None = None,
    ) -> Daemon:
        """Harden the process, load the config, make and check the directories, take the lock,
        open the store (or raise)."""
        harden_process()
        config = load_config(None if config_file is None else Path(config_file), board)
        if log_level is None:
            logs.set_level(config.logging.level)
        if log_format is None:
            logs.set_format(config.logging.format)
        run_dir = OwnDirectory(Path(config.paths.run_dir), "run_dir", "[paths] run_dir", 0o755)
        data_dir = OwnDirectory(Path(config.paths.data_dir), "data_dir", "[paths] data_dir", 0o700)
        lock = InstanceLock(run_dir.ensure())
        lock.acquire()
        try:
            store = StateStore(data_dir.ensure() / STATE_SUBDIR)
            store.ensure()
        except BaseException:
            lock.release()
            raise
        pinned = (log_level is not None, log_format is not None)
        return cls(config_file, board, config, logs, lock, store, pinned)

    def state(self) -> str:
        """The daemon's state: "stopping", "degraded" or "running"."""
        if self._stopping:
            return "stopping"
        return "degraded" if self.supervisor.degraded or self.unapplied else "running"

    async def serve(self) -> int:
        """Run the services until asked to stop; the exit code."""
        loop = asyncio.get_running_loop()
        self.logs.attach_loop(loop)
        self._stop_event = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        uninstall = signals.install(loop, self._on_stop_signal, self._on_reload_signal)
        try:
            self.ctx = self._context()
            self.wiring = self._wire(self.ctx)
            self.wiring.register_routes(DaemonStatus(self.ctx, self.state, self.config_file))
            async with self._reload_lock:
                await self._start_services()
            process = ProcessHardening.current()
            log.info(
                "edgekeeper ready",
                extra=fields(
                    pid=os.getpid(),
                    board=self.config.current.board.name,
                    services=",".join(self.supervisor.names()) or "none",
                    core_dumps="on" if process.core_dumps else "off",
                    dumpable="yes" if process.dumpable else "no",
                ),
            )
            self.notifier.ready(self._status_line())
            self.notifier.start_watchdog(loop)
            self._settled = loop.call_later(SETTLE_S, self._on_settled)
            await self._stop_event.wait()
            return await self._shut_down()
        finally:
            uninstall()
            self.notifier.close()
            self.executor.shutdown(wait=False)
            self.logs.attach_loop(None)

    def close(self) -> None:
        """Release the lock (after the loop ended)."""
        self.lock.release()

    def request_stop(self) -> None:
        """Ask the daemon to stop (what SIGTERM does)."""
        if self._stop_event is not None:
            self._stop_event.set()

    def _context(self) -> DaemonContext:
        return DaemonContext(
            config_cell=self.config,
            store=self.store,
            router=Router(),
            executor=self.executor,
            supervisor=self.supervisor,
            logs=self.logs,
            started_at=time.time(),
            services=self.services,
            request_stop=self.request_stop,
        )

    async def _start_services(self) -> None:
        for entry in self._wired().enabled(self.config.current):
            try:
                service = self._create(entry)
                self.supervisor.add(service)
                await service.prepare()
            except EdgekeeperError:
                await self.supervisor.stop_all(STOP_TIMEOUT_S)
                raise
            except Exception as error:
                log.error(
                    "service failed to start", exc_info=error, extra=fields(service=entry.name)
                )
                await self.supervisor.stop_all(STOP_TIMEOUT_S)
                raise DaemonError(
                    f"service {entry.name} failed to start: {type(error).__name__}: {error}",
                    hint="see the log above for the traceback; this is a bug, please report it",
                ) from error
            self.supervisor.start(service, prepared=True)
        await asyncio.sleep(0)

    def _wired(self) -> Wiring:
        if self.wiring is None:
            raise DaemonError("the daemon is not serving yet")
        return self.wiring

    def _create(self, entry: ServiceEntry) -> Service:
        if self.ctx is None:
            raise DaemonError("the daemon is not serving yet")
        service = entry.create(self.ctx)
        self.entries[entry.name] = entry
        return service

    async def _shut_down(self) -> int:
        self._stopping = True
        self.notifier.stopping()
        log.info("stopping", extra=fields(timeout_s=STOP_TIMEOUT_S))
        for task in list(self._reloads):
            task.cancel()
        if self._settled is not None:
            self._settled.cancel()
        if self._release is not None:
            self._release.cancel()
        overran = await self.supervisor.stop_all(STOP_TIMEOUT_S)
        log.info("stopped" if not overran else "stopped; some services overran")
        return 1 if overran else 0

    def _on_settled(self) -> None:
        self._release = asyncio.get_running_loop().create_task(self._release_start_up_memory())

    async def _release_start_up_memory(self) -> None:
        try:
            released = await self.executor.run(release_start_up_memory)
        except OSError as error:  # /proc unreadable: the memory simply stays
            log.warning("start-up memory not given back", extra=fields(error=str(error)))
            return
        log.info(
            "start-up memory given back",
            extra=fields(
                rss_before_kib=released.rss_before_kib,
                rss_after_kib=released.rss_after_kib,
                paged_out_mappings=released.mappings,
            ),
        )

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        log.info("signal received; stopping", extra=fields(signal=sig.name))
        self.request_stop()

    def _on_reload_signal(self) -> None:
        if self._stopping:
            return
        task = asyncio.get_running_loop().create_task(self.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self) -> bool:
        """Load the config again and apply it; False (old config kept) if it is invalid."""
        assert self._reload_lock is not None
        async with self._reload_lock:
            self.notifier.reloading()
            log.info("reloading configuration", extra=fields(config=str(self.config_file)))
            try:
                config = await self.executor.run(load_config, self.config_file, self.board)
            except EdgekeeperError as error:
                problems = error.problems if isinstance(error, ConfigProblems) else (error,)
                for problem in problems:
                    log.error("configuration problem", extra=fields(problem=problem.render()))
                log.error(
                    "configuration not reloaded; keeping the one in force",
                    extra=fields(problems=len(problems)),
                )
                self.notifier.ready(self._status_line())
                return False
            await self._apply(config)
            log.info("configuration reloaded", extra=fields(log_level=self.logs.level))
            log.debug("services in force", extra=fields(services=",".join(self.entries)))
            self.notifier.ready(self._status_line())
            return True

    async def _apply(self, new: Config) -> None:
        old = self.config.current
        if old.paths != new.paths:
            log.warning(
                "[paths] changed; the lock and state store move only at the next start",
            )
        self.config.current = new
        level_pinned, format_pinned = self._pinned_logging
        if not level_pinned:
            self.logs.set_level(new.logging.level)
        if not format_pinned:
            self.logs.set_format(new.logging.format)
        wanted = {entry.name: entry for entry in self._wired().enabled(new)}
        states = {state.name: state.state for state in self.supervisor.snapshot()}
        for name in list(self.entries):
            entry = self.entries[name]
            if name not in wanted:
                log.info("service disabled by the new configuration", extra=fields(service=name))
                await self._stop_service(name)
            elif states.get(name) == FAILED or (
                (entry.section_changed(old, new) or name in self.unapplied)
                and not await self._reconfigure(name, new)
            ):
                log.info("restarting service for the new configuration", extra=fields(service=name))
                await self._stop_service(name)
        for name, entry in wanted.items():
            if name not in self.entries:
                await self._start_reloaded(entry)

    async def _reconfigure(self, name: str, config: Config) -> bool:
        """Give a running service `config` in place; False when it must be restarted instead."""
        service = self.supervisor.service(name)
        if not isinstance(service, Reconfigurable):
            return False
        try:
            applied = await service.reconfigure(config)
        except EdgekeeperError as error:
            self.unapplied[name] = error.render()
            log.error(
                "service keeps its previous configuration; the daemon is degraded",
                extra=fields(service=name, error=self.unapplied[name]),
            )
            return True
        except Exception as error:
            log.error(
                "service could not be reconfigured; restarting it",
                exc_info=error,
                extra=fields(service=name, error=describe_error(error)),
            )
            return False
        if applied:
            self.unapplied.pop(name, None)
            log.info("service reconfigured in place", extra=fields(service=name))
        return applied

    async def _start_reloaded(self, entry: ServiceEntry) -> None:
        """Create, prepare and start a service after a reload; a failure goes to back-off."""
        service: Service | None = None
        try:
            service = self._create(entry)
            self.supervisor.add(service)
            await service.prepare()
        except Exception as error:
            log.error(
                "service failed to start; retrying with back-off",
                exc_info=not isinstance(error, EdgekeeperError),
                extra=fields(service=entry.name, error=describe_error(error)),
            )
            if service is not None:
                self.supervisor.start(service)
            return
        self.supervisor.start(service, prepared=True)

    async def _stop_service(self, name: str) -> None:
        await self.supervisor.stop(name, STOP_TIMEOUT_S)
        self.supervisor.forget(name)
        self.services.forget(name)
        self.entries.pop(name, None)
        self.unapplied.pop(name, None)

    def _status_line(self) -> str:
        snapshot = self.supervisor.snapshot()
        failed = [s.name for s in snapshot if s.state == FAILED]
        problems = [f"{name} failed" for name in failed]
        problems += [f"{name} kept its previous configuration" for name in self.unapplied]
        if problems:
            return f"degraded: {', '.join(problems)}"
        return f"running: {len(snapshot)} services"

    def _services_changed(self) -> None:
        if self._stopping or self.ctx is None:
            return
        line = self._status_line()
        if line != self._last_status:
            self._last_status = line
            self.notifier.status(line)
