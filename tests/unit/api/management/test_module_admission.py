"""`/modules` and `/deployments` in-process with elevation not allowed: refusals are 400s naming
the field and the setting, nothing is stored, and names follow the one whole-text rule."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

from firmware.api import versions
from firmware.api.management import deployments, modules
from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import Router
from firmware.runtime.admission import AdmissionPolicy
from firmware.runtime.desired import DOCUMENT, DesiredModules
from firmware.runtime.elevation import protect
from firmware.runtime.reconciler import Reconciler
from firmware.store.state import StateStore
from tests.peers.fake_engine import FakeEngine

STRICT = AdmissionPolicy(allow_elevated=False, protected=protect(["/etc", "/run/edgekeeper"]))


def body(name: str, options: object) -> dict[str, Any]:
    settings = {"image": "img:1", "createOptions": options}
    return {"name": name, "type": "docker", "config": {"settings": settings}}


async def call(router: Router, method: str, path: str, doc: object) -> ApiResponse:
    request = ApiRequest(
        method, path, query={"api-version": versions.LATEST}, body=json.dumps(doc).encode()
    )
    return await router.dispatch(request)


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        (
            body("m", {"HostConfig": {"Privileged": True}}),
            "settings.createOptions.HostConfig.Privileged",
        ),
        (body("m", {"HostConfig": {"CapAdd": ["SYS_ADMIN"]}}), "HostConfig.CapAdd[0]"),
        (body("m", {"HostConfig": {"Binds": ["/etc:/e"]}}), "HostConfig.Binds[0]"),
        (body("m", {"HostConfig": {"PidMode": "host"}}), "HostConfig.PidMode"),
        (body("m", {"Labels": []}), "settings.createOptions.Labels' must be an object"),
        (body("m", {"HostConfig": "x"}), "settings.createOptions.HostConfig' must be an object"),
        (body("m\n", {}), "field 'name' must be 1-63 characters"),
        (body("-m", {}), "field 'name'"),
        ({"modules": {"m": {"settings": {"image": "i", "createOptions": '{"Env": 1}'}}}}, "Env"),
        (
            {
                "modules": {
                    "ok": {"settings": {"image": "i"}},
                    "bad": {
                        "settings": {
                            "image": "i",
                            "createOptions": {"HostConfig": {"Privileged": True}},
                        }
                    },
                }
            },
            "module 'bad': field 'settings.createOptions.HostConfig.Privileged'",
        ),
        ({"modules": {"m\n": {"settings": {"image": "i"}}}}, "name"),
    ],
)
def test_refusals_are_400s_that_name_the_field_and_store_nothing(tmp_path, doc, words) -> None:
    store = StateStore(tmp_path)
    store.ensure()
    reconciler = Reconciler(FakeEngine(), DesiredModules(store), admission=STRICT)
    router = Router()
    config = SimpleNamespace(agent=SimpleNamespace(name="edgeAgent"))
    for method, pattern, handler in [
        *modules.routes(lambda: reconciler),
        *deployments.routes(lambda: config, lambda: reconciler),
    ]:
        router.add(method, pattern, handler)

    async def scenario() -> None:
        task = asyncio.ensure_future(reconciler.run())
        try:
            await reconciler.loaded()
            path = "/deployments" if "modules" in doc else "/modules"
            answer = await call(router, "POST", path, doc)
            assert answer.status == 400, answer.json()
            message = answer.json()["message"]
            assert words in message
            if "Privileged" in words or "CapAdd" in words or "Binds" in words:
                assert "allow_elevated_docker_permissions = true" in message
            assert reconciler.modules() == {} and store.get(DOCUMENT) is None
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(asyncio.wait_for(scenario(), 30))
