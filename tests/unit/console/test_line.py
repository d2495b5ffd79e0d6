"""The console line discipline: editing keys, line endings, escape sequences, bounds and noise."""

from __future__ import annotations

import itertools
from typing import get_args

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.console.history import History
from firmware.console.line import (
    BELL,
    MAX_ESCAPE,
    ClearScreen,
    CompletionWanted,
    CursorReport,
    Echo,
    Event,
    Interrupt,
    LineDiscipline,
    LineEntered,
    LineRefused,
    ShowCandidates,
)

from .terminal import Screen

EVENTS = get_args(Event)


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
    assert lines(events) == [Interrupt(abandoned=True)]
    assert echo(events).endswith(b"^C\r\n")
    assert discipline.pending == ""
    assert lines(discipline.feed(b"help\r")) == [LineEntered("help")]


def test_ctrl_u_kills_the_line_and_erases_it_on_screen():
    discipline = LineDiscipline()
    events = discipline.feed(b"abc\x15help\r")
    assert lines(events) == [LineEntered("help")]
    screen = Screen()
    screen.write(echo(events))
    assert screen.lines == ["help"]


def test_arrow_and_function_keys_are_swallowed():
    discipline = LineDiscipline()
    keys = b"\x1b[A\x1b[B\x1b[1;5C\x1bOP\x1b[15~"
    events = discipline.feed(b"he" + keys + b"lp\r")
    assert lines(events) == [LineEntered("help")]
    assert echo(events) == b"help\r\n"


def test_escape_sequence_split_across_reads_is_swallowed():
    discipline = LineDiscipline()
    events = discipline.feed(b"ver\x1b") + discipline.feed(b"[1") + discipline.feed(b"5~sion\r")
    assert lines(events) == [LineEntered("version")]


def test_ctrl_c_inside_an_escape_sequence_still_interrupts():
    assert lines(LineDiscipline().feed(b"\x1b[12\x03")) == [Interrupt(abandoned=False)]


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
            assert isinstance(event, EVENTS)
            if isinstance(event, LineEntered):
                assert len(event.text.encode()) <= 64
                assert event.text.isprintable()
        assert len(discipline.pending.encode()) <= 64
        assert 0 <= discipline.cursor <= len(discipline.pending)
        assert len(discipline._partial) < 4
        assert len(discipline._sequence) <= MAX_ESCAPE


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
    assert lines(events) == [Interrupt(abandoned=True)]
    assert echo(events) == b"^C\r\n"


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_hidden_input_never_echoes_what_is_typed(typed, more):
    discipline = LineDiscipline()
    discipline.hidden = True
    shown = echo(discipline.feed(typed) + discipline.feed(more))
    assert shown.replace(b"\r\n", b"").replace(b"^C", b"") == b""


# --- editing, history, completion, cursor reports ------------------------------------------------

LEFT, RIGHT, UP, DOWN = b"\x1b[D", b"\x1b[C", b"\x1b[A", b"\x1b[B"
HOME, END, DELETE = b"\x1b[H", b"\x1b[F", b"\x1b[3~"
CTRL_A, CTRL_E, CTRL_K, CTRL_L = b"\x01", b"\x05", b"\x0b", b"\x0c"
CTRL_U, CTRL_W = b"\x15", b"\x17"
# fmt: off
KEYS = (
    LEFT, RIGHT, UP, DOWN, HOME, END, DELETE, CTRL_A, CTRL_E, CTRL_K, CTRL_L, CTRL_U, CTRL_W,
    b"\x7f", b"\x08", b"\t", b"\r", b"\x03", b"\x1bOA", b"\x1bOD", b"\x1b[1~", b"\x1b[4~",
    b"\x1b[1;5C", b"\x1b[1;5D", b"\x1bb", b"\x1bf", b"\x1b[24;80R", b"\x1b[15~", b"\x1b",
)
# fmt: on


def typed(keys: bytes, discipline: LineDiscipline | None = None) -> tuple[LineDiscipline, Screen]:
    """Feed `keys`, render the echo on a screen model, check the screen shows the buffer."""
    discipline = discipline or LineDiscipline()
    screen = Screen()
    screen.write(discipline.redraw())
    for event in discipline.feed(keys):
        if isinstance(event, Echo):
            screen.write(event.data)
    assert screen.shows(discipline.pending, discipline.cursor), (screen.text, discipline.pending)
    return discipline, screen


