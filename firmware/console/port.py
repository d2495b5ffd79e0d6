"""The console's byte pipe to the technician: a pty, a UART or a network line, without blocking.

`open_console_port(device, baud, run_dir)` turns `[console] device` into a `ConsolePort`:
"none" gives None; "pty" makes a pty pair (the sim board), prints the slave's path in the log and
writes it to `<run_dir>/console.pty`; a device path opens the UART through pyserial at `baud`; a
device URL (`serial:///dev/ttyS0?baud=N`, `socket://`, `rfc2217://`, docs/transports.md) is
opened through pyserial at its own `baud` when it gives one.

Ports with a file descriptor (pty, UART, `socket://`) are driven by the event loop's reader and
writer callbacks on a non-blocking descriptor. The others get one reader thread and one writer
thread, each handing over one chunk at a time. Output is buffered by the port; `backlog` and
`drain()` let the writer keep that buffer bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import queue
import threading
import tty
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firmware.errors import DeviceError
from firmware.executor import RunBlocking
from firmware.store.atomic import write_atomic
from firmware.transports.address import DeviceUrl, parse_device_url

log = logging.getLogger(__name__)

PTY_FILE = "console.pty"
READ_SIZE = 1024
CONFIG_HINT = 'set [console] device in /etc/edgekeeper/config.toml, or "none"'


class ConsolePort(ABC):
    """A byte stream to the technician's terminal; `write` never blocks, `read` waits."""

    def __init__(self, description: str) -> None:
        self.description = description
        self._backlog = 0
        self._drain_waiters: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def backlog(self) -> int:
        """Bytes accepted by `write` and not yet handed to the device."""
        return self._backlog

    @abstractmethod
    async def read(self) -> bytes:
        """Wait for bytes from the terminal; raise `DeviceError` when the port is gone."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Queue bytes for the terminal; they go out as the device takes them."""

    @abstractmethod
    def close(self) -> None:
        """Release the device; pending output is dropped."""

    async def drain(self, low_water: int = 0) -> None:
        """Wait until at most `low_water` bytes are still queued."""
        if self._backlog <= low_water:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append((low_water, waiter))
        try:
            await waiter
        finally:
            with contextlib.suppress(ValueError):
                self._drain_waiters.remove((low_water, waiter))

    def _sent(self, count: int) -> None:
        self._backlog -= count
        for low_water, waiter in list(self._drain_waiters):
            if self._backlog <= low_water and not waiter.done():
                waiter.set_result(None)

    def _wake_all(self) -> None:
        for _, waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)


class FdPort(ConsolePort):
    """A port on a non-blocking file descriptor, driven by the loop's reader/writer callbacks."""

    def __init__(self, fd: int, description: str, on_close: Callable[[], None]) -> None:
        super().__init__(description)
        os.set_blocking(fd, False)
        self._fd = fd
        self._on_close = on_close
        self._out = bytearray()
        self._writer_armed = False
        self._closed = False
        self._loop = asyncio.get_running_loop()

    async def read(self) -> bytes:
        while True:
            try:
                data = os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                await self._readable()
                continue
            except OSError as error:
                raise self._gone(error) from error
            if not data:
                raise DeviceError(f"console {self.description} was closed by the other end")
            return data

    def write(self, data: bytes) -> None:
        if self._closed or not data:
            return
        self._out += data
        self._backlog += len(data)
        self._flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer_armed:
            self._loop.remove_writer(self._fd)
        self._loop.remove_reader(self._fd)
        self._out.clear()
        self._backlog = 0
        self._wake_all()
        self._on_close()

    async def _readable(self) -> None:
        waiter = self._loop.create_future()
        self._loop.add_reader(self._fd, _resolve, waiter)
        try:
            await waiter
        finally:
            self._loop.remove_reader(self._fd)

    def _flush(self) -> None:
        try:
            sent = os.write(self._fd, self._out) if self._out else 0
        except BlockingIOError:
            sent = 0
        except OSError as error:
            log.warning("console %s: output dropped: %s", self.description, error)
            sent = len(self._out)
        del self._out[:sent]
        if sent:
            self._sent(sent)
        if self._out and not self._writer_armed:
            self._loop.add_writer(self._fd, self._flush)
            self._writer_armed = True
        elif not self._out and self._writer_armed:
            self._loop.remove_writer(self._fd)
            self._writer_armed = False

    def _gone(self, error: OSError) -> DeviceError:
        return DeviceError(
            f"console {self.description} failed: {error.strerror or error}",
            hint="check the cable and the device; the console restarts by itself",
        )


