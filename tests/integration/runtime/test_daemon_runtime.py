"""The runtime through a real `edgekeeper run`: deployments, the management API on its unix
socket (bad input, log streaming), the agent watchdog after `docker kill`, and adoption of every
container after the daemon is killed with SIGKILL and started again."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
import uuid

import pytest

from firmware.errors import BadRequest, Conflict, NotFound, Unavailable
from tests.integration.runtime.running_daemon import DaemonProcess, write_config
from tests.peers.waiting import wait_until

pytestmark = pytest.mark.docker

OWNER = "net.edgekeeper.owner=edgekeeper"


def wait_for(check, within=40.0, what="condition"):
    return wait_until(check, timeout_s=within, what=what, interval_s=0.2)


def statuses(daemon):
    answer = daemon.request("GET", "/modules").json()
    return {m["name"]: m for m in answer["modules"]}


def all_running(daemon, names):
    def check():
        found = statuses(daemon)
        ok = all(
            found.get(n, {}).get("status", {}).get("runtimeStatus", {}).get("status") == "running"
            for n in names
        )
        return found if ok else None

    return check


def owned_containers(dockerd):
    listing = dockerd.docker(
        "ps", "-a", "--filter", f"label={OWNER}", "--format", "{{.ID}} {{.Names}}"
    )
    return sorted(line.split() for line in listing.stdout.splitlines())


def raw_request(path: str, head: str) -> bytes:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(10)
        conn.connect(path)
        conn.sendall(head.encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        return data


def test_deploy_api_watchdog_and_adoption_after_sigkill(sim_dockerd, busybox_image, tmp_path):
    tag = uuid.uuid4().hex[:6]
    agent, ticker, sleeper = f"agent-{tag}", f"ticker-{tag}", f"sleeper-{tag}"
    daemon = DaemonProcess(write_config(tmp_path, str(sim_dockerd.socket), agent, busybox_image))
    options = {"StopTimeout": 1, "HostConfig": {"NetworkMode": "none"}}
    manifest = {
        "modulesContent": {
            "$edgeAgent": {
                "properties.desired": {
                    "systemModules": {"edgeAgent": {"settings": {"image": "ignored"}}},
                    "modules": {
                        ticker: {
                            "version": "1.0",
                            "type": "docker",
                            "status": "running",
                            "restartPolicy": "always",
                            "imagePullPolicy": "never",
                            "settings": {
                                "image": busybox_image,
                                "createOptions": json.dumps(
                                    {
                                        **options,
                                        "Cmd": [
                                            "sh",
                                            "-c",
                                            "i=0; while true; do echo tick $i; i=$((i+1)); "
                                            "sleep 0.3; done",
                                        ],
                                    }
                                ),
                            },
                            "env": {"GREETING": {"value": "hello"}},
                        },
                        sleeper: {
                            "imagePullPolicy": "never",
                            "settings": {
                                "image": busybox_image,
                                "createOptions": {**options, "Cmd": ["sleep", "3600"]},
                            },
                        },
                    },
                }
            }
        }
    }
    manifest_file = tmp_path / "deployment.json"
    manifest_file.write_text(json.dumps(manifest))
    daemon.start()
    try:
        wait_for(all_running(daemon, [agent]), what="the agent to run")

        dry = daemon.cli("deploy", str(manifest_file), "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"+ {ticker} ({busybox_image})" in dry.stdout
        assert f"+ {sleeper} ({busybox_image})" in dry.stdout
        assert "dry run, nothing applied" in dry.stdout
        assert "skipped modulesContent.$edgeAgent.properties.desired.systemModules.edgeAgent" in (
            dry.stdout
        )
        assert set(statuses(daemon)) == {agent}

        applied = daemon.cli("deploy", str(manifest_file))
        assert applied.returncode == 0, applied.stderr
        assert "2 change(s) applied" in applied.stdout
        found = wait_for(all_running(daemon, [agent, ticker, sleeper]), what="modules to run")
        assert {"key": "GREETING", "value": "hello"} in found[ticker]["config"]["env"]
        listing = daemon.cli("list")
        assert listing.returncode == 0, listing.stderr
        rows = {line.split()[0]: line.split() for line in listing.stdout.splitlines()[1:]}
        assert rows[ticker][1] == "running" and busybox_image in rows[ticker]
        again = daemon.cli("deploy", str(manifest_file), "--dry-run")
        assert "no changes" in again.stdout

        # a bad manifest names the file and the field, and changes nothing
        broken = json.loads(json.dumps(manifest))
        modules = broken["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]
        del modules[sleeper]["settings"]["image"]
        bad_file = tmp_path / "bad.json"
        bad_file.write_text(json.dumps(broken))
        refused = daemon.cli("deploy", str(bad_file))
        assert refused.returncode == 1
        assert str(bad_file) in refused.stderr
        assert f"modules.{sleeper}.settings.image" in refused.stderr

        # log streaming with follow: new lines arrive while the request is open
        async def follow():
            seen = b""
            stream = daemon.client().stream(
                "GET", f"/modules/{ticker}/logs", {"follow": "true", "tail": "1", "format": "text"}
            )
            async for chunk in stream:
                seen += chunk
                if seen.count(b"tick") >= 4:
                    await stream.aclose()
                    return seen.decode()
            raise AssertionError(f"log stream ended: {seen!r}")

        text = asyncio.run(asyncio.wait_for(follow(), 20))
        numbers = [int(line.split()[1]) for line in text.splitlines() if line.startswith("tick")]
        assert numbers == sorted(numbers) and len(set(numbers)) >= 4
        tail = daemon.cli("logs", ticker, "--tail", "2")
        assert tail.returncode == 0, tail.stderr
        assert len(tail.stdout.splitlines()) == 2

        follower = daemon.cli_process("logs", ticker, "-f", "--tail", "1")
        try:
            seen = [follower.stdout.readline() for _ in range(3)]
            assert all(line.startswith("tick ") for line in seen), seen
            follower.send_signal(signal.SIGINT)  # Ctrl-C ends the follow quietly
            assert follower.wait(timeout=10) == 130
        finally:
            follower.kill()
            follower.communicate()

        # bad input on the real socket: 4xx with a message that says what was wrong
        def refused_with(kind, method, path, body=None, query=None):
            with pytest.raises(kind) as caught:
                daemon.request(method, path, query, body)
            return caught.value.message

        assert "not valid JSON" in refused_with(BadRequest, "POST", "/modules", b"{bad")
        assert "no module named 'nope'" in refused_with(NotFound, "GET", "/modules/nope")
        assert "settings.image" in refused_with(
            BadRequest, "POST", "/modules", {"name": "x", "config": {"settings": {}}}
        )
        assert "path names module" in refused_with(
            BadRequest,
            "PUT",
            f"/modules/{sleeper}",
            {"name": "other", "config": {"settings": {"image": busybox_image}}},
        )
        assert "already exists" in refused_with(
            Conflict,
            "POST",
            "/modules",
            {"name": sleeper, "config": {"settings": {"image": busybox_image}}},
        )
        assert "dry-run" in refused_with(
            BadRequest, "POST", "/deployments", {"modules": {}}, {"dry-run": "maybe"}
        )
        assert "is the agent" in refused_with(Conflict, "POST", f"/modules/{agent}/stop")
        # no cloud identity ([provisioning] source = "none"): reprovisioning keeps the local one
        local = daemon.request("POST", "/device/reprovision", None, None).json()
        assert local == {"hub": "", "deviceId": local["deviceId"]} and local["deviceId"]
        oversize = raw_request(
            str(daemon.socket),
            "POST /modules?api-version=2020-07-07 HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n",
        )
        assert oversize.startswith(b"HTTP/1.1 413"), oversize[:200]
        assert b'"message"' in oversize

        # docker kill of the agent: the watchdog starts it again
        before = statuses(daemon)[agent]["status"]["startTime"]
        agent_id = statuses(daemon)[agent]["id"]
        assert sim_dockerd.docker("kill", agent_id).returncode == 0
        wait_for(
            lambda: (
                all_running(daemon, [agent])()
                and statuses(daemon)[agent]["status"]["startTime"] != before
            ),
            within=30,
            what="the watchdog to restart the agent",
        )

        # SIGKILL the daemon and start it again: every container is adopted, none recreated
        containers = owned_containers(sim_dockerd)
        assert len(containers) == 3, containers
        daemon.kill()
        daemon.start()
        wait_for(all_running(daemon, [agent, ticker, sleeper]), what="modules after restart")
        # Time passing is the subject here: two more seconds of reconciling create no duplicate.
        time.sleep(2)
        assert owned_containers(sim_dockerd) == containers

        status = daemon.cli("system", "status")
        assert status.returncode == 0, status.stderr
        assert "container engine: reachable" in status.stdout
        assert "modules: 3 (3 running)" in status.stdout
        assert "degraded: no" in status.stdout
        resources = daemon.request("GET", "/systeminfo/resources").json()
        usage = {m["name"]: m for m in resources["modules"]}
        assert set(usage) == {agent, ticker, sleeper}
        assert usage[ticker]["used_memory"] > 0 and usage[ticker]["used_cpu"] >= 0
        assert resources["host_uptime"] > 0 and resources["total_ram"] > resources["used_ram"] > 0
        info = daemon.request("GET", "/systeminfo").json()
        assert info["osType"] == "linux" and info["server_version"]
        journal = daemon.cli("system", "logs", "--lines", "500")
        assert "supervising modules" in journal.stdout

        assert daemon.request("DELETE", f"/modules/{sleeper}").status == 204
        wait_for(
            lambda: len(owned_containers(sim_dockerd)) == 2, what="the deleted module's container"
        )
        assert daemon.stop() == 0
    finally:
        daemon.stop()
        for container_id, _name in owned_containers(sim_dockerd):
            sim_dockerd.docker("rm", "-f", container_id)


def test_daemon_runs_without_an_engine_and_says_so(busybox_image, tmp_path):
    missing = tmp_path / "no-docker.sock"
    daemon = DaemonProcess(write_config(tmp_path, str(missing), "agent-x", busybox_image))
    daemon.start()
    try:
        with pytest.raises(Unavailable) as caught:
            daemon.request("GET", "/modules")
        assert str(missing) in caught.value.message
        status = daemon.cli("system", "status")
        assert status.returncode == 0, status.stderr
        assert f"container engine: UNAVAILABLE at {missing}" in status.stdout
        listing = daemon.cli("list")
        assert listing.returncode == 1
        assert "cannot be reached" in listing.stderr
        # desired state can still be changed offline; it is carried out once the engine is back
        created = daemon.request(
            "POST", "/modules", body={"name": "later", "config": {"settings": {"image": "x"}}}
        )
        assert created.status == 201
        assert created.json()["status"]["runtimeStatus"]["status"] == "unknown"
        assert daemon.stop() == 0
    finally:
        daemon.stop()
