"""The reconciler as the admission point: refused specs never reach the store or the engine, bad
specs found in the store are shown failed and kept, and one module's failure (expected or not)
never stops the supervision of the others. Against the in-memory engine."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from firmware.errors import BadRequest, Conflict, StateError
from firmware.runtime.admission import AdmissionPolicy
from firmware.runtime.backoff import BackoffPolicy
from firmware.runtime.desired import DOCUMENT, DesiredModules
from firmware.runtime.elevation import protect
from firmware.runtime.reconciler import Reconciler
from firmware.runtime.spec import DesiredStatus, ModuleSpec, PullPolicy
from firmware.runtime.status import RuntimeStatus
from firmware.store.state import StateStore
from tests.peers.fake_engine import FakeEngine
from tests.peers.waiting import wait_until_async
from tests.unit.runtime.supervising import supervising

SLEEP = {"Cmd": ["sleep", "300"]}
STRICT = AdmissionPolicy(allow_elevated=False, protected=protect(["/etc", "/run/edgekeeper"]))
AGENT = ModuleSpec("edgeAgent", "img:1", create_options=SLEEP, pull_policy=PullPolicy.NEVER)


def spec(name: str, options: dict[str, Any] | None = None) -> ModuleSpec:
    return ModuleSpec(name, "img:1", create_options=options or SLEEP, pull_policy=PullPolicy.NEVER)


def stored(name: str, options: object, **extra: Any) -> dict[str, Any]:
    """A module document as the store keeps it (the API shape), checked by nobody."""
    settings = {"image": "img:1", "createOptions": options}
    return {
        "name": name,
        "imagePullPolicy": "never",
        "status": "running",
        "restartPolicy": "always",
        "config": {"settings": settings},
        **extra,
    }


@pytest.fixture
def engine() -> FakeEngine:
    fake = FakeEngine()
    fake.add_image("img:1")
    return fake


@pytest.fixture
def store(tmp_path) -> StateStore:
    state = StateStore(tmp_path / "state")
    state.ensure()
    return state


async def status_of(reconciler: Reconciler, name: str) -> tuple[RuntimeStatus, str]:
    (found,) = await reconciler.statuses([name])
    return found.runtime_status, found.description


async def wait_running(reconciler: Reconciler, *names: str) -> None:
    async def running() -> bool:
        found = await reconciler.statuses(list(names))
        return all(s.runtime_status is RuntimeStatus.RUNNING for s in found)

    await wait_until_async(running, timeout_s=10, what=f"{', '.join(names)} running")


def test_put_and_apply_refuse_elevation_before_anything_is_stored(engine, store) -> None:
    reconciler = Reconciler(engine, DesiredModules(store), admission=STRICT)
    privileged = spec("priv", {"HostConfig": {"Privileged": True}})

    async def scenario() -> None:
        async with supervising(reconciler):
            with pytest.raises(BadRequest) as refused:
                await reconciler.put(privileged)
            rendered = refused.value.render()
            assert "module 'priv'" in rendered
            assert "field 'settings.createOptions.HostConfig.Privileged'" in rendered
            assert "allow_elevated_docker_permissions = true" in rendered
            with pytest.raises(BadRequest, match=r"HostConfig\.Binds\[0\]"):
                await reconciler.apply({"ok": spec("ok"), "root": spec("root", _bind("/:/h"))})
            with pytest.raises(BadRequest, match=r"HostConfig\.Binds\[0\]"):
                await reconciler.apply({"root": spec("root", _bind("/:/h"))}, dry_run=True)
            assert reconciler.modules() == {}
            assert store.get(DOCUMENT) is None
            await reconciler.put(spec("fine", {"HostConfig": {"NetworkMode": "host"}}))
            await wait_running(reconciler, "fine")
            assert [c.name for c in await engine.list_containers()] == ["fine"]

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_elevation_is_admitted_by_default(engine, store) -> None:
    reconciler = Reconciler(engine, DesiredModules(store))

    async def scenario() -> None:
        async with supervising(reconciler):
            await reconciler.put(spec("priv", {**SLEEP, "HostConfig": {"Privileged": True}}))
            await wait_running(reconciler, "priv")

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_bad_stored_specs_are_shown_failed_kept_and_never_stop_the_others(engine, store) -> None:
    planted = {
        "labels": stored("labels", {"Labels": []}),
        "hostcfg": stored("hostcfg", {"HostConfig": "x"}),
        "elevated": stored("elevated", {"HostConfig": {"Privileged": True}}),
        "renamed": stored("other", SLEEP),
        "good": stored("good", SLEEP),
    }
    store.put(DOCUMENT, {"modules": planted})
    reconciler = Reconciler(engine, DesiredModules(store), agent=AGENT, admission=STRICT)

    async def scenario() -> None:
        async with supervising(reconciler):
            await wait_running(reconciler, "edgeAgent", "good")
            for name, words in (
                ("labels", "'settings.createOptions.Labels' must be an object of strings"),
                ("hostcfg", "'settings.createOptions.HostConfig' must be an object"),
                ("elevated", "'settings.createOptions.HostConfig.Privileged'"),
                ("renamed", "stored as 'renamed'"),
            ):
                state, description = await status_of(reconciler, name)
                assert state is RuntimeStatus.FAILED and words in description, description
            assert (
                "allow_elevated_docker_permissions" in (await status_of(reconciler, "elevated"))[1]
            )
            with pytest.raises(Conflict, match="is not run"):
                await reconciler.set_status("elevated", DesiredStatus.RUNNING)

            await reconciler.put(spec("later"))
            await wait_running(reconciler, "later")
            kept = store.get(DOCUMENT)["modules"]
            for name in ("labels", "hostcfg", "renamed"):  # unparsable: as they were found
                assert kept[name] == planted[name]
            for name in ("elevated", "good"):  # parsed: in the shape the API writes
                assert kept[name] == ModuleSpec.from_api(planted[name]).to_api()

            await reconciler.put(spec("labels"))
            await reconciler.delete("hostcfg")
            await wait_running(reconciler, "labels")
            kept = store.get(DOCUMENT)["modules"]
            assert sorted(kept) == ["elevated", "good", "labels", "later", "renamed"]
            assert kept["labels"] == spec("labels").to_api()
            names = sorted(c.name for c in await engine.list_containers())
            assert names == ["edgeAgent", "good", "labels", "later"]

            await reconciler.apply({"good": spec("good")})
            assert sorted(reconciler.modules()) == ["edgeAgent", "good"]
            assert sorted(store.get(DOCUMENT)["modules"]) == ["good"]

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_turning_elevation_off_removes_the_elevated_modules_containers(engine, store) -> None:
    privileged = spec("priv", {**SLEEP, "HostConfig": {"Privileged": True}})

    async def scenario() -> None:
        async with supervising(Reconciler(engine, DesiredModules(store))) as allowed:
            await allowed.put(privileged)
            await allowed.put(spec("plain"))
            await wait_running(allowed, "priv", "plain")
        strict = Reconciler(engine, DesiredModules(store), admission=STRICT)
        async with supervising(strict):

            async def removed() -> bool:
                names = [c.name for c in await engine.list_containers()]
                return names == ["plain"]

            await wait_until_async(removed, timeout_s=10, what="the elevated container removed")
            state, description = await status_of(strict, "priv")
            assert state is RuntimeStatus.FAILED
            assert "HostConfig.Privileged" in description
            assert store.get(DOCUMENT)["modules"]["priv"] == privileged.to_api()

    asyncio.run(asyncio.wait_for(scenario(), 30))


class Explodes:
    """A module hook with a bug that shows for one module only."""

    def __init__(self, module: str) -> None:
        self.module = module

    async def before_create(self, spec: ModuleSpec, body: dict[str, Any]) -> None:
        if spec.name == self.module:
            body["Labels"].append("oops")  # a TypeError-class bug: Labels is a dict

    async def after_remove(self, module_name: str) -> None:
        if module_name == self.module:
            raise RuntimeError("clean-up bug")


def test_an_unexpected_error_fails_only_its_module(engine, store) -> None:
    reconciler = Reconciler(engine, DesiredModules(store), agent=AGENT, hooks=(Explodes("boom"),))

    async def scenario() -> None:
        async with supervising(reconciler):
            await reconciler.apply({"boom": spec("boom"), "calm": spec("calm")})
            await wait_running(reconciler, "edgeAgent", "calm")

            async def boom_failed() -> bool:
                return (await status_of(reconciler, "boom"))[0] is RuntimeStatus.FAILED

            await wait_until_async(boom_failed, timeout_s=10, what="boom marked failed")
            description = (await status_of(reconciler, "boom"))[1]
            assert (
                description
                == "internal error: AttributeError: 'dict' object has no attribute 'append'"
            )
            await reconciler.delete("boom")
            await reconciler.put(spec("after"))
            await wait_running(reconciler, "edgeAgent", "calm", "after")

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_an_unreadable_store_leaves_the_agent_supervised_and_edits_refused(engine, store) -> None:
    store.put(DOCUMENT, {"modules": ["not", "by", "name"]})
    before = store.path(DOCUMENT).read_bytes()
    reconciler = Reconciler(engine, DesiredModules(store), agent=AGENT)

    async def scenario() -> None:
        async with supervising(reconciler):
            await wait_running(reconciler, "edgeAgent")
            with pytest.raises(StateError, match="no object of modules by name"):
                await reconciler.put(spec("m"))
            with pytest.raises(StateError):
                await reconciler.apply({"m": spec("m")})
            assert store.path(DOCUMENT).read_bytes() == before

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_each_create_is_admitted_again(engine, store, tmp_path) -> None:
    """A symlink retargeted between admission and create is seen at create."""
    protected = tmp_path / "run"
    protected.mkdir()
    harmless = tmp_path / "harmless"
    harmless.mkdir()
    link = tmp_path / "link"
    link.symlink_to(harmless)
    policy = AdmissionPolicy(False, protect([str(protected)], os.path.realpath))
    reconciler = Reconciler(
        engine, DesiredModules(store), admission=policy, policy=BackoffPolicy(initial=60.0)
    )
    engine.disconnect()

    async def scenario() -> None:
        async with supervising(reconciler):
            await reconciler.put(spec("m", {**SLEEP, **_bind(f"{link}:/data")}))
            link.unlink()
            link.symlink_to(protected)
            engine.reconnect()

            async def refused() -> bool:
                issue = reconciler.issue("m")
                return issue is not None and "reaches protected path" in issue.message

            await wait_until_async(refused, timeout_s=10, what="the create refused")
            assert await engine.list_containers() == []

    asyncio.run(asyncio.wait_for(scenario(), 30))


def _bind(bind: str) -> dict[str, Any]:
    return {"HostConfig": {"Binds": [bind]}}
