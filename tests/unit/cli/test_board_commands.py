"""The CLI's board commands on the console, through the in-process router: `logs` (and `-f`
ended by cancellation, which closes the stream), `deploy` of a file on the board, `config
validate`, `stop` and `restart` with a progress line and a message when the wait is cancelled,
and tables cut to the terminal's width with `show` keeping the whole text."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import Router
from firmware.cli import module_commands
from firmware.cli.commands import CLI, InProcessInvoker, execute
from firmware.cli.result import CommandResult
from firmware.cli.terminal import Terminal
from firmware.errors import NotFound
from tests.unit.cli.daemon_double import STATUS, ThreadedDaemon

DETAIL = "Error response from daemon: " + "failed to create task for container: " * 6
MANIFEST = '[modules.web]\n[modules.web.settings]\nimage = "busybox:1.36"\n'


class Board:
    """A daemon double with one module, `web`, whose stop takes `stop_s` seconds."""

    def __init__(self, stop_s: float = 0.0, stop_timeout: int = 3) -> None:
        self.stop_s = stop_s
        self.stop_timeout = stop_timeout
        self.state = "running"
        self.log_closed = asyncio.Event()
        self.deployed: list[tuple[str, object]] = []
        self.status = dict(STATUS)
        self.router = Router()
        for method, path, handler in (
            ("GET", "/daemon/status", self.daemon_status),
            ("GET", "/modules", self.modules),
            ("GET", "/modules/{name}", self.module),
            ("POST", "/modules/{name}/restart", self.restart),
            ("POST", "/modules/{name}/stop", self.stop),
            ("GET", "/modules/{name}/logs", self.logs),
            ("POST", "/deployments", self.deploy),
        ):
            self.router.add(method, path, handler)

    def details(self) -> dict[str, Any]:
        return {
            "name": "web",
            "config": {
                "settings": {
                    "image": "registry.example.com/team/web:1.2.3",
                    "createOptions": json.dumps({"StopTimeout": self.stop_timeout}),
                }
            },
            "status": {"runtimeStatus": {"status": self.state, "description": DETAIL}},
            "restartCount": 2,
        }

    async def daemon_status(self, request: ApiRequest) -> ApiResponse:
        return ApiResponse(body=self.status)

    async def modules(self, request: ApiRequest) -> ApiResponse:
        return ApiResponse(body={"modules": [self.details()]})

    async def module(self, request: ApiRequest, name: str) -> ApiResponse:
        if name != "web":
            raise NotFound(f"no module named {name!r}")
        return ApiResponse(body=self.details())

    async def restart(self, request: ApiRequest, name: str) -> ApiResponse:
        await asyncio.sleep(self.stop_s)
        return ApiResponse(204)

    async def stop(self, request: ApiRequest, name: str) -> ApiResponse:
        def stopped() -> None:
            self.state = "stopped"

        asyncio.get_running_loop().call_later(self.stop_s, stopped)
        return ApiResponse(204)

    async def logs(self, request: ApiRequest, name: str) -> ApiResponse:
        follow = request.query.get("follow") == "true"
        query = dict(request.query)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                yield f"query {query['tail']} {query['format']}\n".encode()
                yield b"first li"
                yield "ne \xe2\x9c\x93\nsecond line\n".encode("latin-1")
                if follow:
                    await asyncio.Event().wait()
                yield b"no newline at the end"
            finally:
                self.log_closed.set()

        return ApiResponse(200, stream=chunks())

    async def deploy(self, request: ApiRequest) -> ApiResponse:
        self.deployed.append((request.query["dry-run"], request.json()))
        return ApiResponse(
            body={
                "changes": [{"change": "add", "name": "web", "image": "busybox:1.36"}],
                "dryRun": request.query["dry-run"] == "true",
            }
        )


class Screen:
    """A terminal that keeps what was streamed to it."""

    def __init__(self, columns: int = 80) -> None:
        self.written: list[str] = []
        self.terminal = Terminal(columns, self._write)
        self._changed = asyncio.Event()

    def _write(self, text: str) -> None:
        self.written.append(text)
        self._changed.set()

    async def shows(self, text: str) -> None:
        """Until `text` has been written (bound by the caller's timeout)."""
        while text not in self.text:
            self._changed.clear()
            await self._changed.wait()

    @property
    def text(self) -> str:
        return "".join(self.written)


async def console(board: Board, *argv: str, screen: Screen | None = None) -> CommandResult:
    invoker = InProcessInvoker(board.router)
    return await execute(list(argv), invoker, terminal=screen.terminal if screen else None)


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module_commands, "PROGRESS_AFTER_S", 0.05)
    monkeypatch.setattr(module_commands, "STOP_POLL_S", 0.01)