def test_left_arrow_then_typing_inserts_in_the_middle_and_redraws_the_rest():
    discipline, _ = typed(b"stts" + LEFT * 2 + b"a")
    assert discipline.pending == "status"[:2] + "a" + "ts"
    assert discipline.cursor == 3
    events = discipline.feed(b"\r")
    assert lines(events) == [LineEntered("stats")]


def test_insertion_echo_writes_the_rest_and_moves_back():
    discipline = LineDiscipline()
    discipline.feed(b"abd" + LEFT)
    assert echo(discipline.feed(b"c")) == b"cd\b"


def test_home_end_and_their_other_spellings():
    for home in (HOME, b"\x1b[1~", b"\x1b[7~", b"\x1bOH", CTRL_A):
        for end in (END, b"\x1b[4~", b"\x1b[8~", b"\x1bOF", CTRL_E):
            discipline, _ = typed(b"tus" + home + b"sta" + end + b"!")
            assert discipline.pending == "status!"


def test_ss3_arrows_move_like_csi_arrows():
    discipline, _ = typed(b"ac\x1bODb\x1bOCd")
    assert discipline.pending == "abcd"


def test_backspace_in_the_middle_closes_the_gap_on_screen():
    discipline, screen = typed(b"staXtus" + LEFT * 3 + b"\x7f")
    assert discipline.pending == "status"
    assert discipline.cursor == 3
    assert screen.text.rstrip() == "status"


def test_delete_removes_the_character_under_the_cursor():
    discipline, _ = typed(b"statuus" + LEFT * 2 + DELETE)
    assert (discipline.pending, discipline.cursor) == ("status", 5)
    discipline, _ = typed(b"abc" + DELETE)  # at the end: nothing
    assert discipline.pending == "abc"


def test_ctrl_k_kills_to_the_end_and_ctrl_u_to_the_start():
    discipline, _ = typed(b"status now" + LEFT * 4 + CTRL_K)
    assert (discipline.pending, discipline.cursor) == ("status", 6)
    discipline, _ = typed(b"xx status" + LEFT * 6 + CTRL_U)
    assert (discipline.pending, discipline.cursor) == ("status", 0)


def test_ctrl_w_kills_the_word_before_the_cursor():
    discipline, _ = typed(b"restart  agent  " + CTRL_W)
    assert discipline.pending == "restart  "
    discipline, _ = typed(b"logs agent --tail" + LEFT * 7 + CTRL_W)
    assert (discipline.pending, discipline.cursor) == ("logs  --tail", 5)


def test_word_moves_with_ctrl_arrows_and_meta_keys():
    discipline, _ = typed(b"certs renew edge-ca" + b"\x1b[1;5D" * 2 + b"x")
    assert discipline.pending == "certs xrenew edge-ca"
    discipline, _ = typed(b"a b c" + CTRL_A + b"\x1bf" + b"\x1bf" + b"!")
    assert discipline.pending == "a b! c"
    discipline, _ = typed(b"a b c" + b"\x1bb" + b"!")
    assert discipline.pending == "a b !c"


def test_enter_in_the_middle_enters_the_whole_line():
    events = LineDiscipline().feed(b"status" + LEFT * 3 + b"\r")
    assert lines(events) == [LineEntered("status")]
    assert echo(events).endswith(b"tus\r\n")  # the cursor goes to the end first


def test_ctrl_c_in_the_middle_keeps_the_text_on_screen():
    screen = Screen()
    for event in LineDiscipline().feed(b"reboot" + LEFT * 4 + b"\x03"):
        if isinstance(event, Echo):
            screen.write(event.data)
    assert screen.lines == ["reboot^C"]


def test_ctrl_l_asks_for_a_clear_screen_and_keeps_the_line():
    discipline = LineDiscipline()
    events = discipline.feed(b"sta" + CTRL_L + b"tus")
    assert ClearScreen() in events
    assert discipline.pending == "status"
    discipline.feed(LEFT)
    assert discipline.redraw() == b"status\b"


