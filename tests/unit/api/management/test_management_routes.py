"""Management API routes in-process: IoT Edge's JSON shapes, module states, deployments, and
4xx/5xx answers that name what was wrong. A reconciler supervises the in-memory `FakeEngine`
(held to dockerd's behaviour by tests/integration/runtime/test_container_runtime.py); the same
routes run against a real dockerd in tests/integration/runtime."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from firmware.api import versions
from firmware.api.management import deployments, logs, modules, system
from firmware.api.management.journal import LogRing
from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import Router
from firmware.errors import Unavailable
from firmware.executor import BoundedExecutor
from firmware.runtime.backoff import BackoffPolicy
from firmware.runtime.desired import DesiredModules
from firmware.runtime.logstream import LogFrame, Stream
from firmware.runtime.reconciler import Reconciler
from firmware.runtime.spec import DesiredStatus, ModuleSpec, PullPolicy, RestartPolicy
from firmware.store.state import StateStore
from tests.peers.fake_engine import FakeEngine, Program
from tests.peers.waiting import wait_until_async
from tests.unit.runtime.supervising import supervising

AGENT_CMD = ["agent"]
SLEEP = ["sleep", "300"]
CRASH = ["sh", "-c", "exit 3"]


class Clock:
    """The reconciler's monotonic clock, which a test may move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@dataclass
class Daemon:
    router: Router
    reconciler: Reconciler
    engine: FakeEngine
    clock: Clock

    async def call(self, method: str, path: str, body: object = None, **query: str) -> ApiResponse:
        payload = (
            body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        )
        query = {"api-version": versions.LATEST, **query}
        return await self.router.dispatch(ApiRequest(method, path, query=query, body=payload))


@pytest.fixture
def daemon(tmp_path: Any) -> Daemon:
    store = StateStore(tmp_path)
    store.ensure()
    engine = FakeEngine()
    for image in ("agent:1", "img:1", "example/x:1", "example/x:2", "x:1", "x:2"):
        engine.add_image(image)
    output = (LogFrame(Stream.STDOUT, b"one\ntwo\n"), LogFrame(Stream.STDERR, b"oops\n"))
    engine.program(AGENT_CMD, Program(output))
    engine.program(CRASH, Program(exit_code=3))
    agent = ModuleSpec(
        name="edgeAgent",
        image="agent:1",
        create_options={"Cmd": AGENT_CMD},
        pull_policy=PullPolicy.NEVER,
    )
    clock = Clock()
    reconciler = Reconciler(
        engine, DesiredModules(store), agent=agent, policy=BackoffPolicy(), clock=clock
    )
    config = SimpleNamespace(
        agent=SimpleNamespace(name="edgeAgent"),
        provisioning=SimpleNamespace(source="none"),
        reprovisioning_mode=lambda: "Dynamic",
    )
    router = Router()
    table = [
        *modules.routes(lambda: reconciler),
        *logs.routes(lambda: reconciler),
        *system.routes(
            lambda: config,
            lambda: reconciler,
            no_identity_service,
            LogRing(),
            0.0,
            BoundedExecutor().run,
        ),
        *deployments.routes(lambda: config, lambda: reconciler),
    ]
    for method, pattern, handler in table:
        router.add(method, pattern, handler)
    return Daemon(router, reconciler, engine, clock)


def no_identity_service() -> Any:
    raise Unavailable("the identity service is not running", hint="check the daemon log")


def supervised(scenario: Callable[[Daemon], Awaitable[None]]) -> Callable[[Daemon], None]:
    """Run `scenario(daemon)` while the reconciler supervises the fake engine."""

    def test(daemon: Daemon) -> None:
        async def run() -> None:
            async with supervising(daemon.reconciler):
                await asyncio.wait_for(scenario(daemon), 30)

        asyncio.run(run())

    test.__name__ = scenario.__name__
    return test


def module_body(name: str, image: str = "example/x:1", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "docker", "config": {"settings": {"image": image}}, **extra}


def spec(name: str, command: list[str], **kw: Any) -> ModuleSpec:
    return ModuleSpec(name, "img:1", create_options={"Cmd": command}, **kw)


async def runtime_status(daemon: Daemon, name: str) -> str:
    answer = await daemon.call("GET", f"/modules/{name}")
    return str(answer.json()["status"]["runtimeStatus"]["status"])