def test_logs_streams_whole_lines_to_the_terminal() -> None:
    async def scenario() -> tuple[CommandResult, str]:
        screen = Screen()
        result = await console(Board(), "logs", "web", "--tail", "5", screen=screen)
        return result, screen.text

    result, text = asyncio.run(scenario())
    assert result == CommandResult("")
    assert text == "query 5 text\nfirst line ✓\nsecond line\nno newline at the end\n"


def test_logs_follow_ends_on_cancellation_and_closes_the_stream() -> None:
    async def scenario() -> tuple[Board, Screen]:
        board, screen = Board(), Screen()
        task = asyncio.create_task(console(board, "logs", "web", "-f", screen=screen))
        async with asyncio.timeout(5):
            await screen.shows("second line")
            assert not board.log_closed.is_set()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await board.log_closed.wait()
        return board, screen

    board, screen = asyncio.run(scenario())
    assert board.log_closed.is_set()
    assert screen.text == "query all text\nfirst line ✓\nsecond line\n"


def test_deploy_reads_a_file_on_the_board_off_the_loop(tmp_path: Path) -> None:
    manifest = tmp_path / "m.toml"
    manifest.write_text(MANIFEST)
    board = Board()
    called: list[str] = []

    async def run_blocking(fn: Any, *args: Any) -> Any:
        called.append(fn.__name__)
        return await asyncio.to_thread(fn, *args)

    async def scenario() -> tuple[CommandResult, CommandResult]:
        invoker = InProcessInvoker(board.router, run_blocking=run_blocking)
        dry = await execute(["deploy", str(manifest), "--dry-run"], invoker)
        applied = await execute(["deploy", str(manifest)], invoker)
        return dry, applied

    dry, applied = asyncio.run(scenario())
    assert dry == CommandResult("+ web (busybox:1.36)\n1 change(s); dry run, nothing applied")
    assert applied == CommandResult("+ web (busybox:1.36)\n1 change(s) applied")
    assert called == ["read_manifest", "read_manifest"]
    assert [dry_run for dry_run, _ in board.deployed] == ["true", "false"]
    assert board.deployed[0][1] == {"modules": {"web": {"settings": {"image": "busybox:1.36"}}}}


def test_deploy_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.toml"
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (module_commands.MAX_MANIFEST_BYTES + 1))

    async def scenario() -> list[CommandResult]:
        return [
            await console(Board(), "deploy", str(missing)),
            await console(Board(), "deploy", str(tmp_path)),
            await console(Board(), "deploy", str(big)),
            await console(Board(), "deploy", "m.toml"),
        ]

    absent, directory, too_big, relative = asyncio.run(scenario())
    assert absent == CommandResult(
        f"error: cannot read manifest {missing}: No such file or directory", 2
    )
    assert directory.text == f"error: cannot read manifest {tmp_path}: not a regular file"
    assert too_big.text.startswith(f"error: manifest {big} is 1048577 bytes, over 1048576")
    assert relative.text.startswith("error: deploy: 'm.toml' is not an absolute path")


