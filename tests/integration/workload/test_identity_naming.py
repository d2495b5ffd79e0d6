"""The agent acts as `$edgeAgent` (IoT Edge's naming), and a gateway whose agent still has the
identity named after it, as versions before that naming made it, moves to the new one at start:
the old identity is deleted and the agent's container made again with the new environment."""

from __future__ import annotations

import json

from firmware.errors import Unavailable
from firmware.identity.model import AGENT_IDENTITY
from firmware.store.state import StateStore
from tests.peers.waiting import wait_until


def identity_ids(gw) -> set[str] | None:
    """The module identities, None while they are not ready."""
    try:
        listed = gw.request("GET", "/identities").json()["identities"]
    except Unavailable:
        return None
    return {identity["moduleId"] for identity in listed}


def agent_env(gw) -> dict[str, str]:
    lines = gw.module_exec(gw.agent, "env").stdout.splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_an_agent_with_the_old_identity_moves_to_edge_agent(gateway) -> None:
    gw = gateway()
    first = gw.container_of(gw.agent)
    assert agent_env(gw)["IOTEDGE_MODULEID"] == AGENT_IDENTITY
    wait_until(lambda: identity_ids(gw) == {AGENT_IDENTITY}, timeout_s=30, what="identities")
    gw.stop()

    store = StateStore(gw.data_dir / "state")
    doc = store.get("module-identities")
    assert doc is not None
    old = {"moduleId": gw.agent, "generationId": "12345", "managedBy": "iotedge", "authType": "sas"}
    store.put("module-identities", {**doc, "identities": [*doc["identities"], old]})

    gw.start()
    wait_until(lambda: identity_ids(gw) == {AGENT_IDENTITY}, timeout_s=30, what="old id gone")
    wait_until(
        lambda: gw.container_of(gw.agent) != first, timeout_s=60, what="the agent made again"
    )
    assert agent_env(gw)["IOTEDGE_MODULEID"] == AGENT_IDENTITY
    assert "acts as its IoT Edge one" in gw.log
    assert json.dumps(old) not in json.dumps(store.get("module-identities"))
