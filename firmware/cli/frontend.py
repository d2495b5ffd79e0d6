"""The CLI front end's own parts: its way to the daemon, and the `run` command.

`SocketInvoker` carries the shared commands' requests over the management socket (the console
dispatches them in-process instead, so the API client never loads for it); `run` starts the
daemon and is supplied by the program's entry point.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import ParamSpec, TypeVar

from firmware.api.client import ApiClient
from firmware.api.model import ApiResponse
from firmware.cli.commands import CLI, LOG_LEVELS, RUN, Command, argument
from firmware.cli.result import CommandResult

T = TypeVar("T")
P = ParamSpec("P")

DaemonRunner = Callable[[argparse.Namespace], int]


def daemon_command(run_daemon: DaemonRunner) -> Command:
    """`run`: the daemon in the foreground. The program's entry point supplies `run_daemon`, the
    one layer above the CLI that may start the daemon."""
    return Command(
        RUN,
        "run the daemon in the foreground (what the systemd unit starts)",
        (
            argument("--log-level", choices=LOG_LEVELS, help="override [logging] level"),
            argument("--log-format", choices=("text", "json"), help="override [logging] format"),
        ),
        local=lambda args: CommandResult("", run_daemon(args)),
        surfaces=frozenset({CLI}),
    )


class SocketInvoker:
    """The CLI's way to the daemon: the management socket, found when first used (`uri` is the
    socket's URI, or how to find it: a command that never asks the daemon never looks)."""

    def __init__(self, uri: str | Callable[[], str]) -> None:
        self._uri = uri
        self._client: ApiClient | None = None

    async def request(
        self, method: str, path: str, query: Mapping[str, str], body: object
    ) -> ApiResponse:
        return await self._connected().request(method, path, query, body)

    async def stream(
        self, method: str, path: str, query: Mapping[str, str]
    ) -> AsyncGenerator[bytes, None]:
        chunks = self._connected().stream(method, path, query)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            if isinstance(chunks, AsyncGenerator):  # the connection closes with it, now
                await chunks.aclose()

    def run_blocking(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Awaitable[T]:
        return asyncio.to_thread(fn, *args, **kwargs)

    def _connected(self) -> ApiClient:
        if self._client is None:
            self._client = ApiClient(self._uri if isinstance(self._uri, str) else self._uri())
        return self._client
