"""Threat: a client floods the daemon's log (and its flash) with tracebacks, or ties up the parser,
by sending bodies the JSON parser chokes on: a 5,000-digit integer, nesting 100,000 deep, NaN.

Controls: `ApiRequest.json()` bounds nesting before parsing and integers while parsing, and turns
every failure into a 400 naming it; a traceback is logged only for a genuine internal error (and
once a minute per place). The check runs against the real daemon: the pathological bodies on a
management and a workload route, then a hypothesis fuzz of arbitrary bodies on every registered
route, each on a socket that serves it. No answer may be a 500 and the log must hold no
traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.peers.gateway import REPO

pytestmark = pytest.mark.docker

# Every route the daemon registers, as (method, pattern, listener kinds), from the wiring itself.
ROUTE_PROBE = """
import io, json, sys, tempfile
from firmware.config.schema import Config, Console
from firmware.daemon import app
from firmware.daemon.lock import InstanceLock
from firmware.daemon.logs import LogControl
from firmware.daemon.status import DaemonStatus
from firmware.store.state import StateStore
root = tempfile.mkdtemp()
config = Config(hostname="gw", console=Console("none"))
daemon = app.Daemon(None, None, config, LogControl(stream=io.StringIO()),
                    InstanceLock(root), StateStore(root), (False, False))
ctx = daemon._context()
app.Wiring(ctx).register_routes(DaemonStatus(ctx, daemon.state))
print(json.dumps([[r.method, r.pattern, sorted(r.listeners)] for r in ctx.router.routes()]))
"""

HUGE_INTEGER = b'{"keyId": "primary", "algo": "HMACSHA256", "data": ' + b"7" * 5000 + b"}"
DEEP_NESTING = b"[" * 100_000 + b"]" * 100_000
PATHOLOGICAL = [
    HUGE_INTEGER,
    DEEP_NESTING,
    b"[" * 100_000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b'{"level": NaN}',
    b'{"level": "\xff"}',
    b"\x00" * 64,
]
FIELDS = [
    "keyId",
    "algo",
    "data",
    "plaintext",
    "ciphertext",
    "initializationVector",
    "commonName",
    "expiration",
    "moduleId",
    "managedBy",
    "generationId",
    "name",
    "type",
    "config",
    "settings",
    "image",
    "createOptions",
    "modulesContent",
    "level",
    "status",
]
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), values, max_size=5).map(
        lambda document: json.dumps(document).encode()
    ),
    values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=200),
    st.sampled_from(PATHOLOGICAL),
)


def registered_routes() -> list[tuple[str, str, list[str]]]:
    done = subprocess.run(
        [sys.executable, "-c", ROUTE_PROBE],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    return [tuple(route) for route in json.loads(done.stdout)]


def status_of(answer: bytes) -> int:
    line = answer.split(b"\r\n", 1)[0].split()
    assert len(line) >= 2 and line[0] == b"HTTP/1.1", answer[:200]
    return int(line[1])


def agent_generation(running) -> str:
    env = running.module_exec(running.agent, "env").stdout.splitlines()
    (line,) = [entry for entry in env if entry.startswith("IOTEDGE_MODULEGENERATIONID=")]
    return line.partition("=")[2]


def test_pathological_bodies_are_400_and_log_no_traceback(gateway) -> None:
    running = gateway()
    genid = agent_generation(running)
    workload = running.run_dir / "mnt" / running.agent / "workload.sock"
    sign = f"/modules/%24edgeAgent/genid/{genid}/sign"
    for body in (HUGE_INTEGER, DEEP_NESTING):
        assert status_of(running.raw("POST", sign, body, socket=workload)) == 400
        assert status_of(running.raw("POST", "/modules", body)) == 400
        assert status_of(running.raw("PUT", "/daemon/log-level", body)) == 400
    answer = running.raw("POST", sign, DEEP_NESTING, socket=workload)
    assert b"nested more than 64 levels deep" in answer
    answer = running.raw("POST", sign, HUGE_INTEGER, socket=workload)
    assert b"an integer has 5000 digits" in answer
    assert "Traceback" not in running.log
    assert "internal error" not in running.log


def test_no_body_on_any_route_is_an_internal_error(gateway) -> None:
    running = gateway()
    routes = registered_routes()
    assert {"workload", "mgmt"} <= {kind for *_, kinds in routes for kind in kinds}
    genid = agent_generation(running)
    workload = running.run_dir / "mnt" / running.agent / "workload.sock"
    statuses: list[int] = []

    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(route=st.sampled_from(routes), body=bodies)
    def check(route: tuple[str, str, list[str]], body: bytes) -> None:
        method, pattern, kinds = route
        if "mgmt" in kinds:
            # an unknown module: nothing the fuzz sends can stop or remove a real one
            socket, path = None, pattern.replace("{name}", "ghost")
        else:
            socket = workload
            path = pattern.replace("{name}", "%24edgeAgent").replace("{genid}", genid)
        status = status_of(running.raw(method, path, body, socket=socket))
        statuses.append(status)
        assert status != 500, (method, path, body[:200])

    check()
    assert any(400 <= status < 500 for status in statuses)
    assert any(status < 300 for status in statuses)
    assert running.process is not None and running.process.poll() is None, "the daemon died"
    assert "Traceback" not in running.log
    assert "internal error" not in running.log