@supervised
async def test_module_states_in_iot_edge_shape(daemon: Daemon) -> None:
    up = spec("up", SLEEP, env={"A": "1"})
    crashed = spec("crashed", CRASH, restart_policy=RestartPolicy.NEVER)
    waiting = spec("waiting", CRASH, restart_policy=RestartPolicy.ALWAYS)
    nothing = ModuleSpec("nothing", "missing:1")  # never pullable here
    await daemon.reconciler.apply({"up": up, "crashed": crashed, "nothing": nothing})

    async def settled() -> bool:
        return await runtime_status(daemon, "crashed") == "backoff"

    await wait_until_async(settled, timeout_s=10, what="the first crash")
    daemon.clock.offset += BackoffPolicy().initial + 1  # its back-off is over: it failed
    everything = {"up": up, "crashed": crashed, "nothing": nothing, "waiting": waiting}
    await daemon.reconciler.apply(everything)

    async def all_known() -> bool:
        states = {m: await runtime_status(daemon, m) for m in ("up", "waiting", "nothing")}
        nothing_noted = (await daemon.call("GET", "/modules/nothing")).json()["status"]
        return (
            states["up"] == "running"
            and states["waiting"] == "backoff"
            and ("failed" in nothing_noted["runtimeStatus"]["description"])
        )

    await wait_until_async(all_known, timeout_s=10, what="every module's state")

    answer = await daemon.call("GET", "/modules")
    assert answer.status == 200
    found = {m["name"]: m for m in answer.json()["modules"]}
    assert list(found) == ["crashed", "edgeAgent", "nothing", "up", "waiting"]
    running = found["up"]
    container = await daemon.engine.inspect(running["id"])
    assert running["type"] == "docker" and running["id"] == container["Id"]
    assert running["config"] == {
        "settings": {
            "image": "img:1",
            "imageHash": container["Image"],  # edgelet's settings carry it; edgeAgent reports it
            "createOptions": {"Cmd": SLEEP},
        },
        "env": [{"key": "A", "value": "1"}],
    }
    assert running["status"] == {
        "runtimeStatus": {"status": "running", "description": ""},
        "startTime": container["State"]["StartedAt"],
    }
    failed = found["crashed"]["status"]
    finished = (await daemon.engine.inspect(found["crashed"]["id"]))["State"]["FinishedAt"]
    assert failed["runtimeStatus"] == {"status": "failed", "description": "exited with code 3"}
    assert failed["exitStatus"] == {"exitTime": finished, "statusCode": "3"}
    backoff = found["waiting"]
    assert backoff["status"]["runtimeStatus"] == {
        "status": "backoff",
        "description": "exited with code 3; next start in 10 s",
    }
    assert backoff["restartCount"] == 1 and found["crashed"]["restartCount"] == 1
    absent = found["nothing"]
    assert absent["id"] == "" and absent["status"]["runtimeStatus"]["status"] == "unknown"
    assert absent["status"]["runtimeStatus"]["description"].startswith("pulling missing:1 failed")
    assert found["edgeAgent"]["agent"] is True and running["agent"] is False
    assert [running[k] for k in ("restartPolicy", "desiredStatus", "imagePullPolicy")] == [
        "always",
        "running",
        "on-create",
    ]

    status = (await daemon.call("GET", "/system/status")).json()
    assert status == {
        "engine": {
            "socket": "/run/fake-docker.sock",
            "reachable": True,
            "version": "24.0.5-fake",
            "api_version": "1.43",
        },
        "modules": {"total": 5, "failed": 1, "running": 2, "unknown": 1, "backoff": 1},
        "degraded": None,
        "provisioning": {"state": "not running"},
    }
    resources = (await daemon.call("GET", "/systeminfo/resources")).json()
    assert [m["name"] for m in resources["modules"]] == ["edgeAgent", "up"]
    assert resources["modules"][0] == {
        "name": "edgeAgent",
        "used_memory": 4_194_304,
        "memory_limit": 2_147_483_648,
        "used_cpu": 2.0,
    }
    assert {"host_uptime", "process_uptime", "used_cpu", "used_ram", "disks"} <= set(resources)


