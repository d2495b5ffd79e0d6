"""Management API module routes (IoT Edge-compatible): list, create, get, update, delete, start,
stop and restart, answering `ModuleDetails`.

`ModuleDetails` is IoT Edge's shape: `{"id", "name", "type", "config": {"settings": {"image",
"createOptions"}, "env": [{"key", "value"}]}, "status": {"startTime", "exitStatus": {"exitTime",
"statusCode"}, "runtimeStatus": {"status", "description"}}}`, plus our `restartPolicy`,
`desiredStatus`, `imagePullPolicy`, `version` and `restartCount`. `runtimeStatus.status` is one of
"running", "stopped", "failed", "backoff", "dead", "unknown". Changes go to the desired state
(persisted first); the reconciler carries them out, so the answer does not wait for the engine.
"""

from __future__ import annotations

import asyncio
from typing import Any

from firmware.api.model import ApiRequest, ApiResponse
from firmware.errors import BadRequest, Conflict, NotFound
from firmware.runtime.engine import ContainerSummary
from firmware.runtime.reconciler import Reconciler
from firmware.runtime.spec import MODULE_LABEL, OWNER_LABEL, DesiredStatus, ModuleSpec

_NEVER = "0001-01-01T00:00:00Z"


async def module_details(
    reconciler: Reconciler, names: list[str] | None = None
) -> list[dict[str, Any]]:
    """Details of the named modules (default: every wanted module), in name order."""
    specs = reconciler.modules()
    wanted = sorted(specs) if names is None else names
    containers = await reconciler.engine.list_containers({OWNER_LABEL: reconciler.owner})
    chosen: dict[str, ContainerSummary] = {}
    for container in sorted(containers, key=lambda c: c.state != "running"):
        chosen.setdefault(container.labels.get(MODULE_LABEL, container.name), container)
    inspected = await asyncio.gather(*(_inspect(reconciler, chosen.get(name)) for name in wanted))
    return [
        details(reconciler, specs[name], doc) for name, doc in zip(wanted, inspected, strict=True)
    ]


async def _inspect(reconciler: Reconciler, container: ContainerSummary | None) -> dict | None:
    if container is None:
        return None
    try:
        return await reconciler.engine.inspect(container.container_id)
    except NotFound:
        return None


def details(reconciler: Reconciler, spec: ModuleSpec, container: dict | None) -> dict[str, Any]:
    api = spec.to_api()
    record = reconciler.record(spec.name)
    state = (container or {}).get("State", {})
    status: dict[str, Any] = {"runtimeStatus": _runtime_status(reconciler, spec, state, container)}
    if state.get("StartedAt") and state["StartedAt"] != _NEVER:
        status["startTime"] = state["StartedAt"]
    if state and not state.get("Running") and state.get("FinishedAt", _NEVER) != _NEVER:
        status["exitStatus"] = {
            "exitTime": state["FinishedAt"],
            "statusCode": str(state.get("ExitCode", "")),
        }
    return {
        "id": (container or {}).get("Id", ""),
        "name": spec.name,
        "type": "docker",
        "config": api["config"],
        "status": status,
        "restartPolicy": api["restartPolicy"],
        "desiredStatus": api["status"],
        "imagePullPolicy": api["imagePullPolicy"],
        "version": api["version"],
        "restartCount": record.failures if record else 0,
        "agent": reconciler.is_agent(spec.name),
    }


def _runtime_status(
    reconciler: Reconciler, spec: ModuleSpec, state: dict[str, Any], container: dict | None
) -> dict[str, str]:
    issue = reconciler.issue(spec.name)
    note = reconciler.activity(spec.name) or (issue.message if issue else "")
    if container is None:
        return {"status": "unknown", "description": note or "no container yet"}
    engine_state = state.get("Status", "")
    code = state.get("ExitCode", 0)
    wait = reconciler.backoff_left(spec.name)
    if engine_state == "running":
        health = state.get("Health", {}).get("Status", "")
        return {"status": "running", "description": note or (f"health: {health}" if health else "")}
    if engine_state == "dead":
        return {"status": "dead", "description": note or "the engine reports the container dead"}
    if engine_state == "restarting" or (wait > 0 and spec.status is DesiredStatus.RUNNING):
        text = f"exited with code {code}; next start in {round(wait)} s"
        return {"status": "backoff", "description": note or text}
    if spec.status is DesiredStatus.STOPPED or code == 0:
        return {"status": "stopped", "description": note or f"exited with code {code}"}
    return {"status": "failed", "description": note or f"exited with code {code}"}


def routes(current: Any) -> list[tuple[str, str, Any]]:
    """The module routes; `current()` gives the reconciler at request time."""

    async def list_modules(request: ApiRequest) -> ApiResponse:
        return ApiResponse(200, {"modules": await module_details(current())})

    async def get_module(request: ApiRequest, name: str) -> ApiResponse:
        reconciler = current()
        reconciler.spec(name)
        return ApiResponse(200, (await module_details(reconciler, [name]))[0])

    async def create_module(request: ApiRequest) -> ApiResponse:
        reconciler = current()
        spec = ModuleSpec.from_api(request.json_object())
        if spec.name in reconciler.modules():
            raise Conflict(
                f"module {spec.name!r} already exists",
                hint=f"update it with PUT /modules/{spec.name}",
            )
        await reconciler.put(spec)
        return ApiResponse(201, details(reconciler, spec, None))

    async def update_module(request: ApiRequest, name: str) -> ApiResponse:
        reconciler = current()
        reconciler.spec(name)
        spec = ModuleSpec.from_api(request.json_object())
        if spec.name != name:
            raise BadRequest(
                f"field 'name' is {spec.name!r} but the path names module {name!r}",
                hint="a module cannot be renamed; delete it and create the new one",
            )
        if request.query.get("start", "").lower() == "true":
            spec = ModuleSpec(**{**spec.__dict__, "status": DesiredStatus.RUNNING})
        await reconciler.put(spec)
        return ApiResponse(200, details(reconciler, spec, None))

    async def delete_module(request: ApiRequest, name: str) -> ApiResponse:
        await current().delete(name)
        return ApiResponse(204)

    async def start_module(request: ApiRequest, name: str) -> ApiResponse:
        await current().set_status(name, DesiredStatus.RUNNING)
        return ApiResponse(204)

    async def stop_module(request: ApiRequest, name: str) -> ApiResponse:
        await current().set_status(name, DesiredStatus.STOPPED)
        return ApiResponse(204)

    async def restart_module(request: ApiRequest, name: str) -> ApiResponse:
        await current().restart(name)
        return ApiResponse(204)

    return [
        ("GET", "/modules", list_modules),
        ("POST", "/modules", create_module),
        ("GET", "/modules/{name}", get_module),
        ("PUT", "/modules/{name}", update_module),
        ("DELETE", "/modules/{name}", delete_module),
        ("POST", "/modules/{name}/start", start_module),
        ("POST", "/modules/{name}/stop", stop_module),
        ("POST", "/modules/{name}/restart", restart_module),
    ]
