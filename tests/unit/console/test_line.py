"""The console line discipline: editing keys, line endings, escape sequences, bounds and noise."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.console.line import (
    MAX_ESCAPE,
    Echo,
    Interrupt,
    LineDiscipline,
    LineEntered,
    LineRefused,
)


def lines(events):
    return [e for e in events if not isinstance(e, Echo)]


def echo(events) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Echo))


def test_printable_input_is_echoed_and_cr_ends_the_line():
    events = LineDiscipline().feed(b"status\r")
    assert lines(events) == [LineEntered("status")]
    assert echo(events) == b"status\r\n"


def test_echo_of_the_line_end_comes_before_the_line_event():
    events = LineDiscipline().feed(b"help\r")
    assert isinstance(events[-1], LineEntered)
    assert echo(events[:-1]).endswith(b"\r\n")


def test_lf_and_crlf_end_a_line_once():
    discipline = LineDiscipline()
    assert lines(discipline.feed(b"a\r\nb\nc\r")) == [
        LineEntered("a"),
        LineEntered("b"),
        LineEntered("c"),
    ]
    assert lines(discipline.feed(b"\n")) == []  # the LF of a CRLF split across reads
    assert lines(discipline.feed(b"\n")) == [LineEntered("")]


def test_empty_line_is_entered_empty():
    assert lines(LineDiscipline().feed(b"\r")) == [LineEntered("")]


def test_backspace_and_del_erase_one_character():
    discipline = LineDiscipline()
    events = discipline.feed(b"verx\x08sion\rstatuz\x7fs\r")
    assert lines(events) == [LineEntered("version"), LineEntered("status")]
    assert b"x\b \bs" in echo(events)


def test_backspace_on_an_empty_line_does_nothing():
    events = LineDiscipline().feed(b"\x08\x7fhelp\r")
    assert lines(events) == [LineEntered("help")]
    assert echo(events) == b"help\r\n"


def test_backspace_erases_a_whole_multibyte_character():
    events = LineDiscipline().feed("ab\u00e9\u20ac".encode() + b"\x7f\x7fc\r")
    assert lines(events) == [LineEntered("abc")]


def test_ctrl_c_abandons_the_line_and_prints_caret_c():
    discipline = LineDiscipline()
    events = discipline.feed(b"reboot now\x03")
    assert lines(events) == [Interrupt()]
    assert echo(events).endswith(b"^C\r\n")
    assert discipline.pending == ""
    assert lines(discipline.feed(b"help\r")) == [LineEntered("help")]


def test_ctrl_u_kills_the_line_and_erases_it_on_screen():
    discipline = LineDiscipline()
    events = discipline.feed(b"abc\x15help\r")
    assert lines(events) == [LineEntered("help")]
    assert echo(events) == b"abc" + b"\b \b" * 3 + b"help\r\n"


def test_arrow_and_function_keys_are_swallowed():
    discipline = LineDiscipline()
    keys = b"\x1b[A\x1b[B\x1b[1;5C\x1bOP\x1b[15~"
    events = discipline.feed(b"he" + keys + b"lp\r")
    assert lines(events) == [LineEntered("help")]
    assert echo(events) == b"help\r\n"


def test_escape_sequence_split_across_reads_is_swallowed():
    discipline = LineDiscipline()
    events = discipline.feed(b"ver\x1b") + discipline.feed(b"[") + discipline.feed(b"Dsion\r")
    assert lines(events) == [LineEntered("version")]


def test_ctrl_c_inside_an_escape_sequence_still_interrupts():
    assert lines(LineDiscipline().feed(b"\x1b[12\x03")) == [Interrupt()]


def test_overlong_escape_sequence_is_bounded_and_refused():
    discipline = LineDiscipline()
    events = discipline.feed(b"\x1b[" + b"1" * (MAX_ESCAPE * 4) + b"\r")
    assert lines(events) == [LineRefused(lines(events)[0].reason)]
    assert lines(discipline.feed(b"help\r")) == [LineEntered("help")]


def test_line_over_the_bound_is_refused_at_enter():
    discipline = LineDiscipline(max_line=16)
    events = discipline.feed(b"x" * 100 + b"\r")
    [refused] = lines(events)
    assert isinstance(refused, LineRefused)
    assert "16 bytes" in refused.reason
    assert echo(events) == b"x" * 16 + b"\r\n"
    assert lines(discipline.feed(b"help\r")) == [LineEntered("help")]


def test_line_of_exactly_the_bound_is_accepted():
    assert lines(LineDiscipline(max_line=8).feed(b"12345678\r")) == [LineEntered("12345678")]


def test_invalid_utf8_makes_the_line_noise():
    discipline = LineDiscipline()
    [refused] = lines(discipline.feed(b"hel\xfflp\r"))
    assert isinstance(refused, LineRefused)
    assert lines(discipline.feed(b"help\r")) == [LineEntered("help")]


def test_truncated_utf8_at_enter_is_noise():
    [refused] = lines(LineDiscipline().feed(b"help\xe2\x82\r"))
    assert isinstance(refused, LineRefused)


def test_valid_utf8_text_is_accepted():
    assert lines(LineDiscipline().feed("echo gr\u00fc\u00df \u20ac\r".encode())) == [
        LineEntered("echo gr\u00fc\u00df \u20ac")
    ]


def test_nul_of_a_break_before_typing_is_ignored():
    assert lines(LineDiscipline().feed(b"\x00\x00help\r")) == [LineEntered("help")]


def test_nul_of_a_break_inside_a_line_refuses_it():
    [refused] = lines(LineDiscipline().feed(b"hel\x00p\r"))
    assert isinstance(refused, LineRefused)


def test_stray_control_bytes_refuse_the_line():
    [refused] = lines(LineDiscipline().feed(b"help\x02\r"))
    assert isinstance(refused, LineRefused)


def test_tab_is_ignored():
    assert lines(LineDiscipline().feed(b"he\tlp\r")) == [LineEntered("help")]


def test_c1_control_characters_are_noise_not_echoed():
    events = LineDiscipline().feed("a\u009bb\r".encode())
    assert isinstance(lines(events)[0], LineRefused)
    assert "\u009b".encode() not in echo(events)


def test_pending_is_the_text_typed_so_far():
    discipline = LineDiscipline()
    discipline.feed("st\u00e4".encode())
    assert discipline.pending == "st\u00e4"


@settings(max_examples=400)
@given(st.lists(st.binary(max_size=700), max_size=8))
def test_any_bytes_never_raise_and_stay_bounded(chunks):
    discipline = LineDiscipline(max_line=64)
    for chunk in chunks:
        for event in discipline.feed(chunk):
            assert isinstance(event, Echo | LineEntered | LineRefused | Interrupt)
            if isinstance(event, LineEntered):
                assert len(event.text.encode()) <= 64
                assert event.text.isprintable()
        assert len(discipline.pending.encode()) <= 64
        assert len(discipline._partial) < 4
        assert discipline._escape_len <= MAX_ESCAPE + 1


@given(st.binary(max_size=400))
def test_after_any_noise_ctrl_c_brings_back_a_clean_line(noise):
    discipline = LineDiscipline()
    discipline.feed(noise)
    events = discipline.feed(b"\x03version\r")
    assert lines(events)[-1] == LineEntered("version")


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200))
def test_printable_ascii_round_trips(text):
    events = LineDiscipline().feed(text.encode() + b"\r")
    assert lines(events) == [LineEntered(text)]
    assert echo(events) == text.encode() + b"\r\n"


def test_next_event_stops_at_each_line_so_echo_can_change_between_lines():
    discipline = LineDiscipline()
    discipline.receive(b"login\rsecret\x7ft\rafter")
    assert discipline.next_event() == Echo(b"login\r\n")
    assert discipline.next_event() == LineEntered("login")
    discipline.hidden = True
    assert discipline.next_event() == Echo(b"\r\n")
    assert discipline.next_event() == LineEntered("secret")
    discipline.hidden = False
    assert discipline.next_event() == Echo(b"after")
    assert discipline.next_event() is None
    assert discipline.pending == "after"


def test_hidden_input_echoes_only_the_line_end_and_ctrl_c():
    discipline = LineDiscipline()
    discipline.hidden = True
    events = discipline.feed(b"hunter2\x7f\x08xy\x15pass word\r")
    assert lines(events) == [LineEntered("pass word")]
    assert echo(events) == b"\r\n"
    events = discipline.feed(b"half a secret\x03")
    assert lines(events) == [Interrupt()]
    assert echo(events) == b"^C\r\n"


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_hidden_input_never_echoes_what_is_typed(typed, more):
    discipline = LineDiscipline()
    discipline.hidden = True
    shown = echo(discipline.feed(typed) + discipline.feed(more))
    assert shown.replace(b"\r\n", b"").replace(b"^C", b"") == b""
