"""The `edgekeeper` command line: dispatch, global options, errors and exit codes, and commands
talking to a daemon over a real socket."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from firmware import __version__
from firmware.cli import commands, main
from firmware.errors import UsageError
from tests.peers.program import program_env
from tests.unit.cli.daemon_double import ThreadedDaemon, daemon_router

REPO = Path(__file__).resolve().parents[3]


def edgekeeper(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "firmware", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_version_runs_as_a_module() -> None:
    done = edgekeeper("version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"edgekeeper {__version__}"
    assert "board: " in done.stdout
    assert "python 3." in done.stdout
    assert done.stderr == ""


def test_unknown_command_is_a_usage_error_printed_once() -> None:
    done = edgekeeper("frobnicate")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "error: unknown command 'frobnicate' (`edgekeeper help` lists the commands)\n"
    )


def test_bad_argument_is_exit_2_and_no_command_is_exit_2() -> None:
    bad = edgekeeper("log-level", "loud")
    assert bad.returncode == 2
    assert bad.stderr.count("error:") == 1
    assert "invalid choice: 'loud'" in bad.stderr
    assert edgekeeper().returncode == 2


def test_missing_socket_names_it_and_the_fix(tmp_path: Path) -> None:
    socket = tmp_path / "none.sock"
    done = edgekeeper("status", "--socket", f"unix://{socket}")
    assert done.returncode == 1
    assert done.stderr == (
        f"error: cannot reach the edgekeeper daemon at {socket} "
        "(is `edgekeeper run` running? see `systemctl status edgekeeper`)\n"
    )


def test_status_against_a_daemon_over_its_socket(tmp_path: Path) -> None:
    with ThreadedDaemon(tmp_path, daemon_router()) as daemon:
        done = edgekeeper("--management-uri", daemon.uri, "status")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "edgekeeper 0.1.0 on sim: degraded, up 1h 02m, pid 4242"
    assert lines[1] == "memory: 31.4 MiB resident, 12.1 MiB anonymous"
    assert lines[2:] == [
        "SERVICE  STATE    RESTARTS  LAST ERROR",
        "api      running  0         -",
        "console  failed   5         no such device",
    ]


def test_socket_from_environment_and_log_level_round_trip(tmp_path: Path) -> None:
    levels: list[str] = []
    with ThreadedDaemon(tmp_path, daemon_router(levels)) as daemon:
        done = edgekeeper("log-level", "debug", env={"EDGEKEEPER_MANAGEMENT_URI": daemon.uri})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "log level: debug\n"
    assert levels == ["debug"]


def test_daemon_error_answer_is_printed_once_with_its_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    router = daemon_router()

    async def refuse(request):
        from firmware.errors import Conflict

        raise Conflict("the daemon is stopping", hint="wait for it to exit")

    router.add("PUT", "/daemon/refuse", refuse)
    table = (
        *commands.COMMANDS,
        commands.Command("refuse", "test", call=commands.ApiCall("PUT", "/daemon/refuse")),
    )
    with ThreadedDaemon(tmp_path, router) as daemon, pytest.MonkeyPatch.context() as patch:
        patch.setattr(commands, "COMMANDS", table)
        code = main.main(["edgekeeper", "--socket", daemon.uri, "refuse"])
    assert code == 1
    assert capsys.readouterr() == ("", "error: the daemon is stopping (wait for it to exit)\n")


def test_error_output_goes_to_stderr_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ThreadedDaemon(tmp_path, daemon_router()) as daemon:
        code = main.main(["edgekeeper", "status", "--socket", str(tmp_path / "elsewhere.sock")])
        assert daemon.path.exists()
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert captured.err.count("error: cannot reach the edgekeeper daemon") == 1


def test_symlinked_applet_name_dispatches(tmp_path: Path) -> None:
    launcher = tmp_path / "edgekeeper"
    launcher.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
        "from firmware.cli.main import main\nsys.exit(main())\n"
    )
    launcher.chmod(0o755)
    applet = tmp_path / "edgekeeper-version"
    applet.symlink_to(launcher)
    done = subprocess.run([str(applet)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"edgekeeper {__version__}\n")


def test_command_words_from_program_name() -> None:
    table = commands.COMMANDS

    def words(argv: list[str]) -> list[str]:
        return main.command_words(argv, table)

    assert words(["/usr/bin/edgekeeper", "status"]) == ["status"]
    assert words(["/x/firmware/__main__.py", "version"]) == ["version"]
    assert words(["edgekeeper-status", "--socket", "s"]) == ["status", "--socket", "s"]
    assert words(["/bin/edgekeeper-log-level", "info"]) == ["log-level", "info"]
    assert words(["edgekeeper-config-show"]) == ["config", "show"]
    assert words(["edgekeeper-deploy", "m.toml"]) == ["deploy", "m.toml"]
    with pytest.raises(UsageError, match="no edgekeeper command is called 'nope'"):
        words(["edgekeeper-nope"])
    assert main.main(["edgekeeper-nope"]) == 2


def test_keyboard_interrupt_exits_130_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(command, args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "run_local", interrupted)
    assert main.main(["edgekeeper", "version"]) == 130
    assert capsys.readouterr() == ("", "")


class FakeDaemon:
    """A `run_daemon` for `main`: records the options `run` was given, returns `code`."""

    def __init__(self, code: int = 0) -> None:
        self.code = code
        self.calls: list[tuple[str | None, str | None, str | None, str | None]] = []

    def __call__(self, args) -> int:
        self.calls.append((args.config, args.board, args.log_level, args.log_format))
        return self.code


def test_run_passes_global_options_to_the_daemon() -> None:
    daemon = FakeDaemon(code=3)
    argv = ["edgekeeper", "--board", "sim", "run", "--config", "/c.toml", "--log-level", "debug"]
    assert main.main(argv, run_daemon=daemon) == 3
    assert daemon.calls == [("/c.toml", "sim", "debug", None)]


def test_config_file_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    daemon = FakeDaemon()
    monkeypatch.setenv("EDGEKEEPER_CONFIG", "/env.toml")
    assert main.main(["edgekeeper", "run"], run_daemon=daemon) == 0
    assert daemon.calls == [("/env.toml", None, None, None)]


def test_help_lists_cli_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["edgekeeper", "help"]) == 0
    out = capsys.readouterr().out
    for name in ("status", "log-level", "config validate", "config show", "version"):
        assert f"  {name} " in out
    assert main.main(["edgekeeper", "status", "--help"]) == 0
    assert "usage: edgekeeper status" in capsys.readouterr().out


def test_run_is_offered_only_with_a_daemon_to_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["edgekeeper", "help"]) == 0
    assert "  run " not in capsys.readouterr().out
    assert main.main(["edgekeeper", "run"]) == 2
    assert capsys.readouterr().err == (
        "error: unknown command 'run' (`edgekeeper help` lists the commands)\n"
    )
    daemon = FakeDaemon()
    assert main.main(["edgekeeper", "help"], run_daemon=daemon) == 0
    assert re.search(r"^  run +run the daemon in the foreground", capsys.readouterr().out, re.M)
    assert main.main(["edgekeeper-run"], run_daemon=daemon) == 0
    assert daemon.calls == [(None, None, None, None)]
    assert main.main(["edgekeeper-run"]) == 2
    assert daemon.calls == [(None, None, None, None)]


def test_status_start_does_not_load_daemon_config_or_crypto() -> None:
    probe = (
        "import sys\nfrom firmware.cli.main import main\n"
        "main(['edgekeeper', 'status', '--socket', '/nonexistent.sock'])\n"
        "heavy = [m for m in sys.modules if m.startswith(('firmware.daemon', 'firmware.config',"
        " 'firmware.keys', 'firmware.runtime', 'cryptography', 'tpm2_pytss', 'serial'))]\n"
        "print(heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=program_env(),
    )
    assert done.stdout.strip() == "[]", done.stderr


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_config_validate_reports_every_problem(tmp_path: Path) -> None:
    good = write(tmp_path / "good.toml", '[console]\ndevice = "none"\n')
    ok = edgekeeper("config", "validate", str(good))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("configuration is valid")
    bad = write(tmp_path / "bad.toml", '[paths]\nrun_dirx = "/x"\n[console]\nbaud = "fast"\n')
    failed = edgekeeper("--config", str(bad), "config", "validate")
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert f"{bad}:2: paths.run_dirx" in failed.stderr
    assert f"{bad}:4: console.baud" in failed.stderr


def test_config_show_redacts_secrets_and_bad_config_is_one_error(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", '[keys.pkcs11]\npin = "s3cret-pin"\n')
    config.chmod(0o600)
    shown = edgekeeper("config", "show", "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    assert "[keys.pkcs11]" in shown.stdout
    assert "s3cret-pin" not in shown.stdout
    as_json = edgekeeper("--config", str(config), "config", "show", "--format", "json")
    assert as_json.stdout.lstrip().startswith("{")
    bad = write(tmp_path / "bad.toml", "[paths\n")
    failed = edgekeeper("--config", str(bad), "config", "show")
    assert failed.returncode == 1
    assert failed.stderr.startswith(f"error: {bad}:1: TOML syntax error")
    assert [line for line in failed.stderr.splitlines() if line.startswith("error:")] == [
        failed.stderr.splitlines()[0]
    ]


def test_closed_stdout_ends_quietly(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", "")
    reader, writer = os.pipe()
    os.close(reader)
    with os.fdopen(writer, "w") as closed:
        done = subprocess.run(
            [sys.executable, "-m", "firmware", "--config", str(config), "config", "show"],
            cwd=REPO,
            stdout=closed,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert done.returncode == 141
    assert done.stderr == ""