class ThreadedPort(ConsolePort):
    """A pyserial port without a descriptor: one reader and one writer thread, one chunk each."""

    def __init__(self, serial: Any, description: str) -> None:  # pyserial ships no types
        super().__init__(description)
        self._serial = serial
        self._loop = asyncio.get_running_loop()
        self._inbox: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self._taken = threading.Event()
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._read_loop, name="console-reader", daemon=True),
            threading.Thread(target=self._write_loop, name="console-writer", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    async def read(self) -> bytes:
        item = await self._inbox.get()
        self._taken.set()
        if isinstance(item, BaseException):
            raise DeviceError(
                f"console {self.description} failed: {item}",
                hint="check the URL and the peer; the console restarts by itself",
            ) from item
        return item

    def write(self, data: bytes) -> None:
        if self._closed or not data:
            return
        self._backlog += len(data)
        self._outbox.put(bytes(data))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._outbox.put(None)
        self._taken.set()
        cancel_read = getattr(self._serial, "cancel_read", None)
        if cancel_read is not None:
            with contextlib.suppress(Exception):
                cancel_read()
        with contextlib.suppress(Exception):
            self._serial.close()
        self._backlog = 0
        self._wake_all()

    def _read_loop(self) -> None:
        while not self._closed:
            try:
                data = self._serial.read(max(1, self._serial.in_waiting))
            except Exception as error:
                if not self._closed:
                    self._post(error)
                return
            if not data or self._closed:
                continue
            self._taken.clear()
            self._post(data)
            self._taken.wait()

    def _write_loop(self) -> None:
        while (chunk := self._outbox.get()) is not None:
            try:
                self._serial.write(chunk)
            except Exception as error:
                log.warning("console %s: output dropped: %s", self.description, error)
            if self._closed:
                return
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._sent, len(chunk))

    def _post(self, item: bytes | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: the daemon is exiting
            self._loop.call_soon_threadsafe(self._inbox.put_nowait, item)


async def open_console_port(
    device: str, baud: int, run_dir: Path, run_blocking: RunBlocking
) -> ConsolePort | None:
    """Open the console named by `[console] device`; None when it is "none".

    `run_blocking(fn, *args)` runs a blocking open (a UART, a TCP connect) off the loop, in the
    daemon's bounded executor. Raises `DeviceError` naming the device and the fix.
    """
    if device == "none":
        return None
    if device == "pty":
        return _open_pty(Path(run_dir))
    if device.startswith("/"):
        serial = await run_blocking(_open_serial, device, baud)
        return FdPort(serial.fileno(), device, serial.close)
    if "://" in device:
        url = parse_device_url(device)
        baud = url.param_int("baud", baud, lo=50, hi=4_000_000)
        serial = await run_blocking(_open_serial, _pyserial_target(url), baud)
        fd = _descriptor(serial)
        if fd is None:
            return ThreadedPort(serial, device)
        return FdPort(fd, device, serial.close)
    raise DeviceError(
        f"console device {device!r} is not 'none', 'pty', a /dev path or a device URL",
        hint=CONFIG_HINT,
    )


def _pyserial_target(url: DeviceUrl) -> str:
    """What pyserial opens for a console URL: the device path of `serial://`, else the network
    URL without edgekeeper's own parameters (pyserial refuses options it does not know)."""
    if url.scheme == "serial":
        return url.path
    host = f"[{url.host}]" if url.host and ":" in url.host else url.host
    return f"{url.scheme}://{host}:{url.port}"


def _open_pty(run_dir: Path) -> ConsolePort:
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        slave_path = os.ttyname(slave)
        pty_file = run_dir / PTY_FILE
        write_atomic(pty_file, f"{slave_path}\n".encode(), mode=0o644)
    except BaseException:
        os.close(master)
        os.close(slave)
        raise

    def release() -> None:
        with contextlib.suppress(FileNotFoundError):
            pty_file.unlink()
        os.close(master)
        os.close(slave)

    log.info("console on %s (path also in %s)", slave_path, pty_file)
    # The slave stays open here too, so the master never reads EIO while no terminal is attached.
    return FdPort(master, f"pty {slave_path}", release)


def _open_serial(url: str, baud: int) -> Any:
    import serial  # pyserial: only loaded when the board has a serial console

    if url.startswith("/") and not os.path.exists(url):
        raise DeviceError(f"console device {url} does not exist", hint=CONFIG_HINT)
    try:
        return serial.serial_for_url(url, baudrate=baud, timeout=None, write_timeout=None)
    except (serial.SerialException, OSError, ValueError) as error:
        raise DeviceError(
            f"console device {url} cannot be opened: {error}", hint=CONFIG_HINT
        ) from error


def _descriptor(serial: Any) -> int | None:
    try:
        fd = serial.fileno()
    except Exception:
        return None
    if not isinstance(fd, int) or fd < 0:
        return None
    try:
        os.fstat(fd)
    except OSError as error:
        if error.errno == errno.EBADF:
            return None
        raise
    return fd


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
