"""The TPM simulator framing: commands encoded as the protocol has them, responses decoded from any
chunking, and every frame no TPM can send refused as the peer's fault at its first bad byte."""

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.transports.errors import TransportProtocolError
from firmware.transports.mssim_frames import (
    MAX_RESPONSE,
    PROBE,
    SESSION_END,
    ProbeScanner,
    ResponseDecoder,
    encode_command,
)

GET_RANDOM_8 = bytes.fromhex("8001 0000000c 0000017b 0008")
PROBE_ANSWER = bytes.fromhex("0000000a 8001 0000000a 0000001e 00000000")


def tpm_response(parameters: bytes, tag: int = 0x8001, rc: int = 0) -> bytes:
    return struct.pack(">HII", tag, 10 + len(parameters), rc) + parameters


def response_frame(response: bytes) -> bytes:
    return struct.pack(">I", len(response)) + response + b"\0\0\0\0"


responses = st.builds(
    tpm_response,
    st.binary(max_size=200),
    st.sampled_from([0x8001, 0x8002, 0x00C4]),
    st.integers(0, 2**32 - 1),
)


def feed_in_chunks(stream: bytes, cuts: list[int]) -> list[bytes]:
    """Decode `stream` cut at `cuts`: one decoder per frame, the next one starts on its surplus."""
    decoded = []
    decoder = ResponseDecoder()
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        pending = stream[start:cut]
        start = cut
        while pending:
            response = decoder.feed(pending)
            if response is None:
                break
            decoded.append(response)
            pending, decoder = decoder.surplus, ResponseDecoder()
    return decoded


def test_a_command_frame_is_code_8_locality_length_command():
    assert encode_command(GET_RANDOM_8) == bytes.fromhex("00000008 00 0000000c") + GET_RANDOM_8
    assert encode_command(GET_RANDOM_8, locality=3)[4] == 3


def test_session_end_is_code_20():
    assert bytes.fromhex("00000014") == SESSION_END


def test_a_response_is_handed_back_only_after_its_trailer():
    response = tpm_response(b"\x00\x08" + bytes(8))
    frame = response_frame(response)
    decoder = ResponseDecoder()
    assert decoder.wanted == 4
    assert decoder.feed(frame[:-1]) is None
    assert (decoder.received, decoder.wanted) == (len(frame) - 1, 1)
    assert decoder.feed(frame[-1:]) == response
    assert decoder.wanted == 0


def test_bytes_after_the_frame_are_surplus_not_decoded():
    frame = response_frame(tpm_response(b""))
    decoder = ResponseDecoder()
    assert decoder.feed(frame + b"\xff\xff") == tpm_response(b"")
    assert decoder.feed(b"more") is None
    assert decoder.surplus == b"\xff\xffmore"


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (struct.pack(">I", MAX_RESPONSE + 1), "announced a response of 4097 bytes"),
        (b"\xde\xad\xbe\xef", "announced a response of 3735928559 bytes"),
        (struct.pack(">I", 9), "announced a response of 9 bytes"),
        (struct.pack(">I", 0), "announced a response of 0 bytes"),
        (struct.pack(">I", 12) + b"\x12\x34", "tag 0x1234"),
        (struct.pack(">I", 12) + tpm_response(b"\0\0\0")[:6], "whose header says 13"),
        (response_frame(tpm_response(b""))[:-4] + b"\0\0\x01", "ended a response frame with 0000"),
    ],
)
def test_a_frame_no_tpm_sends_is_refused_at_its_first_bad_byte(wire, message):
    decoder = ResponseDecoder("the TPM behind /dev/ttyUSB0 (115200 baud)")
    with pytest.raises(TransportProtocolError, match=message) as raised:
        decoder.feed(wire)
    assert raised.value.message.startswith("the TPM behind /dev/ttyUSB0 (115200 baud) ")
    assert raised.value.hint


def test_the_length_bound_is_the_decoders():
    frame = response_frame(tpm_response(bytes(100)))
    with pytest.raises(TransportProtocolError, match="10 to 64"):
        ResponseDecoder(max_response=64).feed(frame)
    assert ResponseDecoder(max_response=110).feed(frame) == tpm_response(bytes(100))


@settings(max_examples=300, deadline=None)
@given(st.lists(responses, min_size=1, max_size=4), st.data())
def test_any_chunking_of_a_valid_stream_decodes_the_same(frames, data):
    stream = b"".join(response_frame(r) for r in frames)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    assert feed_in_chunks(stream, cuts) == frames


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.data())
def test_garbage_only_ever_raises_the_protocol_error(wire, data):
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=6))
    with contextlib.suppress(TransportProtocolError):
        feed_in_chunks(wire, cuts)


@settings(max_examples=200, deadline=None)
@given(responses, st.integers(1, 3))
def test_a_stream_that_lost_bytes_of_its_length_never_decodes_the_response(response, lost):
    frame = response_frame(response)
    decoder = ResponseDecoder()
    with contextlib.suppress(TransportProtocolError):
        assert decoder.feed(frame[lost:]) != response


def test_the_probe_is_a_command_with_the_tag_tpm_st_null():
    frame_header, tpm_command = PROBE[:9], PROBE[9:]
    assert frame_header == bytes.fromhex("00000008 00 0000000a")
    assert tpm_command[:2] == b"\x80\x00"  # TPM_ST_NULL: refused before the rest is looked at


@pytest.mark.parametrize(
    "answer",
    [
        PROBE_ANSWER,
        bytes.fromhex("0000000a 00c4 0000000a 0000001e 00000000"),
        bytes.fromhex("0000000a 8001 0000000a 00000101 00000000"),
    ],
)
def test_the_scanner_finds_the_probes_answer_behind_stale_bytes(answer):
    stale = response_frame(tpm_response(bytes(20))) + b"\x00\x17garbage"
    scanner = ProbeScanner()
    stream = stale + answer
    assert not any(scanner.feed(stream[i : i + 1]) for i in range(len(stream) - 1))
    assert scanner.feed(stream[-1:])


def test_the_scanner_ignores_other_ten_byte_answers():
    initialize = bytes.fromhex("0000000a 8001 0000000a 00000100 00000000")
    assert not ProbeScanner().feed(initialize * 3)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100), st.binary(max_size=40), st.data())
def test_the_scanner_finds_the_answer_in_any_chunking(before, after, data):
    stream = before + PROBE_ANSWER + after
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    scanner = ProbeScanner()
    seen = []
    start = 0
    for cut in [*cuts, len(stream)]:
        seen.append(scanner.feed(stream[start:cut]))
        start = cut
    assert seen[-1]
