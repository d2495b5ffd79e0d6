"""Text of the container commands: `list`, `deploy`'s diff, `system status`, `logs`."""

from __future__ import annotations

import argparse

from firmware.cli.views.modules import (
    render_deployment,
    render_log_lines,
    render_modules,
    render_system_status,
    uptime,
)

ARGS = argparse.Namespace()


def test_uptime_from_engine_timestamps():
    assert uptime("2026-11-23T19:00:00.123456789Z", now=1795460400 + 65) == "1m 05s"
    assert uptime(None) is None
    assert uptime("garbage") is None


def test_module_table():
    answer = {
        "modules": [
            {
                "name": "sensor",
                "config": {"settings": {"image": "example/sensor:1"}},
                "status": {"runtimeStatus": {"status": "backoff", "description": "exit 3"}},
            }
        ]
    }
    lines = render_modules(answer, ARGS).splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "UPTIME", "IMAGE", "DETAIL"]
    assert lines[1].split() == ["sensor", "backoff", "-", "example/sensor:1", "exit", "3"]
    assert render_modules({"modules": []}, ARGS) == "no modules"


def test_deployment_diff_text():
    answer = {
        "dryRun": True,
        "changes": [
            {"name": "a", "change": "add", "image": "x", "details": [], "recreate": False},
            {
                "name": "b",
                "change": "update",
                "image": "y:2",
                "details": ["image: y:1 -> y:2"],
                "recreate": True,
            },
            {"name": "c", "change": "remove", "image": "z", "details": [], "recreate": False},
        ],
        "skipped": [],
    }
    assert render_deployment(answer, ARGS).splitlines() == [
        "+ a (x)",
        "~ b (y:2): image: y:1 -> y:2 [container recreated]",
        "- c (z)",
        "3 change(s); dry run, nothing applied",
    ]


def test_system_status_text():
    down = {
        "engine": {"reachable": False, "socket": "/s", "error": "refused"},
        "modules": {"total": 2},
        "degraded": "agent failed",
    }
    assert render_system_status(down, ARGS).splitlines() == [
        "container engine: UNAVAILABLE at /s: refused",
        "modules: 2",
        "degraded: agent failed",
    ]


def test_log_lines_text():
    answer = {"lines": [{"text": "started"}, "plain line"]}
    assert render_log_lines(answer, ARGS) == "started\nplain line"
    assert render_log_lines({"lines": []}, ARGS) == "(no log lines)"
