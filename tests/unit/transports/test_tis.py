"""The TIS FIFO state machine against scripted register values: no bus, a fake clock.

Proves the order of the register operations (locality, commandReady, bursts, the last byte
alone, tpmGo, dataAvail, the response in bursts, commandReady and the locality given back), the
checks (Expect, left-over data, response size), the checksum retries, and that every wait is
bounded by its PTP timeout and the caller's deadline, polling 1 ms growing to 8 ms.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.transports.errors import TransportError, TransportProtocolError, TransportTimeout
from firmware.transports.tis import (
    ACCESS_ACTIVE_LOCALITY,
    ACCESS_REQUEST_USE,
    STS_COMMAND_READY,
    STS_GO,
    STS_RESPONSE_RETRY,
    STS_VALID,
    Pause,
    Read,
    Register,
    TisTimeouts,
    TisTransport,
    Verify,
    Write,
    exchange_steps,
)
from tests.unit.transports.tis_fakes import FakeTis, echo_response, tpm_command

FAR = 1e9


def transport(tpm: FakeTis, timeouts: TisTimeouts | None = None) -> TisTransport:
    timeouts = timeouts or TisTimeouts()
    return TisTransport(tpm, timeouts=timeouts, sleep=tpm.clock.sleep, clock=tpm.clock)


def test_a_command_goes_through_the_fifo_in_order() -> None:
    tpm = FakeTis(burst=16)
    command = tpm_command(bytes(range(39)))
    response = transport(tpm).exchange(command, FAR)
    assert response == echo_response(command)
    assert tpm.commands == [command]
    # the locality asked for, granted; commandReady; then FIFO writes, tpmGo; at the end
    # commandReady (idle) and the locality given back
    assert tpm.writes_to(Register.ACCESS) == [
        bytes([ACCESS_REQUEST_USE]),
        bytes([ACCESS_ACTIVE_LOCALITY]),
    ]
    assert tpm.writes_to(Register.STS) == [
        bytes([STS_COMMAND_READY]),
        bytes([STS_GO]),
        bytes([STS_COMMAND_READY]),
    ]
    writes = tpm.fifo_writes()
    assert b"".join(writes) == command
    assert [len(w) for w in writes] == [16, 16, 16, 1]  # 49 bytes: bursts, the last byte alone
    assert not tpm.locality_active
    assert tpm.state == "ready"


def test_the_last_byte_goes_alone_even_when_it_fits_a_burst() -> None:
    tpm = FakeTis(burst=64)
    command = tpm_command(b"ab")
    transport(tpm).exchange(command, FAR)
    assert [len(w) for w in tpm.fifo_writes()] == [11, 1]


def test_bursts_are_cut_to_the_bus_maximum() -> None:
    tpm = FakeTis(burst=200, max_burst=64)
    command = tpm_command(bytes(300))
    response = transport(tpm).exchange(command, FAR)
    assert [len(w) for w in tpm.fifo_writes()] == [64] * 4 + [53, 1]
    assert response == echo_response(command)
    # the response: the header's first 6 bytes for the size, then bursts of at most 64
    assert tpm.fifo_reads() == [6, 64, 64, 64, 64, 48]


def test_the_response_is_read_in_burst_count_pieces() -> None:
    tpm = FakeTis(burst=7)
    command = tpm_command(bytes(20))
    assert transport(tpm).exchange(command, FAR) == echo_response(command)
    assert tpm.fifo_reads() == [6, 7, 7, 7, 3]


def test_a_locality_already_held_is_not_requested_again() -> None:
    tpm = FakeTis(locality_active=True)
    transport(tpm).exchange(tpm_command(), FAR)
    assert tpm.writes_to(Register.ACCESS) == [bytes([ACCESS_ACTIVE_LOCALITY])]


def test_a_locality_never_granted_times_out_after_timeout_a() -> None:
    tpm = FakeTis(grant_locality=False)
    start = tpm.clock.now
    with pytest.raises(TransportTimeout) as caught:
        transport(tpm).exchange(tpm_command(), FAR)
    message = caught.value.message
    assert "the fake TIS TPM" in message and "locality" in message and "TIMEOUT_A" in message
    assert 0.75 <= tpm.clock.now - start < 0.77
    assert tpm.fifo_writes() == []


def test_commandready_never_shown_times_out_after_timeout_b() -> None:
    tpm = FakeTis(grant_ready=False)
    start = tpm.clock.now
    with pytest.raises(TransportTimeout, match=r"commandReady.*TIMEOUT_B"):
        transport(tpm).exchange(tpm_command(), FAR)
    assert 2.0 <= tpm.clock.now - start < 2.02


def test_commandready_shown_late_is_waited_for() -> None:
    tpm = FakeTis(ready_after_reads=3)
    command = tpm_command(b"x")
    assert transport(tpm).exchange(command, FAR) == echo_response(command)


def test_a_busy_tpm_burst_count_zero_is_polled_without_busy_waiting() -> None:
    tpm = FakeTis(locality_active=True, zero_burst_reads=8)  # the first read is before the wait
    command = tpm_command(b"abc")
    assert transport(tpm).exchange(command, FAR) == echo_response(command)
    # 1 ms doubling to 8 ms, never a pause of 0 (FakeClock refuses it)
    assert tpm.clock.sleeps[:6] == [0.001, 0.002, 0.004, 0.008, 0.008, 0.008]


def test_burst_count_stuck_at_zero_is_bounded_by_the_callers_deadline() -> None:
    tpm = FakeTis(zero_burst_reads=10**9)
    deadline = tpm.clock.now + 0.1
    with pytest.raises(TransportTimeout) as caught:
        transport(tpm).exchange(tpm_command(), deadline)
    assert "burstCount" in caught.value.message and "deadline" in caught.value.message
    assert deadline <= tpm.clock.now < deadline + 0.001
    assert max(tpm.clock.sleeps) <= 0.008


def test_burst_count_stuck_at_zero_is_bounded_by_timeout_a() -> None:
    tpm = FakeTis(zero_burst_reads=10**9)
    with pytest.raises(TransportTimeout, match="burstCount within TIMEOUT_A"):
        transport(tpm).exchange(tpm_command(), FAR)


def test_expect_cleared_before_the_end_is_a_protocol_error() -> None:
    tpm = FakeTis(burst=8, drop_expect_after=8)
    with pytest.raises(
        TransportProtocolError, match="stopped expecting command bytes after 8 of 20"
    ):
        transport(tpm).exchange(tpm_command(bytes(10)), FAR)
    assert tpm.writes_to(Register.STS) == [bytes([STS_COMMAND_READY])]  # no tpmGo


def test_expect_still_set_after_the_last_byte_is_a_protocol_error() -> None:
    class Hungry(FakeTis):
        def _expects_more(self) -> bool:
            return True

    tpm = Hungry()
    with pytest.raises(TransportProtocolError, match="still expects command bytes after all 14"):
        transport(tpm).exchange(tpm_command(bytes(4)), FAR)
    assert tpm.commands == []


def test_a_command_whose_header_disagrees_with_its_length_is_refused() -> None:
    command = tpm_command(bytes(4))
    lying = command[:2] + (len(command) + 5).to_bytes(4, "big") + command[6:]
    tpm = FakeTis()
    with pytest.raises(TransportError, match="says in its header it has 19"):
        transport(tpm).exchange(lying, FAR)
    assert tpm.log == []


def test_a_slow_tpm_is_awaited_and_one_past_the_deadline_times_out() -> None:
    tpm = FakeTis(exec_reads=30)
    command = tpm_command(b"k")
    assert transport(tpm).exchange(command, FAR) == echo_response(command)

    slow = FakeTis(exec_reads=10**9)
    deadline = slow.clock.now + 1.5
    with pytest.raises(TransportTimeout) as caught:
        transport(slow).exchange(command, deadline)
    assert "dataAvail" in caught.value.message and "deadline" in caught.value.message
    assert deadline <= slow.clock.now < deadline + 0.001


def test_the_command_duration_bounds_the_wait_for_the_response() -> None:
    slow = FakeTis(exec_reads=10**9)
    with pytest.raises(TransportTimeout, match=r"dataAvail.*longest command duration"):
        transport(slow, TisTimeouts(command=0.05)).exchange(tpm_command(), FAR)


def test_a_bad_command_checksum_resends_the_command() -> None:
    tpm = FakeTis(bad_command_checksums=2)
    command = tpm_command(b"hello")
    assert transport(tpm).exchange(command, FAR) == echo_response(command)
    assert b"".join(tpm.fifo_writes()) == command * 3
    assert tpm.commands == [command]  # tpmGo only once


def test_a_command_checksum_that_never_matches_is_a_protocol_error() -> None:
    tpm = FakeTis(bad_command_checksums=10)
    with pytest.raises(TransportProtocolError, match="checksum of the command disagreed 3 times"):
        transport(tpm).exchange(tpm_command(), FAR)
    assert tpm.commands == []


def test_a_bad_response_checksum_asks_for_the_response_again() -> None:
    tpm = FakeTis(bad_response_checksums=2, burst=64)
    command = tpm_command(b"abcdef")
    assert transport(tpm).exchange(command, FAR) == echo_response(command)
    assert tpm.writes_to(Register.STS).count(bytes([STS_RESPONSE_RETRY])) == 2
    assert tpm.fifo_reads() == [6, 10] * 3


def test_a_response_checksum_that_never_matches_is_bounded() -> None:
    tpm = FakeTis(bad_response_checksums=10)
    with pytest.raises(TransportProtocolError, match="checksum of the response disagreed 3 times"):
        transport(tpm).exchange(tpm_command(), FAR)
    assert tpm.writes_to(Register.STS).count(bytes([STS_RESPONSE_RETRY])) == 2


def test_left_over_response_bytes_are_a_protocol_error() -> None:
    tpm = FakeTis(extra_response_bytes=3)
    with pytest.raises(TransportProtocolError, match="more response bytes than the 10"):
        transport(tpm).exchange(tpm_command(), FAR)


@pytest.mark.parametrize("size", [0, 9, 4097, 0xFFFFFFFF])
def test_a_response_header_with_an_impossible_size_is_a_protocol_error(size: int) -> None:
    tpm = FakeTis()
    tpm.respond = lambda command: b"\x80\x01" + size.to_bytes(4, "big") + bytes(20)
    with pytest.raises(TransportProtocolError, match=f"giving {size} bytes"):
        transport(tpm).exchange(tpm_command(), FAR)


@pytest.mark.parametrize("size", [0, 9, 4097])
def test_command_sizes_are_bounded(size: int) -> None:
    command = b"\x80\x01" + size.to_bytes(4, "big") + bytes(max(size - 6, 0))
    tpm = FakeTis()
    with pytest.raises(TransportError, match="cannot be sent"):
        transport(tpm).exchange(command[:size] if size < 6 else command, FAR)
    assert tpm.log == []


def test_the_largest_command_goes_through() -> None:
    tpm = FakeTis(burst=64)
    command = tpm_command(bytes(4086))
    assert transport(tpm).exchange(command, FAR) == echo_response(command)


def test_the_machine_yields_register_steps_and_never_touches_a_bus() -> None:
    """Driven by hand: the exact steps for a 10-byte command, results scripted."""
    command = tpm_command()
    response = bytes.fromhex("8001 0000000a 00000000")
    steps = exchange_steps(command, where="dev", max_burst=64, deadline=FAR, clock=lambda: 0.0)
    sts_ready = bytes([STS_VALID | STS_COMMAND_READY, 64, 0, 0])
    sts_expect = bytes([STS_VALID | 0x08, 64, 0, 0])
    sts_done = bytes([STS_VALID, 64, 0, 0])
    sts_avail = bytes([STS_VALID | 0x10, 64, 0, 0])
    script: list[tuple[object, object]] = [
        (Read(Register.ACCESS, 1), b"\xa0"),  # valid + active: no request
        (Read(Register.STS, 4), sts_ready),
        (Write(Register.DATA_FIFO, command[:9]), None),
        (Read(Register.STS, 4), sts_expect),
        (Write(Register.DATA_FIFO, command[9:]), None),
        (Read(Register.STS, 4), sts_done),
        (Verify(command), True),
        (Write(Register.STS, bytes([STS_GO])), None),
        (Read(Register.STS, 4), bytes([STS_VALID, 0, 0, 0])),  # executing
        (Pause(0.001), None),
        (Read(Register.STS, 4), sts_avail),
        (Read(Register.DATA_FIFO, 6), response[:6]),
        (Read(Register.STS, 4), sts_avail),
        (Read(Register.DATA_FIFO, 4), response[6:]),
        (Read(Register.STS, 4), sts_done),
        (Verify(response), True),
        (Write(Register.STS, bytes([STS_COMMAND_READY])), None),
        (Write(Register.ACCESS, bytes([ACCESS_ACTIVE_LOCALITY])), None),
    ]
    result: object = None
    for expected, answer in script:
        assert steps.send(result) == expected  # type: ignore[arg-type]
        result = answer
    with pytest.raises(StopIteration) as done:
        steps.send(result)  # type: ignore[arg-type]
    assert done.value.value == response


def test_bus_errors_propagate_and_close_reaches_the_port() -> None:
    class Broken(FakeTis):
        def read(self, register: Register, size: int, deadline: float) -> bytes:
            raise TransportError("bus gone")

    tpm = Broken()
    link = transport(tpm)
    with pytest.raises(TransportError, match="bus gone"):
        link.exchange(tpm_command(), FAR)
    assert link.where == "the fake TIS TPM"
    link.close()
    assert tpm.closed


def test_identify_reads_did_vid_and_rid() -> None:
    tpm = FakeTis()
    identity = transport(tpm).identify(FAR)
    assert (identity.vendor_id, identity.device_id, identity.revision) == (0x15D1, 0x001B, 0x16)
    assert "vendor 0x15d1" in str(identity)


@pytest.mark.parametrize("did_vid", [b"\0\0\0\0", b"\xff\xff\xff\xff"])
def test_identify_refuses_an_absent_tpm(did_vid: bytes) -> None:
    tpm = FakeTis(did_vid=did_vid)
    with pytest.raises(TransportError, match="no TPM answers as the fake TIS TPM"):
        transport(tpm).identify(FAR)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_register_values_give_a_response_or_a_transport_error(data: st.DataObject) -> None:
    """The receive path fuzzed: whatever the TPM answers, the machine ends, within its deadline,
    with a response of the size its header gives or with a timeout or protocol error."""
    now = [0.0]
    command = tpm_command(b"fuzz")
    steps = exchange_steps(command, where="dev", max_burst=64, deadline=0.05, clock=lambda: now[0])
    result: bytes | bool | None = None
    try:
        while True:
            step = steps.send(result)
            now[0] += 0.0001
            if isinstance(step, Read):
                result = data.draw(st.binary(min_size=step.size, max_size=step.size))
            elif isinstance(step, Verify):
                result = data.draw(st.booleans())
            elif isinstance(step, Pause):
                assert 0 < step.seconds <= 0.008
                now[0] += step.seconds
                result = None
            else:
                result = None
    except StopIteration as done:
        response = done.value
        assert int.from_bytes(response[2:6], "big") == len(response)
    except (TransportTimeout, TransportProtocolError):
        pass
    assert now[0] < 0.05 + 0.01
