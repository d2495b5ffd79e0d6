"""The `/identities` routes of the management API, in IoT Edge's shape.

- `GET /identities` -> `{"identities": [{"moduleId", "managedBy", "generationId", "authType"}]}`
- `POST /identities` `{"moduleId", "managedBy"}` -> the new identity
- `PUT /identities/{name}` `{"managedBy", "generationId"?}` -> the updated identity
- `DELETE /identities/{name}` -> 204
- `GET /identities/{name}` (edgekeeper's, for `identity show`) -> the identity
"""

from __future__ import annotations

from collections.abc import Callable

from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import RouteTable
from firmware.errors import BadRequest
from firmware.identity.model import DEFAULT_MANAGER, check_module_id
from firmware.identity.modules import ModuleIdentities


def routes(identities: Callable[[], ModuleIdentities]) -> RouteTable:
    """The `/identities` routes; `identities()` gives the running `ModuleIdentities`."""

    async def list_identities(request: ApiRequest) -> ApiResponse:
        return ApiResponse(
            200, {"identities": [identity.document() for identity in identities().list()]}
        )

    async def show_identity(request: ApiRequest, name: str) -> ApiResponse:
        return ApiResponse(200, identities().get(name).document())

    async def create_identity(request: ApiRequest) -> ApiResponse:
        body = request.json_object()
        module_id = check_module_id(body.get("moduleId"))
        managed_by = _manager(body)
        identity = await identities().create(module_id, managed_by)
        return ApiResponse(200, identity.document())

    async def update_identity(request: ApiRequest, name: str) -> ApiResponse:
        body = request.json_object()
        generation = body.get("generationId")
        if generation is not None and not isinstance(generation, str):
            raise BadRequest("field 'generationId' must be a string")
        identity = await identities().update(name, _manager(body), generation)
        return ApiResponse(200, identity.document())

    async def delete_identity(request: ApiRequest, name: str) -> ApiResponse:
        await identities().delete(name)
        return ApiResponse(204)

    return [
        ("GET", "/identities", list_identities),
        ("POST", "/identities", create_identity),
        ("GET", "/identities/{name}", show_identity),
        ("PUT", "/identities/{name}", update_identity),
        ("DELETE", "/identities/{name}", delete_identity),
    ]


def _manager(body: dict[str, object]) -> str:
    managed_by = body.get("managedBy", DEFAULT_MANAGER)
    if not isinstance(managed_by, str) or not managed_by or len(managed_by) > 128:
        raise BadRequest(
            "field 'managedBy' must be a string of 1-128 characters", hint='e.g. "iotedge"'
        )
    return managed_by
