"""The module commands that take a while: `logs` (streamed, `-f` follows), `stop` and `restart`
(waiting for the module, with a progress line), and `deploy` (a manifest file read and checked
here, then diffed and applied by the daemon).

Each runs the same on the CLI and on the console: requests go through the `Invoker`, text that
should show at once goes through the `Terminal`, and a file is read through the invoker's
`run_blocking`, off the event loop. Ctrl-C (task cancellation; on the CLI asyncio turns
KeyboardInterrupt into one) ends a wait with a line saying what state the module may be in,
and ends a followed log by closing its stream.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import json
import os
import stat
import time
import tomllib
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from firmware.cli.result import CommandResult
from firmware.cli.terminal import Terminal
from firmware.cli.views.modules import render_deployment
from firmware.errors import BadRequest, DaemonError, UsageError

if TYPE_CHECKING:
    from firmware.cli.commands import Invoker

T = TypeVar("T")

PROGRESS_AFTER_S = 1.0  # a wait shorter than this shows no progress line
STOP_POLL_S = 0.5  # how often `stop` looks whether the module has stopped
STOP_MARGIN_S = 20.0  # `stop` waits the module's stop timeout and this much more
DEFAULT_STOP_TIMEOUT_S = 10  # the engine's, for a module without StopTimeout
MAX_MANIFEST_BYTES = 1024 * 1024


# --- logs ----------------------------------------------------------------------------------


async def show_logs(
    args: argparse.Namespace, invoker: Invoker, terminal: Terminal
) -> CommandResult:
    """Copy the module's log text to the terminal, whole lines as they come, until it ends
    (or, with -f, until the module's container goes away or the command is cancelled)."""
    query = {"tail": str(args.tail) if args.tail is not None else "all", "format": "text"}
    if args.since:
        query["since"] = args.since
    if args.follow:
        query["follow"] = "true"
    if args.timestamps:
        query["timestamps"] = "true"
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending = ""
    path = f"/modules/{quote(args.name, safe='')}/logs"
    async with contextlib.aclosing(invoker.stream("GET", path, query)) as chunks:
        async for chunk in chunks:
            complete, newline, pending = (pending + decoder.decode(chunk)).rpartition("\n")
            if newline:
                terminal.write(complete + "\n")
    rest = pending + decoder.decode(b"", final=True)
    if rest:
        terminal.write(rest + "\n")
    return CommandResult("")


# --- stop and restart ----------------------------------------------------------------------


async def restart_module(
    args: argparse.Namespace, invoker: Invoker, terminal: Terminal
) -> CommandResult:
    """Restart the module; the engine waits up to its stop timeout for it to stop."""
    name, path = args.name, _module_path(args.name)
    grace = _stop_timeout(await _module(invoker, path))
    started = time.monotonic()
    restart = invoker.request("POST", f"{path}/restart", {}, None)
    waiting = f"restarting {name}: waiting for it to stop (up to {grace} s)…"
    try:
        await _shown_if_slow(restart, terminal, waiting)
    except asyncio.CancelledError:
        terminal.write(
            f"stopped waiting for {name} after {_since(started)}: it may still be stopping, "
            f"or starting again; `{_typed(args, 'list')}` shows its state\n"
        )
        raise
    return CommandResult(f"{name} restarted in {_since(started)}")


async def stop_module(
    args: argparse.Namespace, invoker: Invoker, terminal: Terminal
) -> CommandResult:
    """Ask the daemon to stop the module, then wait (its stop timeout and a margin) until it
    no longer runs."""
    name, path = args.name, _module_path(args.name)
    grace = _stop_timeout(await _module(invoker, path))
    await invoker.request("POST", f"{path}/stop", {}, None)
    started = time.monotonic()
    deadline = started + grace + STOP_MARGIN_S
    announced = False
    try:
        while True:
            runtime = (await _module(invoker, path)).get("status", {}).get("runtimeStatus", {})
            state = runtime.get("status")
            if state != "running":
                if state == "stopped":
                    return CommandResult(f"{name} stopped in {_since(started)}")
                return CommandResult(f"{name} is {state} after {_since(started)}")
            now = time.monotonic()
            if now >= deadline:
                return CommandResult(
                    f"{name} still runs after {_since(started)}; the daemon goes on stopping it "
                    f"(`{_typed(args, 'list')}` shows its state)",
                    1,
                )
            if not announced and now - started >= PROGRESS_AFTER_S:
                terminal.write(f"stopping {name}: waiting for it to stop (up to {grace} s)…\n")
                announced = True
            await asyncio.sleep(STOP_POLL_S)
    except asyncio.CancelledError:
        terminal.write(
            f"stopped waiting for {name} after {_since(started)}: the daemon goes on stopping "
            f"it; `{_typed(args, 'list')}` shows its state\n"
        )
        raise


def _module_path(name: str) -> str:
    return f"/modules/{quote(name, safe='')}"


async def _module(invoker: Invoker, path: str) -> dict[str, Any]:
    answer = (await invoker.request("GET", path, {}, None)).json()
    if not isinstance(answer, dict):
        raise DaemonError(f"the daemon answered GET {path} without a JSON object")
    return answer


def _stop_timeout(module: dict[str, Any]) -> int:
    """The seconds the engine gives the module to stop: its createOptions' StopTimeout, else
    the engine's default."""
    options = module.get("config", {}).get("settings", {}).get("createOptions")
    if isinstance(options, str):
        with contextlib.suppress(ValueError):
            options = json.loads(options)
    given = options.get("StopTimeout") if isinstance(options, dict) else None
    return given if isinstance(given, int) and given >= 0 else DEFAULT_STOP_TIMEOUT_S


async def _shown_if_slow(work: Awaitable[T], terminal: Terminal, line: str) -> T:
    """`work`'s result; `line` shows on the terminal if it takes longer than PROGRESS_AFTER_S."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=PROGRESS_AFTER_S)
        if not done:
            terminal.write(line + "\n")
        return await task
    except asyncio.CancelledError:
        task.cancel()  # asyncio.wait leaves it running; the request ends with the wait
        raise


def _since(started: float) -> str:
    return f"{time.monotonic() - started:.1f} s"


def _typed(args: argparse.Namespace, words: str) -> str:
    """`words` as the surface types them (`edgekeeper list` on the CLI, `list` on the console)."""
    return f"{args.prog} {words}" if args.prog else words


# --- deploy --------------------------------------------------------------------------------


async def deploy(args: argparse.Namespace, invoker: Invoker, terminal: Terminal) -> CommandResult:
    """Read and check the manifest (off the loop), then let the daemon diff and apply it."""
    path = Path(args.manifest)
    if not args.prog and not path.is_absolute():
        raise UsageError(
            f"deploy: {args.manifest!r} is not an absolute path",
            hint="the console has no working directory: give the whole path, "
            "e.g. `deploy /data/manifest.toml`",
        )
    doc = await invoker.run_blocking(read_manifest, path)
    query = {"dry-run": "true" if args.dry_run else "false"}
    posted = invoker.request("POST", "/deployments", query, doc)
    try:
        answer = (await _shown_if_slow(posted, terminal, f"deploying {path}: waiting…")).json()
    except asyncio.CancelledError:
        if not args.dry_run:
            terminal.write(
                f"stopped waiting for the deployment of {path}: the daemon may have taken it; "
                f"`{_typed(args, 'list')}` shows the modules\n"
            )
        raise
    if not isinstance(answer, dict):
        raise DaemonError("the daemon answered POST /deployments without a JSON object")
    return CommandResult(render_deployment(answer, args))


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at `path` (TOML by extension `.toml`, JSON otherwise), checked here; errors
    name the file and the field. Only a regular file of at most MAX_MANIFEST_BYTES is read
    (blocking: call it off the event loop)."""
    text = _manifest_text(path)
    try:
        doc = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadRequest(f"{path}: not valid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    # Deferred: the runtime's manifest parser loads only for `deploy`, not at every CLI start.
    from firmware.runtime.manifest import parse_deployment

    if not isinstance(doc, dict):
        raise BadRequest(f"{path}: a manifest is a JSON object, not {type(doc).__name__}")
    try:
        parse_deployment(doc)
    except BadRequest as exc:
        raise BadRequest(f"{path}: {exc.message}", hint=exc.hint) from None
    return doc


def _manifest_text(path: Path) -> str:
    # O_NONBLOCK: a FIFO given by mistake must not hold the thread waiting for a writer.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise UsageError(f"cannot read manifest {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"cannot read manifest {path}: not a regular file")
        if info.st_size > MAX_MANIFEST_BYTES:
            raise UsageError(
                f"manifest {path} is {info.st_size} bytes, over {MAX_MANIFEST_BYTES}",
                hint="a deployment manifest is a few KiB; is it the right file?",
            )
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as file:
        data = file.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise UsageError(f"manifest {path} grew over {MAX_MANIFEST_BYTES} bytes while read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{path}: not UTF-8 text (byte {exc.start})") from None
