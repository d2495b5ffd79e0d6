"""Opening the console device: none, pty, device paths, device URLs; errors that say the fix."""

from __future__ import annotations

import asyncio
import os
import socket
import termios

import pytest

from firmware.console.port import PTY_FILE, FdPort, ThreadedPort, open_console_port
from firmware.errors import DeviceError
from firmware.executor import BoundedExecutor

# The daemon runs blocking opens in its bounded executor; so do these tests.
run_blocking = BoundedExecutor().run


def test_none_means_no_console(tmp_path):
    assert asyncio.run(open_console_port("none", 115200, tmp_path, run_blocking)) is None


def test_missing_device_is_one_clear_error(tmp_path):
    with pytest.raises(DeviceError) as caught:
        asyncio.run(open_console_port("/dev/ttyS9-missing", 115200, tmp_path, run_blocking))
    line = caught.value.render()
    assert "console device /dev/ttyS9-missing does not exist" in line
    assert "[console] device" in line and "/etc/edgekeeper/config.toml" in line


def test_unknown_device_spelling_is_refused(tmp_path):
    with pytest.raises(DeviceError, match="not 'none', 'pty', a /dev path or a device URL"):
        asyncio.run(open_console_port("ttyS0", 115200, tmp_path, run_blocking))


def test_unreachable_url_names_the_device(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    with pytest.raises(DeviceError, match=f"socket://127.0.0.1:{free} cannot be opened"):
        asyncio.run(open_console_port(f"socket://127.0.0.1:{free}", 115200, tmp_path, run_blocking))


def test_pty_writes_its_path_and_survives_without_a_terminal(tmp_path):
    async def body():
        port = await open_console_port("pty", 115200, tmp_path, run_blocking)
        assert isinstance(port, FdPort)
        slave = (tmp_path / PTY_FILE).read_text().strip()
        assert slave.startswith("/dev/pts/")
        assert slave in port.description
        port.write(b"nobody is reading this\r\n")
        terminal = os.open(slave, os.O_RDWR | os.O_NOCTTY)
        try:
            assert os.read(terminal, 100) == b"nobody is reading this\r\n"
            os.write(terminal, b"typed")
            assert await asyncio.wait_for(port.read(), 5) == b"typed"
            os.close(terminal)
            terminal = -1
            port.write(b"after the terminal left\r\n")  # no EIO: the slave is still held open
            await asyncio.wait_for(port.drain(), 5)
        finally:
            if terminal >= 0:
                os.close(terminal)
            port.close()
        assert not (tmp_path / PTY_FILE).exists()

    asyncio.run(body())


def test_pty_output_past_the_kernel_buffer_waits_in_the_port(tmp_path):
    async def body():
        port = await open_console_port("pty", 115200, tmp_path, run_blocking)
        try:
            port.write(b"x" * 300_000)
            assert port.backlog > 0
            drained = asyncio.create_task(port.drain())
            # Time passing is the subject: drain() blocks while nobody reads.
            await asyncio.sleep(0.05)
            assert not drained.done()
            terminal = os.open((tmp_path / PTY_FILE).read_text().strip(), os.O_RDONLY | os.O_NOCTTY)
            loop = asyncio.get_running_loop()
            received = 0
            while received < 300_000:
                received += len(await loop.run_in_executor(None, os.read, terminal, 65536))
            os.close(terminal)
            await asyncio.wait_for(drained, 5)
            assert port.backlog == 0
        finally:
            port.close()

    asyncio.run(body())


def test_socket_url_is_driven_by_the_loop(tmp_path):
    async def body():
        accepted: asyncio.Queue = asyncio.Queue()

        async def on_client(reader, writer):
            await accepted.put((reader, writer))

        server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        host, port_number = server.sockets[0].getsockname()[:2]
        port = await open_console_port(
            f"socket://{host}:{port_number}", 115200, tmp_path, run_blocking
        )
        try:
            assert isinstance(port, FdPort)
            reader, writer = await accepted.get()
            port.write(b"edgekeeper> ")
            assert await reader.readexactly(12) == b"edgekeeper> "
            writer.write(b"help\r")
            await writer.drain()
            assert await asyncio.wait_for(port.read(), 5) == b"help\r"
            writer.close()
            await writer.wait_closed()
            with pytest.raises(DeviceError, match="closed by the other end"):
                await asyncio.wait_for(port.read(), 5)
        finally:
            port.close()
            server.close()
            await server.wait_closed()

    asyncio.run(body())


def test_a_port_without_a_descriptor_uses_the_reader_and_writer_threads(tmp_path):
    import serial

    async def body():
        port = ThreadedPort(serial.serial_for_url("loop://", timeout=None), "loop://")
        try:
            port.write(b"echo through loop://")
            await asyncio.wait_for(port.drain(), 5)
            received = b""
            while len(received) < 20:
                received += await asyncio.wait_for(port.read(), 5)
            assert received == b"echo through loop://"
        finally:
            port.close()

    asyncio.run(body())


def test_serial_url_opens_its_device_path_at_its_own_speed(tmp_path):
    master, slave = os.openpty()
    path = os.ttyname(slave)

    async def body():
        port = await open_console_port(f"serial://{path}?baud=9600", 115200, tmp_path, run_blocking)
        try:
            assert isinstance(port, FdPort)
            assert termios.tcgetattr(slave)[5] == termios.B9600
            port.write(b"hello")
            await asyncio.wait_for(port.drain(), 5)
            assert os.read(master, 5) == b"hello"
        finally:
            port.close()

    try:
        asyncio.run(body())
    finally:
        os.close(master)
        os.close(slave)


def test_a_network_url_loses_edgekeepers_own_parameters_before_pyserial(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    url = f"rfc2217://127.0.0.1:{free}?baud=9600"
    with pytest.raises(DeviceError, match="cannot be opened") as caught:
        asyncio.run(open_console_port(url, 115200, tmp_path, run_blocking))
    assert f"rfc2217://127.0.0.1:{free} cannot be opened" in caught.value.message
    assert "baud" not in caught.value.message
