"""The harness itself: a gateway starts, its agent runs, and the agent reaches its own workload
socket from inside its container (so an attack that fails did fail for the reason it names)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.docker


def test_agent_reaches_its_workload_socket(gateway) -> None:
    running = gateway()
    status, body = running.workload(running.agent, "GET", "/trust-bundle")
    assert status == 200
    assert "BEGIN CERTIFICATE" in body["certificate"]