@supervised
async def test_create_update_delete_start_stop(daemon: Daemon) -> None:
    reconciler = daemon.reconciler
    created = await daemon.call("POST", "/modules", module_body("m"))
    assert created.status == 201
    assert created.json()["status"] == {
        "runtimeStatus": {"status": "unknown", "description": "no container yet"}
    }
    assert created.json()["id"] == "" and reconciler.spec("m").image == "example/x:1"
    # IoT Edge's ModuleSpec has no status or restart policy: created, not started, and restarted
    # by edgeAgent alone (aziot-edged creates; edgeAgent's planner sends start)
    assert reconciler.spec("m").status is DesiredStatus.STOPPED
    assert reconciler.spec("m").restart_policy is RestartPolicy.NEVER
    updated = await daemon.call("PUT", "/modules/m", module_body("m", "example/x:2"))
    assert updated.status == 200 and reconciler.spec("m").image == "example/x:2"
    assert (await daemon.call("POST", "/modules/m/stop")).status == 204
    assert reconciler.spec("m").status is DesiredStatus.STOPPED
    assert (await daemon.call("POST", "/modules/m/start")).status == 204
    assert reconciler.spec("m").status is DesiredStatus.RUNNING

    async def m_runs() -> bool:
        return await runtime_status(daemon, "m") == "running"

    await wait_until_async(m_runs, timeout_s=10, what="m's container to run")
    assert (await daemon.call("POST", "/modules/m/restart")).status == 204
    assert (await daemon.call("DELETE", "/modules/m")).status == 204
    assert "m" not in reconciler.modules()


@pytest.mark.parametrize(
    ("method", "path", "body", "query", "status", "words"),
    [
        ("POST", "/modules", b"{bad", {}, 400, "not valid JSON"),
        ("POST", "/modules", b"[1]", {}, 400, "must be a JSON object"),
        ("POST", "/modules", {"name": "x"}, {}, 400, "settings.image"),
        ("POST", "/modules", module_body("bad name"), {}, 400, "field 'name'"),
        ("POST", "/modules", module_body("edgeAgent"), {}, 409, "already exists"),
        ("GET", "/modules/nope", None, {}, 404, "no module named 'nope'"),
        ("DELETE", "/modules/nope", None, {}, 404, "no module named 'nope'"),
        ("POST", "/modules/nope/restart", None, {}, 404, "no module named 'nope'"),
        ("PUT", "/modules/edgeAgent", module_body("other"), {}, 400, "path names module"),
        ("POST", "/modules/edgeAgent/stop", None, {}, 409, "is the agent"),
        ("DELETE", "/modules/edgeAgent", None, {}, 409, "is the agent"),
        ("POST", "/deployments", {"modules": {}}, {"dry-run": "maybe"}, 400, "dry-run"),
        ("POST", "/deployments", {"mods": {}}, {}, 400, "field 'modules' is missing"),
        ("POST", "/device/reprovision", None, {}, 503, "identity service is not running"),
        ("GET", "/modules/edgeAgent/logs", None, {"tail": "ten"}, 400, "'tail'"),
        ("GET", "/modules/edgeAgent/logs", None, {"since": "yesterday"}, 400, "'since'"),
        ("GET", "/modules/edgeAgent/logs", None, {"follow": "yes"}, 400, "'follow'"),
        ("GET", "/modules/edgeAgent/logs", None, {"follow": "true", "format": "json"}, 400, "json"),
        ("GET", "/modules/nope/logs", None, {}, 404, "no module named 'nope'"),
        ("GET", "/system/logs", None, {"lines": "-1"}, 400, "'lines'"),
    ],
)
def test_bad_requests_get_4xx_with_a_message(
    daemon: Daemon,
    method: str,
    path: str,
    body: object,
    query: dict[str, str],
    status: int,
    words: str,
) -> None:
    @supervised
    async def scenario(daemon: Daemon) -> None:
        answer = await daemon.call(method, path, body, **query)
        assert answer.status == status, answer.json()
        assert words in answer.json()["message"]

    scenario(daemon)


@supervised
async def test_deployment_dry_run_then_apply(daemon: Daemon) -> None:
    doc: dict[str, Any] = {
        "modules": {"a": {"settings": {"image": "x:1"}}, "edgeAgent": {"settings": {"image": "y"}}}
    }
    dry = await daemon.call("POST", "/deployments", doc, **{"dry-run": "true"})
    assert dry.status == 200
    assert dry.json() == {
        "dryRun": True,
        "changes": [
            {"name": "a", "change": "add", "image": "x:1", "details": [], "recreate": False}
        ],
        "skipped": ["modules.edgeAgent"],
    }
    assert "a" not in daemon.reconciler.modules()
    applied = await daemon.call("POST", "/deployments", doc)
    assert applied.json()["dryRun"] is False and "a" in daemon.reconciler.modules()
    doc["modules"]["a"]["settings"]["image"] = "x:2"
    changed = (await daemon.call("POST", "/deployments", doc)).json()["changes"]
    assert changed[0]["details"] == ["image: x:1 -> x:2"] and changed[0]["recreate"] is True


