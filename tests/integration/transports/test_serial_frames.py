"""TPM commands in simulator frames over a serial line, against a real swtpm: through the serial
simulator (tests/peers/serial_tpm.py) on a pty and on TCP, and straight to swtpm's own port.

Every fault the line or the microcontroller can have ends in the right response (after the line is
put back in step) or a clear TransportError within the command's deadline; none hangs, and no
command reaches the TPM twice.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import pytest

from firmware.transports.address import parse_device_url
from firmware.transports.errors import (
    TransportError,
    TransportProtocolError,
    TransportTimeout,
)
from firmware.transports.serial_frames import open_serial_frames
from firmware.transports.transport import Transport
from tests.peers.serial_tpm import SerialTpm
from tests.peers.sim import Swtpm

pytestmark = pytest.mark.swtpm

GET_RANDOM_8 = bytes.fromhex("8001 0000000c 0000017b 0008")
STARTUP_CLEAR = bytes.fromhex("8001 0000000c 00000144 0000")
PROBE_TAG = b"\x80\x00"
TPM_RC_INITIALIZE = 0x100
SHORT_S = 0.4  # the deadline of a command that is meant to time out
LONG_S = 5.0  # the deadline of a command that is meant to succeed
SLACK_S = 0.25  # how far past its deadline a failing exchange may return (thread wake-ups)


def assert_random(response: bytes) -> None:
    tag, size, rc, count = struct.unpack_from(">HIIH", response)
    assert (tag, size, rc, count) == (0x8001, 20, 0, 8)
    assert len(response) == 20


def rc_of(response: bytes) -> int:
    return int(struct.unpack_from(">I", response, 6)[0])


def exchange_within(transport: Transport, command: bytes, seconds: float) -> bytes:
    return transport.exchange(command, time.monotonic() + seconds)


def fails_within(transport: Transport, error: type[TransportError], seconds: float) -> str:
    """Exchange GetRandom expecting `error`; it must come by the deadline; its message."""
    start = time.monotonic()
    with pytest.raises(error) as raised:
        exchange_within(transport, GET_RANDOM_8, seconds)
    assert time.monotonic() - start < seconds + SLACK_S
    assert raised.value.hint
    return raised.value.message


def get_randoms(line: SerialTpm) -> list[bytes]:
    """The GetRandom commands that reached the TPM (not the transport's probes)."""
    return [c for c in line.commands if c == GET_RANDOM_8]


# pyserial 3.5's RFC 2217 client starts its reader thread with Thread.setDaemon and setName
RFC2217 = pytest.param(
    "rfc2217", marks=pytest.mark.filterwarnings("ignore:set(Daemon|Name).. is deprecated")
)


@pytest.fixture(params=["pty", "tcp", RFC2217])
def line(request: pytest.FixtureRequest, swtpm: Swtpm) -> Iterator[SerialTpm]:
    served = SerialTpm(swtpm, over=request.param)
    served.start()
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def transport(line: SerialTpm) -> Iterator[Transport]:
    opened = open_serial_frames(parse_device_url(line.url))
    try:
        yield opened
    finally:
        opened.close()


def test_get_random_over_a_pty_line(swtpm: Swtpm) -> None:
    line = SerialTpm(swtpm, over="pty")
    line.start()
    try:
        transport = open_serial_frames(parse_device_url(line.url))
        try:
            path = parse_device_url(line.url).path
            assert transport.where == f"the TPM behind {path} (115200 baud)"
            for _ in range(3):
                assert_random(exchange_within(transport, GET_RANDOM_8, LONG_S))
        finally:
            transport.close()
    finally:
        line.stop()
    # a line just opened is put in step once (the probe), then each command goes through once
    assert [c[:2] for c in line.commands] == [PROBE_TAG] + [GET_RANDOM_8[:2]] * 3


def test_get_random_straight_to_swtpms_port(swtpm: Swtpm) -> None:
    transport = open_serial_frames(parse_device_url(f"mssim+socket://{swtpm.host}:{swtpm.port}"))
    try:
        assert transport.where == f"the TPM behind {swtpm.host}:{swtpm.port} (TPM frames over TCP)"
        first = exchange_within(transport, GET_RANDOM_8, LONG_S)
        second = exchange_within(transport, GET_RANDOM_8, LONG_S)
    finally:
        transport.close()
    assert_random(first)
    assert_random(second)
    assert first[12:] != second[12:]


def test_garbage_before_the_response_is_a_protocol_error_then_the_line_recovers(
    line: SerialTpm, transport: Transport
) -> None:
    assert_random(exchange_within(transport, GET_RANDOM_8, LONG_S))
    line.garbage(b"\xffnoise")
    message = fails_within(transport, TransportProtocolError, LONG_S)
    assert "announced a response of" in message
    assert_random(exchange_within(transport, GET_RANDOM_8, LONG_S))
    assert len(get_randoms(line)) == 3


def test_lost_bytes_time_out_at_the_deadline_then_the_line_recovers(
    line: SerialTpm, transport: Transport
) -> None:
    assert_random(exchange_within(transport, GET_RANDOM_8, LONG_S))
    line.drop_bytes(3)
    message = fails_within(transport, TransportTimeout, SHORT_S)
    assert "sent 25 bytes of a response frame, then nothing more in time" in message
    assert_random(exchange_within(transport, GET_RANDOM_8, LONG_S))


def test_a_slow_answer_within_the_deadline_is_the_answer(
    line: SerialTpm, transport: Transport
) -> None:
    line.slow(0.2)
    assert_random(exchange_within(transport, GET_RANDOM_8, LONG_S))


def test_an_answer_later_than_the_deadline_is_a_timeout_and_is_not_taken_for_the_next(
    line: SerialTpm, transport: Transport
) -> None:
    assert_random(exchange_within(transport, GET_RANDOM_8, LONG_S))
    line.slow(0.7)
    message = fails_within(transport, TransportTimeout, SHORT_S)
    assert message.endswith("did not answer in time")
    # the late GetRandom answer is still on its way: the next command must get its own
    startup = exchange_within(transport, STARTUP_CLEAR, LONG_S)
    assert startup[:6] == bytes.fromhex("8001 0000000a")
    assert rc_of(startup) != 0  # TPM_RC_INITIALIZE's sibling: the TPM is started already
    assert len(get_randoms(line)) == 2


def test_a_command_without_answer_times_out_and_is_not_sent_again(
    line: SerialTpm, transport: Transport
) -> None:
    assert_random(exchange_within(transport, GET_RANDOM_8, LONG_S))
    line.silent()
    fails_within(transport, TransportTimeout, SHORT_S)
    assert_random(exchange_within(transport, GET_RANDOM_8, LONG_S))
    assert len(get_randoms(line)) == 3  # the silent one arrived once and was never resent


def test_a_trickled_answer_within_the_deadline_is_the_answer(
    line: SerialTpm, transport: Transport
) -> None:
    line.trickle(0.002)
    assert_random(exchange_within(transport, GET_RANDOM_8, LONG_S))


def test_a_trickling_sender_cannot_stretch_the_deadline(
    line: SerialTpm, transport: Transport
) -> None:
    assert_random(exchange_within(transport, GET_RANDOM_8, LONG_S))
    line.trickle(0.03)  # 28 bytes: 0.8 s, a byte every 30 ms to the end
    message = fails_within(transport, TransportTimeout, SHORT_S)
    assert "bytes of a response frame, then nothing more in time" in message
    assert_random(exchange_within(transport, GET_RANDOM_8, LONG_S))


def test_a_tpm_reset_mid_command_answers_initialize_and_startup_brings_it_back(
    fresh_swtpm: Swtpm,
) -> None:
    line = SerialTpm(fresh_swtpm, over="pty")
    line.start()
    transport = open_serial_frames(parse_device_url(line.url))
    try:
        assert_random(exchange_within(transport, GET_RANDOM_8, LONG_S))
        line.reset_mid_command()
        assert rc_of(exchange_within(transport, GET_RANDOM_8, LONG_S)) == TPM_RC_INITIALIZE
        assert rc_of(exchange_within(transport, STARTUP_CLEAR, LONG_S)) == 0
        assert_random(exchange_within(transport, GET_RANDOM_8, LONG_S))
    finally:
        transport.close()
        line.stop()


def test_a_restarted_simulator_is_reached_again_on_a_new_connection(fresh_swtpm: Swtpm) -> None:
    url = parse_device_url(f"mssim+socket://{fresh_swtpm.host}:{fresh_swtpm.port}")
    transport = open_serial_frames(url)
    try:
        assert_random(exchange_within(transport, GET_RANDOM_8, LONG_S))
        fresh_swtpm.restart()
        # the old connection is dead before anything of the command went out: sent on a new one
        assert_random(exchange_within(transport, GET_RANDOM_8, LONG_S))
    finally:
        transport.close()


def test_a_line_that_does_not_exist_cannot_be_opened(tmp_path) -> None:
    missing = tmp_path / "ttyUSB9"
    with pytest.raises(TransportError, match=f"the TPM behind {missing} .* cannot be opened"):
        open_serial_frames(parse_device_url(f"mssim+serial://{missing}"))


@pytest.mark.parametrize("scheme", ["mssim+socket", "mssim+rfc2217"])
def test_a_port_nobody_listens_on_cannot_be_opened(scheme: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with pytest.raises(
        TransportError, match=f"the TPM behind .*127.0.0.1:{port} .* cannot be opened"
    ):
        open_serial_frames(parse_device_url(f"{scheme}://127.0.0.1:{port}"))


def test_a_command_no_tpm_takes_is_refused_before_it_is_sent(swtpm: Swtpm) -> None:
    line = SerialTpm(swtpm, over="pty")
    line.start()
    transport = open_serial_frames(parse_device_url(line.url))
    try:
        for command in (GET_RANDOM_8[:9], GET_RANDOM_8 + bytes(4096)):
            with pytest.raises(TransportError, match=f"a command of {len(command)} bytes"):
                exchange_within(transport, command, LONG_S)
        assert_random(exchange_within(transport, GET_RANDOM_8, LONG_S))
    finally:
        transport.close()
        line.stop()
    assert get_randoms(line) == [GET_RANDOM_8]


def test_a_closed_transport_refuses_commands(line: SerialTpm, transport: Transport) -> None:
    transport.close()
    transport.close()
    with pytest.raises(TransportError, match="was closed"):
        exchange_within(transport, GET_RANDOM_8, LONG_S)
