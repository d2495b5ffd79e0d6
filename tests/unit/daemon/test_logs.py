"""Structured logs: text and JSON lines, runtime level changes, secret redaction, sinks."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import threading
from collections.abc import Iterator

import pytest

from firmware.daemon.logs import LogControl
from firmware.errors import BadRequest
from firmware.logs import fields, get_logger


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    yield io.StringIO()


@pytest.fixture
def control(stream: io.StringIO) -> Iterator[LogControl]:
    root = logging.getLogger()
    before = root.level
    control = LogControl(level="info", fmt="text", stream=stream)
    yield control
    control.close()
    root.setLevel(before)


def test_text_line_shape(control: LogControl, stream: io.StringIO) -> None:
    get_logger("console").info("port opened", extra=fields(device="/dev/pts/3", baud=115200))
    line = stream.getvalue().strip()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO console: port opened "
        r"device=/dev/pts/3 baud=115200",
        line,
    ), line


def test_module_loggers_are_shortened(control: LogControl, stream: io.StringIO) -> None:
    logging.getLogger("firmware.console.port").warning("slow reader")
    assert " WARNING console.port: slow reader" in stream.getvalue()


def test_json_lines_with_fields_and_traceback(control: LogControl, stream: io.StringIO) -> None:
    control.set_format("json")
    try:
        raise ValueError("bad thing")
    except ValueError:
        get_logger("supervisor").exception("service failed", extra=fields(service="api"))
    event = json.loads(stream.getvalue())
    assert event["level"] == "error"
    assert event["logger"] == "supervisor"
    assert event["msg"] == "service failed"
    assert event["service"] == "api"
    assert "ValueError: bad thing" in event["exc"]
    assert event["ts"].endswith("Z")


def test_level_change_at_run_time(control: LogControl, stream: io.StringIO) -> None:
    log = get_logger("keys")
    log.debug("hidden")
    assert control.set_level("DEBUG") == "debug"
    log.debug("shown")
    assert control.level == "debug"
    control.set_level("error")
    log.warning("hidden too")
    text = stream.getvalue()
    assert "shown" in text
    assert "hidden" not in text
    with pytest.raises(BadRequest, match="unknown log level 'loud'"):
        control.set_level("loud")


def test_secret_fields_are_redacted(control: LogControl, stream: io.StringIO) -> None:
    control.set_format("json")
    get_logger("keys").info(
        "token opened", extra=fields(user_pin="1234", password="hunter2", token_label="edge")
    )
    event = json.loads(stream.getvalue())
    assert event["user_pin"] == "***"
    assert event["password"] == "***"
    assert event["token_label"] == "edge"
    assert "1234" not in stream.getvalue() and "hunter2" not in stream.getvalue()


@pytest.mark.parametrize(
    "name",
    [
        "pin",
        "user_pin",
        "symmetric_key",
        "sas_token",
        "private_key_pem",
        "Password",
        "device_credentials",
        "secret",
        "key",
    ],
)
def test_secret_field_names(control: LogControl, stream: io.StringIO, name: str) -> None:
    get_logger("keys").info("x", extra=fields(**{name: "s3cr3t"}))
    assert "s3cr3t" not in stream.getvalue()


@pytest.mark.parametrize("name", ["token_label", "key_id", "keys", "pinned", "monkey_count"])
def test_plain_field_names(control: LogControl, stream: io.StringIO, name: str) -> None:
    get_logger("keys").info("x", extra=fields(**{name: "visible"}))
    assert f"{name}=visible" in stream.getvalue()


def test_values_with_spaces_are_quoted(control: LogControl, stream: io.StringIO) -> None:
    get_logger("daemon").info("x", extra=fields(error="no such file"))
    assert stream.getvalue().strip().endswith('error="no such file"')


def test_sink_gets_lines_and_can_be_removed(control: LogControl) -> None:
    lines: list[str] = []
    remove = control.add_sink(lines.append)
    get_logger("api").info("one")
    remove()
    get_logger("api").info("two")
    assert len(lines) == 1 and lines[0].endswith("INFO api: one")


async def test_sink_runs_on_the_loop_thread(control: LogControl) -> None:
    control.attach_loop(asyncio.get_running_loop())
    seen: list[tuple[str, int]] = []
    arrived = asyncio.Event()

    def sink(line: str) -> None:
        seen.append((line, threading.get_ident()))
        arrived.set()

    control.add_sink(sink)
    await asyncio.to_thread(get_logger("keys").info, "from a worker")
    await asyncio.wait_for(arrived.wait(), 1)
    assert seen[0][0].endswith("INFO keys: from a worker")
    assert seen[0][1] == threading.get_ident()


def test_failing_sink_is_dropped(control: LogControl, stream: io.StringIO) -> None:
    def broken(line: str) -> None:
        raise OSError("console gone")

    control.add_sink(broken)
    get_logger("api").info("first")
    get_logger("api").info("second")
    assert control.sinks() == []
    assert "log sink" in stream.getvalue()
    assert "second" in stream.getvalue()


URI = "pkcs11:token=edge;object=ca?pin-value=S3CRETPIN"
CONNECTION = "HostName=hub.example;DeviceId=gw;SharedAccessKey=S3CRETKEY="


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_inside_messages_fields_and_tracebacks_are_hidden(
    control: LogControl, stream: io.StringIO, fmt: str
) -> None:
    control.set_format(fmt)
    lines: list[str] = []
    control.add_sink(lines.append)
    try:
        raise ValueError(f"cannot open {URI}")
    except ValueError:
        get_logger("certs").exception(
            "edge CA key %s failed", URI, extra=fields(uri=URI, source=CONNECTION, count=3)
        )
    written = stream.getvalue()
    for text in (written, *lines):
        assert "S3CRETPIN" not in text and "S3CRETKEY" not in text
        assert "pin-value=***" in text and "SharedAccessKey=***" in text
    if fmt == "json":
        event = json.loads(written)
        assert event["uri"] == "pkcs11:token=edge;object=ca?pin-value=***"
        assert event["count"] == 3
        assert "ValueError: cannot open pkcs11:token=edge;object=ca?pin-value=***" in event["exc"]
