"""`edgekeeper logs NAME [--tail N] [--since T] [-f] [-t]` on the CLI: a module's output, asked of
the management API as text (`format=text`), copied to stdout as it arrives, until the end or
Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import sys
from urllib.parse import quote

from firmware.api.client import ApiClient
from firmware.cli.connect import management_uri
from firmware.cli.result import CommandResult


def follow_logs(args: argparse.Namespace) -> CommandResult:
    """Copy the module's log stream to stdout; exit 130 on Ctrl-C."""
    query = {"tail": str(args.tail) if args.tail is not None else "all", "format": "text"}
    if args.since:
        query["since"] = args.since
    if args.follow:
        query["follow"] = "true"
    if args.timestamps:
        query["timestamps"] = "true"
    client = ApiClient(management_uri(args))
    path = f"/modules/{quote(args.name, safe='')}/logs"

    async def copy() -> None:
        async for chunk in client.stream("GET", path, query):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()

    try:
        asyncio.run(copy())
    except KeyboardInterrupt:
        return CommandResult("", 130)
    return CommandResult("")
