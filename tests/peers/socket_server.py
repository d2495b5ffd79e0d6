"""Small scripted servers for client tests: one task per connection running the test's handler,
every connection aborted and every task cancelled when the `async with` ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Start = Callable[[Handler], Awaitable[asyncio.Server]]


@contextlib.asynccontextmanager
async def serving(handler: Handler, start: Start) -> AsyncIterator[asyncio.Server]:
    """`start(connection)` (e.g. `asyncio.start_unix_server(connection, path)`) runs `handler`
    for each connection; a client that goes away ends its handler quietly."""
    running: set[asyncio.Task[None]] = set()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        running.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()
            running.discard(task)

    server = await start(connection)
    try:
        yield server
    finally:
        server.close()
        for task in list(running):
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await server.wait_closed()
