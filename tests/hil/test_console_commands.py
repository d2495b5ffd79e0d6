"""The CLI's commands on the console, over the serial line: messages in the console's language,
`config validate`, `deploy` of a file on the board, `logs -f` ended by Ctrl-C, tables that fit
80 columns, and the progress of a slow `restart`.

Every test runs on the sim board and on a farm board (`--port`), except where a file must be
put on the board first (`deploy`, a config with problems): those need the sim board's directory
and are skipped on a farm board. The modules the tests use come from one manifest deployed
through the console (`deployed`): on a farm board, the tests use a module the board runs.
Log lines may come between outputs, so each test waits for the text it expects.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest

from firmware import __version__
from tests.hil.test_console import PROMPT, TIMEOUT_S, boards, command, send

COLUMNS = 80  # the sim board's [console] columns; a farm board's console is set to the same
TICKER = "hil-ticker"
BROKEN = "hil-broken"
STOP_TIMEOUT_S = 3  # the ticker is a shell as PID 1: it ignores SIGTERM and is killed after this
DEPLOYED_TIMEOUT_S = 30


def manifest(board_dir: Path, image: str, *extra: str) -> Path:
    """The tests' manifest in the sim board's directory: a module that writes a line every
    0.2 s, one whose image is missing (its detail is long), and `extra` sleeping ones."""
    options = {"StopTimeout": STOP_TIMEOUT_S, "HostConfig": {"NetworkMode": "none"}}
    ticking = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"
    modules = {
        TICKER: {
            "imagePullPolicy": "never",
            "settings": {
                "image": image,
                "createOptions": {**options, "Cmd": ["sh", "-c", ticking]},
            },
        },
        BROKEN: {
            "imagePullPolicy": "never",
            "settings": {"image": "edgekeeper-test/not-there-at-all:" + "x" * 40},
        },
        **{
            name: {
                "imagePullPolicy": "never",
                "settings": {"image": image, "createOptions": {**options, "Cmd": ["sleep", "600"]}},
            }
            for name in extra
        },
    }
    path = board_dir / "manifests" / f"{'-'.join(extra) or 'modules'}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"modules": modules}))
    return path


def expect(board, line: str, answer: str) -> re.Match:
    """Type `line`; the match of `answer` (a regex, DOTALL) followed by the prompt."""
    send(board, line.encode() + b"\r")
    pattern = re.compile(answer.encode() + rb"\r\n" + re.escape(PROMPT.encode()), re.S)
    return board.expect(pattern, timeout=TIMEOUT_S)


def image_of(board) -> str:
    """The image of the agent (the first module `list` shows), to run test modules from."""
    text = command(board, "list")
    rows = [line.split() for line in text.splitlines()[1:] if line.strip()]
    return rows[0][3]


def deployed(board, sim_board) -> str:
    """The name of a running module that writes lines: on the sim board the tests' ticker,
    deployed (once) from a file on the board; on a farm board the first running module."""
    deadline = time.monotonic() + DEPLOYED_TIMEOUT_S
    if sim_board is None:
        text = command(board, "list")
        running = [line.split()[0] for line in text.splitlines()[1:] if " running " in line]
        if not running:
            pytest.skip("the board runs no module")
        return running[0]
    if not re.search(rf"(?m)^{TICKER}\s+running\b", command(board, "list")):
        path = manifest(sim_board.root, image_of(board))
        expect(board, f"deploy {path}", r"(?:change\(s\) applied|no changes)")
    while not re.search(rf"(?m)^{TICKER}\s+running\b", command(board, "list")):
        assert time.monotonic() < deadline, f"{TICKER} did not start"
        time.sleep(0.3)
    return TICKER


def stopped(board) -> None:
    """Until the console shows that Ctrl-C ended the command, and the prompt after it."""
    board.expect(re.compile(rb"\^C[^\r]*\r\n"), timeout=TIMEOUT_S)
    board.expect_exact(PROMPT, timeout=TIMEOUT_S)


@pytest.fixture
def consoles(dut) -> list:
    return boards(dut)


def test_a_typo_gets_a_did_you_mean_and_one_error_prefix(consoles):
    for board in consoles:
        text = expect(board, "stauts", r"(error: [^\r]*)").group(1).decode()
        assert text == (
            "error: unknown command 'stauts': did you mean `status`? (`help` lists the commands)"
        )
        option = expect(board, "logs x --tial 3", r"(error: [^\r]*)").group(1).decode()
        assert "did you mean `--tail`?" in option and option.count("error") == 1, option


def test_usage_errors_hint_help_not_the_shell(consoles):
    for board in consoles:
        text = expect(board, "log-level", r"(error: [^\r]*)").group(1).decode()
        assert text.endswith("(`help log-level` lists its arguments)"), text
        assert "--help" not in text and "edgekeeper" not in text, text
        typed = expect(board, "edgekeeper status", r"(error: [^\r]*)").group(1).decode()
        assert "on the console, type the command alone" in typed, typed


def test_help_says_what_runs_on_the_shell_only(consoles):
    for board in consoles:
        text = expect(board, "help", r"(commands:.*?console-password`\.)").group(1).decode()
        assert "`edgekeeper run`" in text and "`edgekeeper console-password`" in text
        assert all(len(line) <= COLUMNS for line in text.splitlines()), text
        refused = expect(board, "run", r"(error: [^\r]*)").group(1).decode()
        assert refused.startswith("error: `run` runs on the board's shell only"), refused


def test_config_validate_checks_the_running_config(consoles, sim_board):
    for board in consoles:
        checked = expect(
            board, "config validate", r"((?:configuration is valid|\d+ problem)[^\r]*)"
        )
        if sim_board is None:
            continue
        assert checked.group(1).startswith(b"configuration is valid (board sim;"), checked.group(1)
        bad = sim_board.root / "bad-config.toml"
        bad.write_text('[console]\nbaud = "fast"\n')
        problems = expect(
            board, f"config validate {bad}", r"(\S+:2: console\.baud.*?problem[^\r]*)"
        )
        assert str(bad) in problems.group(1).decode()


def test_deploy_of_a_file_on_the_board(consoles, sim_board):
    if sim_board is None:
        pytest.skip("needs a file on the board: the sim board only")
    for board in consoles:
        extra = f"hil-note-{uuid.uuid4().hex[:6]}"
        path = manifest(sim_board.root, image_of(board), extra)
        dry = expect(board, f"deploy {path} --dry-run", r"(\+ .*?dry run, nothing applied)")
        assert f"+ {extra} (" in dry.group(1).decode()
        expect(board, f"deploy {path}", r"change\(s\) applied")
        expect(board, f"deploy {path} --dry-run", r"no changes")
        missing = expect(board, "deploy /no/such/manifest.json", r"(error: [^\r]*)")
        assert missing.group(1) == b"error: cannot read manifest /no/such/manifest.json: " + (
            b"No such file or directory"
        )


def test_logs_follow_then_ctrl_c(consoles, sim_board):
    for board in consoles:
        name = deployed(board, sim_board)
        send(board, f"logs {name} -f --tail 2\r".encode())
        if sim_board is not None:
            for _ in range(3):  # new lines keep coming while it follows
                board.expect(re.compile(rb"tick \d+\r\n"), timeout=TIMEOUT_S)
        else:
            time.sleep(1)
        send(board, b"\x03")
        stopped(board)
        assert __version__ in command(board, "version")


def test_list_fits_80_columns_and_show_has_the_whole_detail(consoles, sim_board):
    for board in consoles:
        if sim_board is not None:
            deployed(board, sim_board)
        table = expect(board, "list", r"(NAME +STATUS.*?)").group(1).decode()
        lines = table.splitlines()
        assert all(len(line) <= COLUMNS for line in lines), table
        if sim_board is None:
            continue
        (row,) = [line for line in lines if line.startswith(BROKEN)]
        assert row.endswith("…") and len(row) == COLUMNS, row
        shown = expect(board, f"show {BROKEN}", r"(name: .*?detail: [^\r]*)").group(1).decode()
        assert "x" * 40 in shown, shown
        assert max(len(line) for line in shown.splitlines()) > COLUMNS


def test_a_slow_restart_shows_progress_and_ctrl_c_stops_the_wait(consoles, sim_board):
    if sim_board is None:
        pytest.skip("needs a module known to ignore SIGTERM: the sim board's ticker")
    for board in consoles:
        name = deployed(board, sim_board)
        waiting = f"restarting {name}: waiting for it to stop (up to {STOP_TIMEOUT_S} s)…"
        expect(
            board, f"restart {name}", rf"{re.escape(waiting)}\r\n.*?{name} restarted in [3-9]\.\d s"
        )
        send(board, f"restart {name}\r".encode())
        board.expect_exact(waiting.encode(), timeout=TIMEOUT_S)
        send(board, b"\x03")
        board.expect(
            re.compile(rf"stopped waiting for {name} after \d+\.\d s: it may still be ".encode()),
            timeout=TIMEOUT_S,
        )
        stopped(board)
        deployed(board, sim_board)  # running again for the next test


UP = b"\x1b[A"


def test_up_arrow_repeats_the_last_command(consoles):
    for board in consoles:
        assert __version__ in command(board, "version")
        send(board, UP)
        board.expect_exact("version", timeout=TIMEOUT_S)  # the line, drawn again
        send(board, b"\r")
        board.expect_exact(__version__, timeout=TIMEOUT_S)
        board.expect_exact(PROMPT, timeout=TIMEOUT_S)


def test_tab_completes_a_command_name(consoles):
    for board in consoles:
        send(board, b"vers\t")
        board.expect_exact("ion", timeout=TIMEOUT_S)  # what completion added after "vers"
        send(board, b"\r")
        board.expect_exact(__version__, timeout=TIMEOUT_S)
        board.expect_exact(PROMPT, timeout=TIMEOUT_S)


def test_tab_completes_a_module_name(consoles, sim_board):
    for board in consoles:
        name = deployed(board, sim_board)
        typed = name[: max(len(name) - 3, 1)]
        send(board, f"show {typed}\t".encode())
        board.expect_exact(name[len(typed) :], timeout=TIMEOUT_S)
        shown = expect(board, "", r"(name: +[^\r]*).*?detail: [^\r]*").group(1).decode()
        assert shown.split()[-1] == name, shown


def test_log_mute_holds_daemon_lines_back_and_follow_counts_them(consoles):
    for board in consoles:
        # Changing the daemon's log level logs a warning: shown while following...
        expect(board, "log-level info", r"log level: info")
        board.expect_exact("log level changed", timeout=TIMEOUT_S)
        board.expect_exact(PROMPT, timeout=TIMEOUT_S)
        expect(board, "log mute", r"console log muted: `log follow` shows daemon lines again")
        # ... and held back while muted.
        quiet = expect(board, "log-level info", r"(log level: info.*?)")
        assert "log level changed" not in quiet.group(1).decode()
        assert "log level changed" not in command(board, "version")
        followed = expect(board, "log follow", r"console log followed: (\d+) lines? w[^\r]*")
        assert int(followed.group(1)) >= 1
