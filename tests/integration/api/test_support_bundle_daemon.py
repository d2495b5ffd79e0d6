"""`GET /systeminfo/supportbundle` from `edgekeeper run` on the session's dockerd, fetched as
edgeAgent's UploadSupportBundle does (its query, `Accept: application/zip`, one connection): a zip
holding what the module and the agent wrote, the agent's and edgeHub's logs only when
edge_runtime_only is asked, and no registry password of the agent's."""

from __future__ import annotations

import io
import json
import uuid
import zipfile

import pytest

from tests.peers.edgeagent import NEWEST, EdgeAgent, module_spec
from tests.peers.waiting import wait_until

pytestmark = pytest.mark.docker

AGENT_PASSWORD = "agent-registry-pass-support-bundle"
SPEAKER = (
    'trap "exit 0" TERM; echo "bundle-out-$MARK"; echo "bundle-err-$MARK" >&2; '
    "while true; do sleep 1; done"
)


def parts_of(body: bytes) -> dict[str, str]:
    assert body[:4] == b"PK\x03\x04", body[:200]
    with zipfile.ZipFile(io.BytesIO(body)) as bundle:
        assert bundle.testzip() is None
        return {name: bundle.read(name).decode() for name in bundle.namelist()}


def test_the_bundle_holds_what_the_modules_wrote(gateway, client_image) -> None:
    mark = uuid.uuid4().hex[:8]
    agent_options = {
        "Cmd": ["sh", "-c", f'echo "agent-out-{mark}"; exec sleep 3600'],
        "StopTimeout": 1,
        "HostConfig": {"NetworkMode": "none"},
    }
    gw = gateway(
        "[agent.config.auth]\n"
        'serveraddress = "registry.invalid"\nusername = "agentuser"\n'
        f'password = "{AGENT_PASSWORD}"\n',
        agent_options=agent_options,
        start=False,
    )
    # Docker's own "none" network: no bridge to make, whatever address pools the host has left.
    drop_in = gw.config.parent / "config.d"
    drop_in.mkdir()
    (drop_in / "network.toml").write_text('[runtime]\nnetwork = "none"\n')
    gw.start()
    agent = EdgeAgent(gw.management_socket, NEWEST, timeout_s=120)
    name = f"speaker{mark}"
    options = {
        "Cmd": ["sh", "-c", SPEAKER],
        "Env": [f"MARK={mark}"],
        "StopTimeout": 1,
        "HostConfig": {"NetworkMode": "none"},
    }
    agent.deploy(module_spec(name, client_image, options, NEWEST))
    gw.container_of(name)

    def fetched() -> dict[str, str] | None:
        answer = agent.support_bundle(
            since="10m", until="0m", iothub_hostname="hub.invalid", edge_runtime_only=False
        )
        assert answer.status == 200, (answer.status, answer.text()[:300])
        parts = parts_of(answer.body)
        found = parts.get(f"logs/{name}_log.txt", "")
        return parts if f"bundle-out-{mark}" in found and f"bundle-err-{mark}" in found else None

    parts = wait_until(fetched, timeout_s=30, what=f"{name}'s output in the bundle")
    assert f"agent-out-{mark}" in parts[f"logs/{gw.agent}_log.txt"]
    listed = {module["name"] for module in json.loads(parts["modules.json"])["modules"]}
    assert {name, gw.agent} <= listed
    manifest = json.loads(parts["bundle.json"])
    assert manifest["request"]["iothub_hostname"] == "hub.invalid"
    assert manifest["request"]["until"] is None  # edgeAgent sent since's value as until
    assert json.loads(parts["engine.json"])["version"]
    assert parts["logs/edgekeeper.txt"].strip(), "the daemon's own log lines are missing"
    assert json.loads(parts["config.json"])["agent"]["config"]["auth"]["password"] == "<redacted>"
    for part, text in parts.items():
        assert AGENT_PASSWORD not in text, f"the agent's registry password is in {part}"

    runtime_only = agent.support_bundle(since="10m", edge_runtime_only=True)
    only = parts_of(runtime_only.body)
    assert f"logs/{gw.agent}_log.txt" in only
    assert f"logs/{name}_log.txt" not in only
    assert json.loads(only["bundle.json"])["request"]["edge_runtime_only"] is True