def test_up_and_down_walk_the_history_and_give_back_the_draft():
    discipline = LineDiscipline()
    discipline.feed(b"status\rlist\rlogs agent\r")
    assert discipline.history.lines == ("status", "list", "logs agent")
    typed(b"draft" + UP, discipline)
    assert discipline.pending == "logs agent"
    typed(UP + UP, discipline)
    assert discipline.pending == "status"
    typed(UP, discipline)  # at the oldest: stays
    assert discipline.pending == "status"
    typed(DOWN, discipline)
    assert discipline.pending == "list"
    typed(DOWN + DOWN, discipline)
    assert (discipline.pending, discipline.cursor) == ("draft", 5)
    assert lines(discipline.feed(b"\x1bOA\r")) == [LineEntered("logs agent")]


def test_history_keeps_no_repeats_no_empty_lines_and_a_bounded_count():
    discipline = LineDiscipline(history=History(limit=3))
    discipline.feed(b"a\ra\r\r  \rb\ra\rc\rd\r")
    assert discipline.history.lines == ("a", "c", "d")


def test_refused_and_hidden_lines_never_enter_the_history():
    discipline = LineDiscipline()
    discipline.feed(b"status\rbad\x02line\r")
    discipline.hidden = True
    discipline.feed(b"hunter2\r")
    discipline.feed(UP)
    assert discipline.pending == ""  # no history while hidden
    discipline.hidden = False
    discipline.keep_history = False
    discipline.feed(b"tech\r")
    assert discipline.history.lines == ("status",)


def test_a_recalled_line_replaces_a_longer_one_on_screen():
    discipline = LineDiscipline()
    discipline.feed(b"list\r")
    _, screen = typed(b"system status" + LEFT * 3 + UP, discipline)
    assert screen.text.rstrip() == "list"


def test_tab_asks_for_completion_of_the_text_before_the_cursor():
    discipline = LineDiscipline()
    events = discipline.feed(b"certs ren" + b"\t")
    [wanted] = [e for e in events if isinstance(e, CompletionWanted)]
    assert (wanted.before, wanted.listing) == ("certs ren", False)
    events = discipline.feed(b"x" + LEFT * 2 + b"\t")
    [wanted] = [e for e in events if isinstance(e, CompletionWanted)]
    assert (wanted.before, wanted.listing) == ("certs re", False)
    [again] = [e for e in discipline.feed(b"\t") if isinstance(e, CompletionWanted)]
    assert (again.before, again.listing) == ("certs re", True)


def complete(discipline: LineDiscipline, keys: bytes, words: list[str]) -> list[Event]:
    """Type `keys`, answering each Tab with `words` at once (as the session does)."""
    discipline.receive(keys)
    seen: list[Event] = []
    while (event := discipline.next_event()) is not None:
        seen.append(event)
        if isinstance(event, CompletionWanted):
            discipline.complete(event, words)
    return seen


def test_a_single_candidate_is_inserted_with_a_space():
    discipline = LineDiscipline()
    complete(discipline, b"sta\t", ["status", "list"])
    assert (discipline.pending, discipline.cursor) == ("status ", 7)


def test_several_candidates_insert_their_common_prefix_then_list_on_the_second_tab():
    discipline = LineDiscipline()
    events = complete(discipline, b"s\t", ["start", "stop", "status", "system"])
    assert discipline.pending == "s"  # "st" and "sy": nothing in common beyond "s"
    assert echo(events) == b"s" + BELL
    events = complete(discipline, b"\t", ["start", "stop", "status", "system"])
    assert ShowCandidates(("start", "status", "stop", "system")) in events
    discipline = LineDiscipline()
    complete(discipline, b"sta\t", ["start", "status"])
    assert discipline.pending == "sta"
    complete(discipline, b"r\t", ["start", "status"])
    assert discipline.pending == "start "
    discipline = LineDiscipline()
    complete(discipline, b"s\t", ["status", "stop"])
    assert discipline.pending == "st"
    events = complete(discipline, b"\t", ["status", "stop"])  # right after the insertion: list
    assert ShowCandidates(("status", "stop")) in events


