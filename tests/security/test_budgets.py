"""Threat: a module floods the workload API with expensive work (certificate issuance: a key pair
and a CA signature each; sign/encrypt/decrypt on the device's keys) and starves the gateway and
the other modules. Control: `[workload.budgets]`, a token bucket per module and one for all
modules, 429 with Retry-After once spent (`firmware/api/workload/ratelimit.py`).

The attackers burst from inside their containers: one `sh` loop of `uds_http` calls per burst.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.docker

API = "2020-10-10"
SOCKET = "/var/run/iotedge/workload.sock"
BUDGETS = """[workload.budgets]
certificates_per_module = 3
certificates = 5
key_operations_per_module = 5
key_operations = 1000
"""
EXPIRATION = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def generation(running, module: str) -> str:
    """The generation id the module was given (IOTEDGE_MODULEGENERATIONID)."""
    env = running.module_exec(module, "env").stdout.splitlines()
    prefix = "IOTEDGE_MODULEGENERATIONID="
    return next(line.removeprefix(prefix) for line in env if line.startswith(prefix))


def burst(running, module: str, count: int, operation: str, body: dict) -> list[int]:
    """`count` POSTs of `operation` by `module` as fast as its container can make them."""
    target = f"/modules/{module}/genid/{generation(running, module)}/{operation}?api-version={API}"
    loop = 'i=0; while [ "$i" -lt "$1" ]; do uds_http "$2" POST "$3" "$4"; i=$((i+1)); done'
    done = running.module_exec(
        module, "sh", "-c", loop, "sh", str(count), SOCKET, target, json.dumps(body)
    )
    statuses = [int(line) for line in done.stdout.splitlines() if line.isdigit()]
    assert len(statuses) == count, done
    return statuses


def server_certificates(running, module: str, count: int) -> list[int]:
    body = {"commonName": module, "expiration": EXPIRATION}
    return burst(running, module, count, "certificate/server", body)


def test_certificate_budgets_per_module_and_for_all(gateway, client_image) -> None:
    running = gateway(BUDGETS)
    for module in ("greedy", "quiet", "late"):
        running.deploy(module, client_image)

    assert server_certificates(running, "greedy", 6) == [201, 201, 201, 429, 429, 429]
    # The same socket from the host, to read the header uds_http does not print.
    socket = running.run_dir / "mnt" / "greedy" / "workload.sock"
    target = f"/modules/greedy/genid/{generation(running, 'greedy')}/certificate/server"
    body = json.dumps({"commonName": "greedy", "expiration": EXPIRATION}).encode()
    answer = running.raw("POST", target, body, socket=socket)
    head, _, text = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/1.1 429"), answer
    retry_after = next(int(line.split(":")[1]) for line in lines if line.startswith("Retry-After:"))
    assert 1 <= retry_after <= 20  # 3 a minute: one token every 20 s
    assert "certificates_per_module" in json.loads(text)["message"]

    assert server_certificates(running, "quiet", 2) == [201, 201]
    assert server_certificates(running, "late", 1) == [429]
    status, refused = running.workload(
        "late",
        "POST",
        f"/modules/late/genid/{generation(running, 'late')}/certificate/server",
        {"commonName": "late", "expiration": EXPIRATION},
    )
    assert status == 429
    assert "all modules together" in refused["message"]
    assert "[workload.budgets] certificates" in refused["message"]


def test_key_operation_budget_per_module(gateway, client_image) -> None:
    running = gateway(BUDGETS)
    running.deploy("signer", client_image)
    running.deploy("other", client_image)
    sign = {"keyId": "primary", "algo": "HMACSHA256", "data": "c2Fz"}

    statuses = burst(running, "signer", 40, "sign", sign)
    assert statuses[:5] == [200] * 5
    assert statuses.count(429) >= 20, statuses
    assert burst(running, "other", 3, "sign", sign) == [200, 200, 200]
