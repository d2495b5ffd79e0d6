"""Text of the container commands, and the local checks of `deploy`."""

from __future__ import annotations

import json

import pytest

from firmware.errors import BadRequest, UsageError
from firmware.runtime.listing import (
    read_manifest,
    render_deployment,
    render_modules,
    render_system_status,
    uptime,
)


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
    lines = render_modules(answer).splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "UPTIME", "IMAGE", "DETAIL"]
    assert lines[1].split() == ["sensor", "backoff", "-", "example/sensor:1", "exit", "3"]
    assert render_modules({"modules": []}) == "no modules"


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
    assert render_deployment(answer).splitlines() == [
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
    assert render_system_status(down).splitlines() == [
        "container engine: UNAVAILABLE at /s: refused",
        "modules: 2",
        "degraded: agent failed",
    ]


def test_read_manifest_names_file_and_field(tmp_path):
    good = tmp_path / "d.toml"
    good.write_text('[modules.a]\n[modules.a.settings]\nimage = "x"\n[modules.a.env]\nN = 1\n')
    assert read_manifest(good)["modules"]["a"]["env"] == {"N": 1}
    bad = tmp_path / "d.json"
    bad.write_text(json.dumps({"modules": {"a": {"settings": {}}}}))
    with pytest.raises(BadRequest, match=rf"{bad}: field 'modules.a.settings.image'"):
        read_manifest(bad)
    broken = tmp_path / "b.json"
    broken.write_text("{")
    with pytest.raises(BadRequest, match=rf"{broken}: not valid JSON"):
        read_manifest(broken)
    with pytest.raises(UsageError, match="cannot read manifest"):
        read_manifest(tmp_path / "missing.json")
