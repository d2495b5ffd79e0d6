"""Management API module routes (IoT Edge-compatible): list, create, get, update, delete, start,
stop and restart, answering `ModuleDetails`.

`ModuleDetails` is IoT Edge's shape: `{"id", "name", "type", "config": {"settings": {"image",
"imageHash", "createOptions"}, "env": [{"key", "value"}]}, "status": {"startTime", "exitStatus":
{"exitTime", "statusCode"}, "runtimeStatus": {"status", "description"}}}`, plus our `restartPolicy`,
`desiredStatus`, `imagePullPolicy`, `version` and `restartCount`. `runtimeStatus.status` is one of
"running", "stopped", "failed", "backoff", "dead", "unknown". The runtime computes each module's
status (`firmware.runtime.status.ModuleStatus`); this module only gives it IoT Edge's shape.
Changes go to the desired state (persisted first) once the runtime admitted them
(`firmware.runtime.admission`: a refusal is a 400 naming the createOptions field and, for
elevation, the setting); the reconciler carries them out, so the answer does not wait for the
engine. `prepareupdate` (what edgeAgent sends before every create and update, for modules that do
not exist yet too) admits the spec and pulls its image, changing nothing else. The agent updates
itself with `PUT` (edgeAgent does, with `start=true`); it cannot be created, stopped or deleted
here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import RouteTable
from firmware.errors import BadRequest, Conflict
from firmware.runtime.reconciler import Reconciler
from firmware.runtime.spec import DesiredStatus, ModuleSpec
from firmware.runtime.status import ModuleStatus


def module_details(status: ModuleStatus) -> dict[str, Any]:
    """IoT Edge's `ModuleDetails` (and our fields) for one module's status."""
    api = status.spec.to_api()
    shown: dict[str, Any] = {
        "runtimeStatus": {
            "status": status.runtime_status.value,
            "description": status.description,
        }
    }
    if status.started_at is not None:
        shown["startTime"] = status.started_at
    if status.exited_at is not None:
        shown["exitStatus"] = {
            "exitTime": status.exited_at,
            "statusCode": "" if status.exit_code is None else str(status.exit_code),
        }
    if status.image_id:
        api["config"]["settings"]["imageHash"] = status.image_id
    return {
        "id": status.container_id,
        "name": status.name,
        "type": "docker",
        "config": api["config"],
        "status": shown,
        "restartPolicy": api["restartPolicy"],
        "desiredStatus": api["status"],
        "imagePullPolicy": api["imagePullPolicy"],
        "version": api["version"],
        "restartCount": status.restart_count,
        "agent": status.agent,
    }


def routes(current: Callable[[], Reconciler]) -> RouteTable:
    """The module routes; `current()` gives the reconciler at request time."""

    async def list_modules(request: ApiRequest) -> ApiResponse:
        statuses = await current().statuses()
        return ApiResponse(200, {"modules": [module_details(status) for status in statuses]})

    async def get_module(request: ApiRequest, name: str) -> ApiResponse:
        (status,) = await current().statuses([name])
        return ApiResponse(200, module_details(status))

    async def create_module(request: ApiRequest) -> ApiResponse:
        reconciler = current()
        spec = ModuleSpec.from_api(request.json_object())
        if spec.name in reconciler.modules():
            raise Conflict(
                f"module {spec.name!r} already exists",
                hint=f"update it with PUT /modules/{spec.name}",
            )
        await reconciler.put(spec)
        return ApiResponse(201, module_details(reconciler.accepted_status(spec)))

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
        return ApiResponse(200, module_details(reconciler.accepted_status(spec)))

    async def prepare_update(request: ApiRequest, name: str) -> ApiResponse:
        spec = ModuleSpec.from_api(request.json_object())
        if spec.name != name:
            raise BadRequest(f"field 'name' is {spec.name!r} but the path names module {name!r}")
        await current().prepare(spec)
        return ApiResponse(204)

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
        ("POST", "/modules/{name}/prepareupdate", prepare_update),
        ("POST", "/modules/{name}/start", start_module),
        ("POST", "/modules/{name}/stop", stop_module),
        ("POST", "/modules/{name}/restart", restart_module),
    ]
