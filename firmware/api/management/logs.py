"""`GET /modules/{name}/logs`: a module's container output, streamed with chunked encoding.

Query: `tail` (a number of lines or "all"), `since` and `until` (each unix seconds, an RFC 3339
time, or a duration back from now such as "10m" or "1 hour 20 min", as aziot-edged reads them),
`timestamps` and `follow` ("true"/"false"). By default the answer is what aziot-edged answers and
edgeAgent parses: Docker's multiplexed stream, one frame per chunk the engine gave (8-byte header:
the stream, 1 stdout or 2 stderr, three zero bytes, the payload's length as a big-endian u32; then
the payload). `format=text` answers the text the module wrote to stdout and stderr instead, in
order, for people (`edgekeeper logs`); with `follow=true` either keeps streaming until the client
hangs up or the container is removed. `format=json` (not with follow) answers
`{"lines": [{"stream": "stdout"|"stderr", "text"}]}`, for the serial console.
"""

from __future__ import annotations

import contextlib
import datetime
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any

from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import RouteTable
from firmware.errors import BadRequest
from firmware.runtime.logstream import LogFrame, frame
from firmware.runtime.reconciler import Reconciler

MAX_JSON_BYTES = 1024 * 1024
_FORMATS = ("frames", "text", "json")  # "frames" when there is no `format`

# aziot-edged reads durations with Rust's humantime: numbers with units, spaces optional.
_SPAN = re.compile(r"\s*([0-9]+)\s*([a-zA-Zµ]+)\s*")
_SECONDS = {
    **dict.fromkeys(("nanos", "nsec", "ns"), 1e-9),
    **dict.fromkeys(("usec", "us", "µs"), 1e-6),
    **dict.fromkeys(("millis", "msec", "ms"), 1e-3),
    **dict.fromkeys(("seconds", "second", "secs", "sec", "s"), 1),
    **dict.fromkeys(("minutes", "minute", "mins", "min", "m"), 60),
    **dict.fromkeys(("hours", "hour", "hrs", "hr", "h"), 3600),
    **dict.fromkeys(("days", "day", "d"), 86400),
    **dict.fromkeys(("weeks", "week", "wks", "wk", "w"), 7 * 86400),
    **dict.fromkeys(("months", "month", "M"), 2_630_016),  # 30.44 days
    **dict.fromkeys(("years", "year", "yrs", "yr", "y"), 31_557_600),  # 365.25 days
}
_CONTENT_TYPE = {
    "frames": "text/plain",  # what aziot-edged names its (binary) framed answer
    "text": "text/plain; charset=utf-8",
}


def parse_moment(text: str, parameter: str, now: float | None = None) -> int:
    """Unix seconds from `parameter`'s value: an RFC 3339 time ("2026-11-23T19:00:00Z"), unix
    seconds ("1700000000"), or a duration back from now ("10m", "1 hour 20 min", "2d")."""
    if _is_number(text):
        return int(text)
    with contextlib.suppress(ValueError, OverflowError):
        moment = datetime.datetime.fromisoformat(text.upper())  # RFC 3339 allows "t" and "z"
        return int((moment if moment.tzinfo else moment.astimezone()).timestamp())
    seconds = _duration(text)
    if seconds is None:
        raise BadRequest(
            f"query parameter {parameter!r} is {text!r}",
            hint='use unix seconds, an RFC 3339 time or a duration such as "10m" or "1 hour"',
        )
    return int((time.time() if now is None else now) - seconds)


def _duration(text: str) -> float | None:
    """Seconds in a humantime duration, None if `text` is not one."""
    spans = list(_SPAN.finditer(text))
    if not spans or "".join(span.group(0) for span in spans) != text:
        return None
    total = 0.0
    for span in spans:
        unit = _SECONDS.get(span.group(2))
        if unit is None or len(span.group(1)) > 15:  # more than 30 million years of seconds
            return None
        total += int(span.group(1)) * unit
    return total


def _is_number(text: str) -> bool:
    """Only ASCII digits ("²".isdigit() holds too)."""
    return text.isascii() and text.isdigit()


def _flag(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise BadRequest(f"query parameter {name!r} is {value!r}; use true or false")
    return value in ("true", "1")


def _tail(query: Mapping[str, str]) -> int | None:
    value = query.get("tail", "all")
    if value == "all":
        return None
    if not _is_number(value):
        raise BadRequest(f"query parameter 'tail' is {value!r}; use a number of lines or all")
    return int(value)


def _moment(query: Mapping[str, str], parameter: str) -> int | None:
    value = query.get(parameter)
    return parse_moment(value, parameter) if value else None


def _format(query: Mapping[str, str]) -> str:
    value = query.get("format") or "frames"
    if value not in _FORMATS:
        raise BadRequest(
            f"query parameter 'format' is {value!r}",
            hint="use text or json, or leave it out for Docker's framed stream",
        )
    return value


def routes(current: Callable[[], Reconciler]) -> RouteTable:
    """The logs route; `current()` gives the reconciler at request time."""

    async def module_logs(request: ApiRequest, name: str) -> ApiResponse:
        reconciler = current()
        query = request.query
        tail = _tail(query)
        since = _moment(query, "since")
        until = _moment(query, "until")
        timestamps = _flag(query, "timestamps")
        follow = _flag(query, "follow")
        shape = _format(query)
        if shape == "json" and follow:
            raise BadRequest("format=json cannot follow; drop one of them")
        frames = await reconciler.logs(
            name, tail=tail, since=since, until=until, timestamps=timestamps, follow=follow
        )
        if shape == "json":
            return ApiResponse(200, {"lines": await _lines(name, frames)})
        chunks = _framed(frames) if shape == "frames" else _text(frames)
        return ApiResponse(200, stream=chunks, headers=(("Content-Type", _CONTENT_TYPE[shape]),))

    return [("GET", "/modules/{name}/logs", module_logs)]


async def _lines(name: str, frames: AsyncGenerator[LogFrame, None]) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    size = 0
    try:
        async for found in frames:
            size += len(found.data)
            if size > MAX_JSON_BYTES:
                raise BadRequest(
                    f"logs of {name!r} are over {MAX_JSON_BYTES} bytes", hint="use tail"
                )
            text = found.data.decode("utf-8", "replace")
            lines.extend(
                {"stream": found.stream.name.lower(), "text": line} for line in text.splitlines()
            )
    finally:
        await frames.aclose()
    return lines


async def _framed(frames: AsyncGenerator[LogFrame, None]) -> AsyncIterator[bytes]:
    try:
        async for found in frames:
            yield frame(found.stream, found.data)
    finally:
        await frames.aclose()


async def _text(frames: AsyncGenerator[LogFrame, None]) -> AsyncIterator[bytes]:
    try:
        async for found in frames:
            yield found.data
    finally:
        await frames.aclose()
