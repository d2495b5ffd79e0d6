"""How tests start edgekeeper: the built binary when `build.py test` names it, else the source.

The CLI runs the binary itself, as a technician would. The daemon runs the program as the
systemd unit does (docs/build.md): one process with the daemon's own pid, so SIGKILL, SIGHUP and
sd_notify reach the daemon (for a onefile build, the program it unpacks, not Nuitka's bootstrap).
Start it with `[*daemon_argv(), "run", ...]` in `program_env()`, or with
`spawn_daemon(config, log)`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
UNPACK_HOME = REPO / ".cache" / "test-unpack"
SOURCE = [sys.executable, "-m", "firmware"]
UNPACK_ID_LENGTH = 16  # build.py: the unpack directory is the build key's first 16 digits


def built_binary() -> str | None:
    return os.environ.get("EDGEKEEPER_BINARY") or None


@contextlib.contextmanager
def binary_selected(binary: Path | None) -> Iterator[None]:
    """Within: `binary` is the build started (EDGEKEEPER_BINARY), or the source when None."""
    before = os.environ.pop("EDGEKEEPER_BINARY", None)
    if binary is not None:
        os.environ["EDGEKEEPER_BINARY"] = str(binary)
    try:
        yield
    finally:
        os.environ.pop("EDGEKEEPER_BINARY", None)
        if before is not None:
            os.environ["EDGEKEEPER_BINARY"] = before


def cli_argv() -> list[str]:
    binary = built_binary()
    return [binary] if binary else list(SOURCE)


def daemon_argv(binary: str | Path | None = None) -> list[str]:
    """The daemon's command: the program of `binary` (default $EDGEKEEPER_BINARY), else the
    source."""
    binary = binary or built_binary()
    return [_program(str(binary))] if binary else list(SOURCE)


def program_env(**extra: str) -> dict[str, str]:
    """The environment edgekeeper runs in, daemon or CLI: ours without EDGEKEEPER_* settings (the
    test's config decides) nor a NOTIFY_SOCKET (unless `extra` gives one), the repository on
    PYTHONPATH for the source."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("EDGEKEEPER_") and name != "NOTIFY_SOCKET"
    }
    return {**env, "PYTHONPATH": str(REPO), **extra}


def spawn_daemon(config: Path, log: Path, **popen: Any) -> subprocess.Popen[str]:
    """`edgekeeper run --config CONFIG` from the repository, its stdout and stderr appended to
    `log`; `popen` adds to `subprocess.Popen`'s arguments (e.g. `preexec_fn`)."""
    with log.open("a") as output:
        return subprocess.Popen(
            [*daemon_argv(), "run", "--config", str(config)],
            cwd=REPO,
            stdout=output,
            stderr=output,
            text=True,
            env=program_env(),
            **popen,
        )


def stop_daemon(process: subprocess.Popen[str] | None, timeout_s: float = 30) -> int:
    """SIGTERM a daemon `spawn_daemon` started and wait for its exit code (0 if none ran); one
    that does not stop in `timeout_s` is killed and `TimeoutExpired` raised."""
    if process is None or process.poll() is not None:
        return process.returncode if process else 0
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@functools.cache
def _program(binary: str) -> str:
    """The program of a standalone build (the binary itself), or the one a onefile `binary`
    unpacks, once per build, into UNPACK_HOME (its directory is named after the build key, as
    build.py sets it)."""
    if Path(binary).resolve().parent.name.endswith(".dist"):
        return binary
    env = {**os.environ, "XDG_CACHE_HOME": str(UNPACK_HOME)}
    subprocess.run([binary, "version"], env=env, capture_output=True, check=True, timeout=120)
    build_key = Path(binary).with_name("edgekeeper.buildkey").read_text().strip()
    program = UNPACK_HOME / "edgekeeper" / build_key[:UNPACK_ID_LENGTH] / "edgekeeper.bin"
    if not program.is_file():
        raise FileNotFoundError(f"{binary} did not unpack its program to {program}")
    return str(program)
