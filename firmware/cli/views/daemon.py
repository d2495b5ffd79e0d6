"""Text for `status` and `log-level`: the daemon's state, memory and services."""

from __future__ import annotations

import argparse
from typing import Any

from firmware.cli import render
from firmware.cli.views.provisioning import provisioning_lines


def render_status(answer: dict[str, Any], args: argparse.Namespace) -> str:
    memory = answer.get("memory") or {}
    head = (
        f"edgekeeper {answer.get('version', '?')} on {answer.get('board', '?')}: "
        f"{answer.get('state', '?')}, up {render.duration(answer.get('uptime_s', 0))}, "
        f"pid {answer.get('pid', '?')}"
    )
    usage = f"memory: {render.kib(memory.get('rss_kb'))} resident"
    usage += f", {render.kib(memory.get('anon_kb'))} anonymous"
    services = render.table(
        ("SERVICE", "STATE", "RESTARTS", "LAST ERROR"),
        (
            (s.get("name"), s.get("state"), s.get("restarts"), s.get("last_error"))
            for s in answer.get("services") or ()
        ),
        render.columns_of(args),
    )
    identity = next(
        (s.get("detail") for s in answer.get("services") or () if s.get("name") == "identity"),
        None,
    )
    provisioning = provisioning_lines((identity or {}).get("provisioning"))
    return "\n".join((head, usage, services, *provisioning))


def render_log_level(answer: dict[str, Any], args: argparse.Namespace) -> str:
    return f"log level: {answer.get('level')}"