def test_completion_in_the_middle_keeps_the_rest_of_the_line():
    discipline, screen = LineDiscipline(), Screen()
    for event in complete(discipline, b"logs ag --tail 5" + LEFT * 9 + b"\t", ["agent"]):
        if isinstance(event, Echo):
            screen.write(event.data)
    assert (discipline.pending, discipline.cursor) == ("logs agent --tail 5", 10)
    assert screen.shows(discipline.pending, discipline.cursor)


def test_completion_leaves_out_unusable_words_and_rings_for_none():
    discipline = LineDiscipline()
    events = complete(discipline, b"ke\t", ["keys", "ke ys", "ke\x1b[2J", "other"])
    assert discipline.pending == "keys "
    events = complete(discipline, b"zz\t", ["keys"])
    assert echo(events) == b"zz" + BELL


def test_a_stale_completion_answer_is_ignored():
    discipline = LineDiscipline()
    [wanted] = [e for e in discipline.feed(b"sta\t") if isinstance(e, CompletionWanted)]
    discipline.feed(b"x")
    discipline.complete(wanted, ["status"])
    assert discipline.next_event() is None
    assert discipline.pending == "stax"


def test_completion_that_would_overflow_the_line_rings_instead():
    discipline = LineDiscipline(max_line=8)
    events = complete(discipline, b"abcdef\t", ["abcdefghij"])
    assert discipline.pending == "abcdef"
    assert echo(events).endswith(BELL)


def test_hidden_input_asks_for_no_completion():
    discipline = LineDiscipline()
    discipline.hidden = True
    assert discipline.feed(b"pass\t") == []


def test_a_cursor_position_report_is_an_event_and_not_text():
    discipline = LineDiscipline()
    events = discipline.feed(b"sta\x1b[24;132Rtus\r")
    assert CursorReport(24, 132) in events
    assert lines(events)[-1] == LineEntered("status")


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(KEYS),
            st.text(alphabet="stoplgvu -\u00e9\u20ac", max_size=6).map(str.encode),
            st.binary(max_size=4),
        ),
        max_size=60,
    ),
    st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_the_screen_always_shows_the_line_and_chunking_changes_nothing(keys, cuts):
    words = ["status", "stop", "start", "system status", "list", "logs", "log-level"]
    data = b"".join(keys)

    def run(chunks: list[bytes]) -> list[Event]:
        discipline = LineDiscipline(max_line=48)
        discipline.feed(b"status\rstart agent\r")  # something in the history
        screen = Screen()
        seen: list[Event] = []
        for chunk in chunks:
            discipline.receive(chunk)
            while (event := discipline.next_event()) is not None:
                if isinstance(event, Echo):
                    screen.write(event.data)
                elif isinstance(event, ShowCandidates | ClearScreen):
                    screen.new_line()
                    screen.write(discipline.redraw())
                elif isinstance(event, LineEntered):
                    assert screen.lines[-1].rstrip(" ") == event.text.rstrip(" ")
                assert screen.shows(discipline.pending, discipline.cursor)
                if isinstance(event, CompletionWanted):
                    discipline.complete(event, words)  # its echo is the next event
                assert len(discipline.pending.encode()) <= 48
                seen.append(event)
        return merged(seen)

    bounds = sorted({min(cut, len(data)) for cut in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert run(pieces) == run([data]) == run([bytes((b,)) for b in data])


def merged(events: list[Event]) -> list[Event]:
    """Events with neighbouring echo joined (how echo is cut depends on how bytes arrive)."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, Echo) and out and isinstance(out[-1], Echo):
            out[-1] = Echo(out[-1].data + event.data)
        else:
            out.append(event)
    return out


@given(st.lists(st.one_of(st.sampled_from(KEYS), st.binary(max_size=6)), max_size=40))
def test_hidden_input_never_echoes_with_editing_keys_either(keys):
    discipline = LineDiscipline()
    discipline.feed(b"status\r")
    discipline.hidden = True
    events = complete(discipline, b"".join(keys), ["status", "stop"])
    shown = echo(events).replace(b"\r\n", b"").replace(b"^C", b"")
    assert shown == b""
    assert not [e for e in events if isinstance(e, ShowCandidates | CompletionWanted)]
    assert discipline.history.lines == ("status",)