@supervised
async def test_engine_down_answers_503_but_desired_state_still_changes(daemon: Daemon) -> None:
    daemon.engine.disconnect()
    answer = await daemon.call("GET", "/modules")
    assert answer.status == 503
    assert "/run/fake-docker.sock cannot be reached" in answer.json()["message"]
    later = module_body("later", status="running")
    assert (await daemon.call("POST", "/modules", later)).status == 201
    status = (await daemon.call("GET", "/system/status")).json()
    assert status["engine"] == {
        "socket": "/run/fake-docker.sock",
        "reachable": False,
        "error": "the container engine at /run/fake-docker.sock cannot be reached (connection "
        "refused) (is dockerd running? check [runtime] uri in config.toml)",
    }
    assert status["modules"] == {"total": 2}
    daemon.engine.reconnect()

    async def later_runs() -> bool:
        return await runtime_status(daemon, "later") == "running"

    await wait_until_async(later_runs, timeout_s=10, what="the module created while away")


async def _agent_running(daemon: Daemon) -> None:
    async def written() -> bool:
        found = await daemon.call("GET", "/modules/edgeAgent/logs", format="json")
        return found.status == 200 and len(found.json()["lines"]) == 3

    await wait_until_async(written, timeout_s=10, what="the agent's output")


@supervised
async def test_logs_as_text_stream_and_as_json(daemon: Daemon) -> None:
    await _agent_running(daemon)
    answer = await daemon.call(
        "GET", "/modules/edgeAgent/logs", tail="5", since="1700000000", format="text"
    )
    assert answer.stream is not None
    assert answer.content_type().startswith("text/plain")
    assert b"".join([chunk async for chunk in answer.stream]) == b"one\ntwo\noops\n"
    assert daemon.engine.log_requests[-1] == {
        "tail": 5,
        "since": 1700000000,
        "timestamps": False,
        "follow": False,
    }
    lines = (await daemon.call("GET", "/modules/edgeAgent/logs", format="json")).json()["lines"]
    assert lines == [
        {"stream": "stdout", "text": "one"},
        {"stream": "stdout", "text": "two"},
        {"stream": "stderr", "text": "oops"},
    ]


@supervised
async def test_a_client_hanging_up_ends_the_engine_stream(daemon: Daemon) -> None:
    await _agent_running(daemon)
    answer = await daemon.call("GET", "/modules/edgeAgent/logs", follow="true", format="text")
    stream = answer.stream
    assert isinstance(stream, AsyncGenerator)
    assert await anext(stream) == b"one\n"
    assert daemon.engine.following == 1
    await stream.aclose()
    assert daemon.engine.following == 0


@supervised
async def test_systeminfo_fields(daemon: Daemon) -> None:
    info = (await daemon.call("GET", "/systeminfo")).json()
    assert {
        "osType",
        "architecture",
        "version",
        "provisioning",
        "server_version",
        "kernel_version",
        "operating_system",
        "cpus",
        "virtualized",
    } <= set(info)
    assert info["server_version"] == "24.0.5-fake" and info["osType"] == "linux"
    assert info["provisioning"] == {
        "type": "none",
        "dynamicReprovisioning": True,
        "alwaysReprovisionOnStartup": False,
    }


def test_log_ring_keeps_the_last_lines() -> None:
    ring = LogRing(size=3)
    for n in range(5):
        ring(f"line {n}\n")
    assert ring.lines() == ["line 2", "line 3", "line 4"]
    assert ring.lines(1) == ["line 4"] and ring.lines(0) == []


@supervised
async def test_console_commands_in_process(daemon: Daemon) -> None:
    from firmware.cli.commands import CONSOLE, InProcessInvoker, execute

    await _agent_running(daemon)
    invoker = InProcessInvoker(daemon.router)

    async def console(*words: str) -> Any:
        return await execute(list(words), invoker, surface=CONSOLE)

    listing = await console("list")
    assert listing.exit_code == 0
    assert listing.text.splitlines()[1].split()[:2] == ["edgeAgent", "running"]
    assert (await console("logs", "edgeAgent", "--tail", "5")).text == "one\ntwo\noops"
    assert daemon.engine.log_requests[-1]["tail"] == 5
    restart = await console("restart", "nope")
    assert (restart.exit_code, restart.text) == (
        1,
        "error: no module named 'nope' (`list` shows the modules this gateway runs)",
    )
    assert "-f" in (await console("help", "logs")).text  # the console follows logs too
    relative = await console("deploy", "x.json")  # the console has no working directory
    assert relative.exit_code == 2 and "not an absolute path" in relative.text
    status = await console("system", "status")
    assert status.text.startswith("container engine: reachable at /run/fake-docker.sock")
