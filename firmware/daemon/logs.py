"""Structured logs: one line per event, text or JSON, with a runtime level and extra sinks.

Text: `2026-11-23T19:20:00.123Z INFO console: message key=value`. JSON: one object per line with
`ts`, `level`, `logger`, `msg`, the event's fields and `exc` (the traceback) if any.
Fields are attached with `extra=fields(key=value)`; a field whose name says it holds a secret
(ends in pin, password, passphrase, secret, token, key, credential(s); or mentions private or
sas) is written as `***`: `user_pin`, `symmetric_key`, `sas_token` are hidden, `token_label`
and `key_id` are not. Secrets inside any text of a line (message, field values, traceback), such
as a PKCS#11 URI's `pin-value=` or a connection string's `SharedAccessKey=`, are written as `***`
too (`firmware.logs.redact`), so the stream, the console and `/system/logs` never carry them.

`LogControl` owns the root logger's output (so `logging.getLogger(__name__)` in any module and
`get_logger("console")` both end up here) and is what the daemon and its services hold:
`set_level`, `set_format` and `add_sink(callable)`, which receives each formatted line on the
event loop's thread (lines logged from executor threads are handed over to the loop), so the
console can print them between its own output without tearing it; `add_level_sink` gives the
record's level with each line (the console filters by its own level).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

from firmware.errors import BadRequest
from firmware.logs import ROOT, SECRET_FIELD
from firmware.redaction import REDACTED, redact

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
FORMATS = ("text", "json")

Sink = Callable[[str], None]
LevelSink = Callable[[str, int], None]  # the line and its record's level (logging.WARNING...)


def parse_level(level: str) -> int:
    """The logging level for a name such as "debug"; BadRequest names the accepted ones."""
    try:
        return LEVELS[str(level).lower()]
    except KeyError:
        raise BadRequest(
            f"unknown log level {level!r}", hint=f"use one of {', '.join(LEVELS)}"
        ) from None


def level_name(level: int) -> str:
    """The lower-case name of a logging level."""
    return logging.getLevelName(level).lower()


def _timestamp(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def _short_name(name: str) -> str:
    if name in (ROOT, "root", "firmware"):
        return "daemon"
    return name.removeprefix(f"{ROOT}.").removeprefix("firmware.")


def _safe_fields(record: logging.LogRecord) -> dict[str, object]:
    values = getattr(record, "fields", None) or {}
    return {k: (REDACTED if SECRET_FIELD.search(k) else v) for k, v in values.items()}


def _text_value(value: object) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text)
    return text


class TextFormatter(logging.Formatter):
    """`<UTC time> <LEVEL> <logger>: <message> key=value ...` plus the traceback, if any."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            _timestamp(record.created),
            record.levelname,
            f"{_short_name(record.name)}:",
            record.getMessage(),
        ]
        parts += [f"{k}={_text_value(v)}" for k, v in _safe_fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "ts": _timestamp(record.created),
            "level": level_name(record.levelno),
            "logger": _short_name(record.name),
            "msg": record.getMessage(),
        }
        for key, value in _safe_fields(record).items():
            event.setdefault(key, value)
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        return json.dumps(_redacted(event))


def _redacted(value: object) -> object:
    """JSON-ready `value` with `redact` applied to every text in it (others shown as text)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    return redact(str(value))


def _formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise BadRequest(f"unknown log format {fmt!r}", hint="use text or json")
    return JsonFormatter() if fmt == "json" else TextFormatter()


class _SinkHandler(logging.Handler):
    """Hands each formatted line to the registered sinks, on the event loop's thread."""

    def __init__(self, control: LogControl) -> None:
        super().__init__()
        self._control = control

    def emit(self, record: logging.LogRecord) -> None:
        sinks = self._control.sinks()
        if not sinks:
            return
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        level = record.levelno
        loop = self._control.loop
        if loop is None or loop.is_closed() or threading.get_ident() == self._control.loop_thread:
            self._deliver(line, level)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._deliver, line, level)

    def _deliver(self, line: str, level: int) -> None:
        for sink, deliver in self._control.deliveries():
            try:
                deliver(line, level)
            except Exception:
                self._control.remove_sink(sink)
                logging.getLogger(ROOT).exception("log sink %r failed and was removed", sink)


class LogControl:
    """The daemon's logging: where lines go, in which format, from which level."""

    def __init__(self, level: str = "info", fmt: str = "text", stream: TextIO | None = None):
        self._logger = logging.getLogger()
        self._stream_handler = logging.StreamHandler(stream or sys.stderr)
        self._sink_handler = _SinkHandler(self)
        self._sinks: list[tuple[Sink | LevelSink, LevelSink]] = []  # (as added, how called)
        self._lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread: int | None = None
        self.format = "text"
        self.set_format(fmt)
        self.set_level(level)
        for handler in (self._stream_handler, self._sink_handler):
            self._logger.addHandler(handler)

    @property
    def level(self) -> str:
        """The current level's name."""
        return level_name(self._logger.level)

    def set_level(self, level: str) -> str:
        """Change the level at run time; returns its name. BadRequest for an unknown level."""
        self._logger.setLevel(parse_level(level))
        return self.level

    def set_format(self, fmt: str) -> None:
        """Switch between "text" and "json" lines."""
        formatter = _formatter(fmt)
        self._stream_handler.setFormatter(formatter)
        self._sink_handler.setFormatter(formatter)
        self.format = fmt

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Deliver sink lines on `loop`'s thread from now on (None: deliver in place)."""
        self.loop = loop
        self.loop_thread = threading.get_ident() if loop is not None else None

    def add_sink(self, sink: Sink) -> Callable[[], None]:
        """Send every formatted line to `sink` too; returns a function that removes it."""
        return self._add(sink, lambda line, level: sink(line))

    def add_level_sink(self, sink: LevelSink) -> Callable[[], None]:
        """Send every formatted line and its record's level to `sink`; returns a function that
        removes it."""
        return self._add(sink, sink)

    def remove_sink(self, sink: Sink | LevelSink) -> None:
        """Stop sending lines to `sink` (no error if it is not registered)."""
        with self._lock:
            self._sinks = [entry for entry in self._sinks if entry[0] != sink]

    def sinks(self) -> list[Sink | LevelSink]:
        """A copy of the registered sinks."""
        with self._lock:
            return [sink for sink, _ in self._sinks]

    def deliveries(self) -> list[tuple[Sink | LevelSink, LevelSink]]:
        """Each registered sink and how to call it with a line and its level."""
        with self._lock:
            return list(self._sinks)

    def _add(self, sink: Sink | LevelSink, deliver: LevelSink) -> Callable[[], None]:
        with self._lock:
            self._sinks.append((sink, deliver))
        return lambda: self.remove_sink(sink)

    def close(self) -> None:
        """Detach this control's handlers from the root logger."""
        for handler in (self._stream_handler, self._sink_handler):
            self._logger.removeHandler(handler)
        self.attach_loop(None)
