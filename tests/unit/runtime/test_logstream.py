"""The Docker log-stream demuxer over arbitrary chunking and bad frames."""

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.runtime.logstream import LogDemuxer, LogFrame, LogStreamError, Stream, frame


def test_frames_split_across_chunks_are_reassembled():
    wire = frame(Stream.STDOUT, b"hello\n") + frame(Stream.STDERR, b"oops\n")
    demuxer = LogDemuxer()
    got = []
    for i in range(len(wire)):
        got += demuxer.feed(wire[i : i + 1])
    assert got == [LogFrame(Stream.STDOUT, b"hello\n"), LogFrame(Stream.STDERR, b"oops\n")]
    assert demuxer.pending == 0


def test_partial_frame_is_held_back():
    demuxer = LogDemuxer()
    assert demuxer.feed(frame(Stream.STDOUT, b"abcdef")[:-2]) == []
    assert demuxer.pending == 12
    assert demuxer.feed(b"ef") == [LogFrame(Stream.STDOUT, b"abcdef")]


def test_unknown_stream_byte_is_a_peer_error():
    with pytest.raises(LogStreamError, match="unknown stream 7"):
        LogDemuxer().feed(b"\x07\x00\x00\x00\x00\x00\x00\x01x")


def test_oversize_frame_is_refused_before_buffering_it():
    with pytest.raises(LogStreamError, match="over"):
        LogDemuxer().feed(b"\x01\x00\x00\x00\xff\xff\xff\xff")


@given(st.lists(st.tuples(st.sampled_from(list(Stream)), st.binary(max_size=64))), st.data())
def test_any_chunking_gives_back_the_frames(frames, data):
    wire = b"".join(frame(s, d) for s, d in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    demuxer = LogDemuxer()
    got = []
    start = 0
    for cut in [*cuts, len(wire)]:
        got += demuxer.feed(wire[start:cut])
        start = cut
    assert got == [LogFrame(s, d) for s, d in frames]


@given(st.binary(max_size=200))
def test_garbage_only_raises_the_peer_error(wire):
    with contextlib.suppress(LogStreamError):
        LogDemuxer().feed(wire)
