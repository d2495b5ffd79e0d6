"""`GET /modules/{name}/logs`: a module's container output, demuxed, streamed with chunked encoding.

Query: `tail` (a number of lines or "all"), `since` (unix seconds, an RFC 3339 time, or a duration
back from now such as "10m"), `timestamps` and `follow` ("true"/"false"). The answer is the text
the module wrote to stdout and stderr, in order; with `follow=true` it keeps streaming until the
client hangs up or the container is removed. `format=json` (not with follow) answers
`{"lines": [{"stream": "stdout"|"stderr", "text"}]}` instead, for the serial console.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any

from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import RouteTable
from firmware.errors import BadRequest
from firmware.runtime.logstream import LogFrame
from firmware.runtime.reconciler import Reconciler

MAX_JSON_BYTES = 1024 * 1024
_DURATION = re.compile(r"^([0-9]+)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float | None = None) -> int:
    """Unix seconds from "1700000000", "2026-11-23T19:00:00Z" or "10m" (ago)."""
    if text.isdigit():
        return int(text)
    match = _DURATION.match(text)
    if match:
        clock = time.time() if now is None else now
        return int(clock - int(match.group(1)) * _UNIT[match.group(2)])
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"query parameter 'since' is {text!r}",
            hint='use unix seconds, an RFC 3339 time or a duration such as "10m"',
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return int(moment.timestamp())


def _flag(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise BadRequest(f"query parameter {name!r} is {value!r}; use true or false")
    return value in ("true", "1")


def _tail(query: Mapping[str, str]) -> int | None:
    value = query.get("tail", "all")
    if value == "all":
        return None
    if not value.isdigit():
        raise BadRequest(f"query parameter 'tail' is {value!r}; use a number of lines or all")
    return int(value)


def routes(current: Callable[[], Reconciler]) -> RouteTable:
    """The logs route; `current()` gives the reconciler at request time."""

    async def module_logs(request: ApiRequest, name: str) -> ApiResponse:
        reconciler = current()
        query = request.query
        tail = _tail(query)
        since = parse_since(query["since"]) if query.get("since") else None
        timestamps = _flag(query, "timestamps")
        follow = _flag(query, "follow")
        as_json = query.get("format", "text") == "json"
        if as_json and follow:
            raise BadRequest("format=json cannot follow; drop one of them")
        frames = await reconciler.logs(
            name, tail=tail, since=since, timestamps=timestamps, follow=follow
        )
        if as_json:
            lines: list[dict[str, Any]] = []
            size = 0
            async for frame in frames:
                size += len(frame.data)
                if size > MAX_JSON_BYTES:
                    raise BadRequest(
                        f"logs of {name!r} are over {MAX_JSON_BYTES} bytes", hint="use tail"
                    )
                text = frame.data.decode("utf-8", "replace")
                lines.extend(
                    {"stream": frame.stream.name.lower(), "text": line}
                    for line in text.splitlines()
                )
            return ApiResponse(200, {"lines": lines})
        return ApiResponse(
            200, stream=_bytes(frames), headers=(("Content-Type", "text/plain; charset=utf-8"),)
        )

    return [("GET", "/modules/{name}/logs", module_logs)]


async def _bytes(frames: AsyncGenerator[LogFrame, None]) -> AsyncIterator[bytes]:
    try:
        async for frame in frames:
            yield frame.data
    finally:
        await frames.aclose()