def test_config_validate_on_the_console_defaults_to_the_daemons_file(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[console]\ndevice = "none"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('[console]\nbaud = "fast"\n')
    board = Board()
    board.status["config_file"] = str(bad)

    async def scenario() -> list[CommandResult]:
        return [
            await console(board, "config", "validate", str(good)),
            await console(board, "config", "validate"),
            await console(board, "config", "validate", "good.toml"),
        ]

    named, running, relative = asyncio.run(scenario())
    assert named.exit_code == 0
    assert named.text.startswith("configuration is valid (board sim;")
    assert running.exit_code == 1
    assert f"{bad}:2: console.baud" in running.text
    assert relative.text.startswith("error: config validate: 'good.toml' is not an absolute")


def test_a_slow_restart_shows_progress_then_how_long_it_took(quick: None) -> None:
    async def scenario() -> tuple[CommandResult, str]:
        screen = Screen()
        result = await console(Board(stop_s=0.3), "restart", "web", screen=screen)
        return result, screen.text

    result, progress = asyncio.run(scenario())
    assert progress == "restarting web: waiting for it to stop (up to 3 s)…\n"
    assert result.exit_code == 0
    assert result.text.startswith("web restarted in 0.")
    assert result.text.endswith(" s")


def test_a_quick_restart_shows_no_progress_line(quick: None) -> None:
    result = asyncio.run(console(Board(), "restart", "web"))
    assert result.text.startswith("web restarted in 0.0")


def cancelled_while_waiting(command: str) -> str:
    """What the terminal shows when `command web` is cancelled while it waits for the module."""

    async def scenario() -> str:
        screen = Screen()
        task = asyncio.create_task(console(Board(stop_s=30), command, "web", screen=screen))
        async with asyncio.timeout(5):
            await screen.shows("waiting")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return screen.text

    return asyncio.run(scenario())


def test_cancelling_a_restart_says_the_wait_stopped_and_what_may_be(quick: None) -> None:
    lines = cancelled_while_waiting("restart").splitlines()
    assert lines[0] == "restarting web: waiting for it to stop (up to 3 s)…"
    assert lines[1].startswith("stopped waiting for web after 0.")
    assert lines[1].endswith(
        ": it may still be stopping, or starting again; `list` shows its state"
    )


def test_stop_waits_until_the_module_has_stopped(quick: None) -> None:
    async def scenario() -> tuple[CommandResult, str, str]:
        board, screen = Board(stop_s=0.2), Screen()
        result = await console(board, "stop", "web", screen=screen)
        return result, screen.text, board.state

    result, progress, state = asyncio.run(scenario())
    assert state == "stopped"
    assert progress == "stopping web: waiting for it to stop (up to 3 s)…\n"
    assert result.text.startswith("web stopped in 0.")


def test_stop_gives_up_after_the_stop_timeout_and_a_margin(
    quick: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(module_commands, "STOP_MARGIN_S", 0.1)
    result = asyncio.run(console(Board(stop_s=30, stop_timeout=0), "stop", "web"))
    assert result.exit_code == 1
    assert result.text.startswith("stopping web: waiting for it to stop (up to 0 s)…\n")
    assert result.text.endswith("; the daemon goes on stopping it (`list` shows its state)")


def test_cancelling_a_stop_says_the_daemon_goes_on(quick: None) -> None:
    last = cancelled_while_waiting("stop").splitlines()[-1]
    assert last.startswith("stopped waiting for web after ")
    assert last.endswith(": the daemon goes on stopping it; `list` shows its state")


def test_an_unknown_module_is_one_error() -> None:
    result = asyncio.run(console(Board(), "restart", "nope"))
    assert result == CommandResult("error: no module named 'nope'", 1)


def test_list_fits_the_terminal_and_show_keeps_the_whole_detail() -> None:
    async def scenario() -> tuple[CommandResult, CommandResult, CommandResult]:
        board = Board()
        narrow = await console(board, "list", screen=Screen(80))
        unknown = await console(board, "list", screen=Screen(0))
        shown = await console(board, "show", "web", screen=Screen(80))
        return narrow, unknown, shown

    narrow, unknown, shown = asyncio.run(scenario())
    lines = narrow.text.splitlines()
    assert lines[0].startswith("NAME  STATUS   UPTIME  IMAGE")
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[1].endswith("…") and lines[1].startswith("web   running")
    assert DETAIL.strip() in unknown.text  # width unknown (a pipe): nothing cut
    assert f"detail:    {DETAIL.strip()}" in shown.text.splitlines()
    assert "restarts:  2" in shown.text.splitlines()


def test_the_cli_cuts_nothing_when_stdout_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from firmware.cli.terminal import stdout_terminal

    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert stdout_terminal().columns == 0
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "57")
    assert stdout_terminal().columns == 57


def test_the_cli_runs_the_same_board_commands(tmp_path: Path) -> None:
    manifest = tmp_path / "m.toml"
    manifest.write_text(MANIFEST)
    board = Board()
    invoker = InProcessInvoker(board.router)
    cli = asyncio.run(execute(["deploy", str(manifest), "--dry-run"], invoker, surface=CLI))
    console_result = asyncio.run(console(board, "deploy", str(manifest), "--dry-run"))
    assert cli == console_result


def test_ctrl_c_on_the_cli_says_the_restart_wait_stopped(tmp_path: Path) -> None:
    """The CLI over a real socket: the progress line on stdout as it happens, then Ctrl-C
    (SIGINT) ends the wait with the message and exit code 130."""
    repo = Path(__file__).resolve().parents[3]
    with ThreadedDaemon(tmp_path, Board(stop_s=30).router) as daemon:
        cli = subprocess.Popen(
            [sys.executable, "-m", "firmware", "--socket", daemon.uri, "restart", "web"],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert cli.stdout is not None
            first = cli.stdout.readline()
            assert first == "restarting web: waiting for it to stop (up to 3 s)…\n"
            cli.send_signal(signal.SIGINT)
            rest, errors = cli.communicate(timeout=20)
        finally:
            cli.kill()
    assert cli.returncode == 130, errors
    assert rest.startswith("stopped waiting for web after ")
    assert rest.endswith(
        ": it may still be stopping, or starting again; `edgekeeper list` shows its state\n"
    )
