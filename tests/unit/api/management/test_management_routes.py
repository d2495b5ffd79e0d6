"""Management API routes in-process: IoT Edge's JSON shapes, module states, deployments, and
4xx/5xx answers that name what was wrong. The engine is a small in-memory stand-in; the same
routes run against a real dockerd in tests/integration/runtime."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from firmware.api import versions
from firmware.api.management import register_routes
from firmware.api.model import ApiRequest
from firmware.api.router import Router
from firmware.runtime.backoff import BackoffPolicy, RestartRecord
from firmware.runtime.desired import DesiredModules
from firmware.runtime.engine import ContainerSummary, EngineVersion, RuntimeUnavailable
from firmware.runtime.logstream import LogFrame, Stream
from firmware.runtime.reconciler import Reconciler
from firmware.runtime.spec import HASH_LABEL, MODULE_LABEL, OWNER_LABEL, ModuleSpec
from firmware.store.state import StateStore

NEVER = "0001-01-01T00:00:00Z"


class FakeEngine:
    socket_path = "/run/fake-docker.sock"

    def __init__(self) -> None:
        self.containers: dict[str, tuple[ContainerSummary, dict]] = {}
        self.down = False

    def add(self, spec: ModuleSpec, state: dict) -> None:
        cid = f"id-{spec.name}"
        labels = {OWNER_LABEL: "edgekeeper", MODULE_LABEL: spec.name, HASH_LABEL: spec.spec_hash()}
        summary = ContainerSummary(cid, spec.name, spec.image, state["Status"], "", labels, 0)
        self.containers[cid] = (summary, {"Id": cid, "State": state})

    def _check(self) -> None:
        if self.down:
            raise RuntimeUnavailable(
                f"the container engine at {self.socket_path} cannot be reached"
            )

    async def list_containers(self, labels=None):
        self._check()
        return [summary for summary, _ in self.containers.values()]

    async def inspect(self, cid):
        self._check()
        return self.containers[cid][1]

    async def version(self):
        self._check()
        return EngineVersion("24.0.5", "1.43", "linux", "amd64")

    async def logs(self, cid, **options):
        self.log_options = options
        yield LogFrame(Stream.STDOUT, b"one\ntwo\n")
        yield LogFrame(Stream.STDERR, b"oops\n")


def request(router, method, path, body=None, **query):
    payload = (
        body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    )
    req = ApiRequest(method, path, query={"api-version": versions.LATEST, **query}, body=payload)
    return asyncio.run(router.dispatch(req))


@pytest.fixture
def setup(tmp_path):
    store = StateStore(tmp_path)
    store.ensure()
    engine = FakeEngine()
    agent = ModuleSpec(name="edgeAgent", image="agent:1")
    reconciler = Reconciler(engine, DesiredModules(store), agent=agent, policy=BackoffPolicy())
    reconciler._loaded.set()  # as after `run` loaded the (empty) stored modules
    runtime = SimpleNamespace(current=lambda: reconciler)
    config = SimpleNamespace(
        agent=SimpleNamespace(name="edgeAgent"),
        provisioning=SimpleNamespace(source="none"),
        auto_reprovisioning_mode="Dynamic",
    )
    ctx = SimpleNamespace(
        services=SimpleNamespace(get=lambda name: runtime if name == "runtime" else None),
        config=config,
        logs=None,
        started_at=0.0,
    )
    router = Router()
    register_routes(router, ctx)
    register_routes(router, ctx)  # a restarted service registers nothing twice
    return router, reconciler, engine


def module_body(name, image="example/x:1", **extra):
    return {"name": name, "type": "docker", "config": {"settings": {"image": image}}, **extra}


def test_module_states_in_iot_edge_shape(setup):
    router, reconciler, engine = setup
    specs = {
        "up": ModuleSpec("up", "img:1", env={"A": "1"}),
        "crashed": ModuleSpec("crashed", "img:1"),
        "waiting": ModuleSpec("waiting", "img:1"),
        "nothing": ModuleSpec("nothing", "img:1"),
    }
    asyncio.run(reconciler.apply(specs))
    engine.add(
        specs["up"],
        {
            "Status": "running",
            "Running": True,
            "StartedAt": "2026-11-23T10:00:00Z",
            "FinishedAt": NEVER,
        },
    )
    exited = {
        "Status": "exited",
        "Running": False,
        "ExitCode": 3,
        "StartedAt": "2026-11-23T10:00:00Z",
        "FinishedAt": "2026-11-23T10:00:05Z",
    }
    engine.add(specs["crashed"], exited)
    engine.add(specs["waiting"], exited)
    record = RestartRecord()
    record.stopped(reconciler._clock(), BackoffPolicy())
    reconciler._records["waiting"] = record

    answer = request(router, "GET", "/modules")
    assert answer.status == 200
    modules = {m["name"]: m for m in answer.json()["modules"]}
    assert sorted(modules) == ["crashed", "edgeAgent", "nothing", "up", "waiting"]
    up = modules["up"]
    assert up["id"] == "id-up" and up["type"] == "docker"
    assert up["config"] == {
        "settings": {"image": "img:1", "createOptions": {}},
        "env": [{"key": "A", "value": "1"}],
    }
    assert up["status"]["startTime"] == "2026-11-23T10:00:00Z"
    assert up["status"]["runtimeStatus"]["status"] == "running"
    assert "exitStatus" not in up["status"]
    crashed = modules["crashed"]["status"]
    assert crashed["runtimeStatus"]["status"] == "failed"
    assert crashed["exitStatus"] == {"exitTime": "2026-11-23T10:00:05Z", "statusCode": "3"}
    waiting = modules["waiting"]
    assert waiting["status"]["runtimeStatus"]["status"] == "backoff"
    assert "next start in 10 s" in waiting["status"]["runtimeStatus"]["description"]
    assert waiting["restartCount"] == 1
    assert modules["nothing"]["status"]["runtimeStatus"] == {
        "status": "unknown",
        "description": "no container yet",
    }
    assert modules["edgeAgent"]["agent"] is True

    one = request(router, "GET", "/modules/up")
    assert one.status == 200 and one.json()["name"] == "up"


def test_create_update_delete_start_stop(setup):
    router, reconciler, _ = setup
    created = request(router, "POST", "/modules", module_body("m"))
    assert created.status == 201
    assert created.json()["status"]["runtimeStatus"]["status"] == "unknown"
    assert reconciler.spec("m").image == "example/x:1"
    updated = request(router, "PUT", "/modules/m", module_body("m", "example/x:2"))
    assert updated.status == 200 and reconciler.spec("m").image == "example/x:2"
    assert request(router, "POST", "/modules/m/stop").status == 204
    assert reconciler.spec("m").status.value == "stopped"
    assert request(router, "POST", "/modules/m/start").status == 204
    assert reconciler.spec("m").status.value == "running"
    assert request(router, "DELETE", "/modules/m").status == 204
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
        ("POST", "/device/reprovision", None, {}, 501, "reprovisioning"),
        ("GET", "/modules/edgeAgent/logs", None, {"tail": "ten"}, 400, "'tail'"),
        ("GET", "/modules/edgeAgent/logs", None, {"since": "yesterday"}, 400, "'since'"),
        ("GET", "/modules/edgeAgent/logs", None, {"follow": "yes"}, 400, "'follow'"),
        ("GET", "/modules/edgeAgent/logs", None, {"follow": "true", "format": "json"}, 400, "json"),
        ("GET", "/system/logs", None, {"lines": "-1"}, 400, "'lines'"),
    ],
)
def test_bad_requests_get_4xx_with_a_message(setup, method, path, body, query, status, words):
    router, _, _ = setup
    answer = request(router, method, path, body, **query)
    assert answer.status == status, answer.json()
    assert words in answer.json()["message"]


def test_deployment_dry_run_then_apply(setup):
    router, reconciler, _ = setup
    doc = {
        "modules": {"a": {"settings": {"image": "x:1"}}, "edgeAgent": {"settings": {"image": "y"}}}
    }
    dry = request(router, "POST", "/deployments", doc, **{"dry-run": "true"})
    assert dry.status == 200
    assert dry.json() == {
        "dryRun": True,
        "changes": [
            {"name": "a", "change": "add", "image": "x:1", "details": [], "recreate": False}
        ],
        "skipped": ["modules.edgeAgent"],
    }
    assert "a" not in reconciler.modules()
    applied = request(router, "POST", "/deployments", doc)
    assert applied.json()["dryRun"] is False and "a" in reconciler.modules()
    doc["modules"]["a"]["settings"]["image"] = "x:2"
    changed = request(router, "POST", "/deployments", doc).json()["changes"]
    assert changed[0]["details"] == ["image: x:1 -> x:2"] and changed[0]["recreate"] is True


def test_engine_down_answers_503_but_desired_state_still_changes(setup):
    router, _, engine = setup
    engine.down = True
    answer = request(router, "GET", "/modules")
    assert answer.status == 503
    assert "/run/fake-docker.sock cannot be reached" in answer.json()["message"]
    assert request(router, "POST", "/modules", module_body("later")).status == 201
    status = request(router, "GET", "/system/status").json()
    assert status["engine"]["reachable"] is False
    assert status["modules"] == {"total": 2}


def test_logs_as_text_stream_and_as_json(setup):
    router, _, engine = setup
    engine.add(ModuleSpec("edgeAgent", "agent:1"), {"Status": "running", "Running": True})
    answer = request(router, "GET", "/modules/edgeAgent/logs", tail="5", since="1700000000")
    assert answer.stream is not None
    assert answer.content_type().startswith("text/plain")

    async def collect():
        return b"".join([chunk async for chunk in answer.stream])

    assert asyncio.run(collect()) == b"one\ntwo\noops\n"
    assert engine.log_options == {
        "tail": 5,
        "since": 1700000000,
        "timestamps": False,
        "follow": False,
    }
    lines = request(router, "GET", "/modules/edgeAgent/logs", format="json").json()["lines"]
    assert lines == [
        {"stream": "stdout", "text": "one"},
        {"stream": "stdout", "text": "two"},
        {"stream": "stderr", "text": "oops"},
    ]


def test_systeminfo_fields(setup):
    router, _, _ = setup
    info = request(router, "GET", "/systeminfo").json()
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
    assert info["server_version"] == "24.0.5" and info["provisioning"]["type"] == "none"


def test_container_usage_from_stats():
    from firmware.api.management.system import container_usage

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
    assert container_usage(stats) == {
        "used_memory": 8_000_000,
        "memory_limit": 1_000_000_000,
        "used_cpu": 40.0,
    }


def test_log_ring_keeps_the_last_lines():
    from firmware.api.management.journal import LogRing

    ring = LogRing(size=3)
    for n in range(5):
        ring(f"line {n}\n")
    assert ring.lines() == ["line 2", "line 3", "line 4"]
    assert ring.lines(1) == ["line 4"] and ring.lines(0) == []


def test_console_commands_in_process(setup):
    from firmware.cli.commands import CONSOLE, InProcessInvoker, execute

    router, _, engine = setup
    engine.add(ModuleSpec("edgeAgent", "agent:1"), {"Status": "running", "Running": True})
    invoker = InProcessInvoker(router)

    def console(*words):
        return asyncio.run(execute(list(words), invoker, surface=CONSOLE))

    listing = console("list")
    assert listing.exit_code == 0
    assert listing.text.splitlines()[1].split()[:2] == ["edgeAgent", "running"]
    assert console("logs", "edgeAgent", "--tail", "5").text == "one\ntwo\noops"
    assert engine.log_options["tail"] == 5
    restart = console("restart", "nope")
    assert (restart.exit_code, restart.text) == (
        1,
        "error: no module named 'nope' (`edgekeeper list` shows the modules this gateway runs)",
    )
    assert "-f" not in console("help", "logs").text  # the console shows the last lines only
    assert console("deploy", "x.json").exit_code == 2  # CLI only: it reads a local file
    status = console("system", "status")
    assert status.text.startswith("container engine: reachable at /run/fake-docker.sock")
