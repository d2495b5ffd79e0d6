"""The runtime's read models from engine documents: verdicts, exits, counts, usage, caller check."""

from __future__ import annotations

from typing import Any

import pytest

from firmware.runtime.spec import DesiredStatus, ModuleSpec
from firmware.runtime.status import (
    NEVER,
    RuntimeStatus,
    count_by_status,
    module_status,
    module_usage,
    running_container,
)

SPEC = ModuleSpec("m", "img:1")
STOPPED_SPEC = ModuleSpec("m", "img:1", status=DesiredStatus.STOPPED)


def container(status: str, code: int = 0, **state: Any) -> dict[str, Any]:
    running = status == "running"
    return {
        "Id": "c1",
        "State": {
            "Status": status,
            "Running": running,
            "ExitCode": code,
            "Pid": 42 if running else 0,
            "StartedAt": "2026-11-23T10:00:00.5Z",
            "FinishedAt": NEVER if running else "2026-11-23T10:00:05Z",
            **state,
        },
    }


def status_of(spec: ModuleSpec, doc: dict[str, Any] | None, note: str = "", wait: float = 0.0):
    return module_status(spec, doc, agent=False, note=note, backoff_left=wait, restart_count=2)


@pytest.mark.parametrize(
    ("spec", "doc", "note", "wait", "verdict", "description"),
    [
        (SPEC, None, "", 0.0, RuntimeStatus.UNKNOWN, "no container yet"),
        (
            SPEC,
            None,
            "pulling img:1: 1/3 layers",
            0.0,
            RuntimeStatus.UNKNOWN,
            "pulling img:1: 1/3 layers",
        ),
        (SPEC, container("running"), "", 0.0, RuntimeStatus.RUNNING, ""),
        (
            SPEC,
            container("running", Health={"Status": "healthy"}),
            "",
            0.0,
            RuntimeStatus.RUNNING,
            "health: healthy",
        ),
        (
            SPEC,
            container("dead", 1),
            "",
            0.0,
            RuntimeStatus.DEAD,
            "the engine reports the container dead",
        ),
        (
            SPEC,
            container("exited", 3),
            "",
            9.6,
            RuntimeStatus.BACKOFF,
            "exited with code 3; next start in 10 s",
        ),
        (
            SPEC,
            container("restarting", 3),
            "",
            0.0,
            RuntimeStatus.BACKOFF,
            "exited with code 3; next start in 0 s",
        ),
        (
            STOPPED_SPEC,
            container("exited", 3),
            "",
            9.6,
            RuntimeStatus.STOPPED,
            "exited with code 3",
        ),
        (SPEC, container("exited", 0), "", 0.0, RuntimeStatus.STOPPED, "exited with code 0"),
        (SPEC, container("exited", 3), "", 0.0, RuntimeStatus.FAILED, "exited with code 3"),
        (SPEC, container("exited", 3), "hook failed", 0.0, RuntimeStatus.FAILED, "hook failed"),
    ],
)
def test_verdict_and_description(spec, doc, note, wait, verdict, description):
    status = status_of(spec, doc, note, wait)
    assert (status.runtime_status, status.description) == (verdict, description)


def test_running_container_facts():
    status = status_of(SPEC, container("running"))
    assert (status.name, status.container_id, status.engine_state) == ("m", "c1", "running")
    assert status.started_at == "2026-11-23T10:00:00.5Z"
    assert status.exited_at is None and status.exit_code == 0 and status.restart_count == 2


def test_exit_facts_only_once_exited():
    exited = status_of(SPEC, container("exited", 3))
    assert (exited.exited_at, exited.exit_code) == ("2026-11-23T10:00:05Z", 3)
    created = status_of(SPEC, container("created", StartedAt=NEVER, FinishedAt=NEVER))
    assert created.started_at is None and created.exited_at is None
    absent = status_of(SPEC, None)
    assert (absent.container_id, absent.engine_state, absent.exit_code) == ("", "", None)


def test_counts_keep_the_order_first_seen():
    statuses = [
        status_of(SPEC, container("exited", 3)),
        status_of(SPEC, container("running")),
        status_of(SPEC, None),
        status_of(SPEC, container("running")),
    ]
    counts = count_by_status(statuses)
    assert list(counts.items()) == [
        (RuntimeStatus.FAILED, 1),
        (RuntimeStatus.RUNNING, 2),
        (RuntimeStatus.UNKNOWN, 1),
    ]


def test_usage_from_stats():
    stats = {
        "memory_stats": {
            "usage": 10_000_000,
            "limit": 1_000_000_000,
            "stats": {"cache": 2_000_000},
        },
        "cpu_stats": {
            "cpu_usage": {"total_usage": 3_000},
            "system_cpu_usage": 20_000,
            "online_cpus": 2,
        },
        "precpu_stats": {"cpu_usage": {"total_usage": 1_000}, "system_cpu_usage": 10_000},
    }
    usage = module_usage("m", stats)
    assert (usage.name, usage.used_memory, usage.memory_limit, usage.used_cpu) == (
        "m",
        8_000_000,
        1_000_000_000,
        40.0,
    )
    empty = module_usage("m", {"memory_stats": {}, "cpu_stats": {}, "precpu_stats": {}})
    assert (empty.used_memory, empty.memory_limit, empty.used_cpu) == (0, 0, 0.0)


def test_running_container_only_while_running():
    found = running_container(container("running"), "c")
    assert found is not None and (found.container_id, found.pid) == ("c1", 42)
    assert running_container(container("exited", 1), "c") is None
    assert running_container({"State": {"Running": True, "Pid": 7}}, "c0").container_id == "c0"
