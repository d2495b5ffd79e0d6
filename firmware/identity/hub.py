"""The hub's module identity calls, sans-IO: each function gives a `HubCall`, its request to
send and `receive` to read the answer with.

Per Azure's identity service (aziot-identityd, hub/mod.rs and identity.rs): api-version
2017-11-08-preview, paths `/devices/{deviceId}/modules[/{moduleId}]` with the ids URL-encoded.
Creating is a PUT of `{moduleId, deviceId}` without If-Match (it fails with 409 when the module
exists); setting keys is a PUT with `If-Match: *` and SAS keys; deleting is a DELETE with
`If-Match: *`. Answers become `HubModule`s, which never hold the keys the hub sends back.

Failures are raised where the answer is read: 401/403 `CloudUnauthorized`; 404 where the device
itself must be unknown (listing, creating) `CloudUnauthorized` too, since provisioning again is
what brings the device back to the hub; 404 when setting keys `IdentityNotFound`; 408/429/5xx
`CloudUnreachable` (with Retry-After advice); anything else `CloudAnswerMalformed`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import quote

from firmware.errors import EdgekeeperError
from firmware.identity import rest
from firmware.identity.errors import CloudUnauthorized, IdentityNotFound
from firmware.identity.rest import CloudRequest

API_VERSION = "2017-11-08-preview"

_T = TypeVar("_T")


@dataclass(frozen=True)
class HubModule:
    """A module identity as the hub holds it; `has_keys`: it authenticates with SAS keys."""

    module_id: str
    device_id: str
    generation_id: str
    managed_by: str | None
    has_keys: bool


@dataclass(frozen=True)
class ModuleExists:
    """What creating a module answers when the hub has it already (409)."""

    module_id: str


@dataclass(frozen=True)
class HubCall(Generic[_T]):
    """One call: send `request`, then `receive(status, headers, body)` reads its answer."""

    request: CloudRequest
    _read: Callable[[int, Mapping[str, str], bytes], _T]

    def receive(self, status: int, headers: Mapping[str, str], body: bytes) -> _T:
        return self._read(status, headers, body)


def list_modules(device_id: str, authorization: str | None) -> HubCall[tuple[HubModule, ...]]:
    """GET every module identity of the device."""

    def read(status: int, headers: Mapping[str, str], body: bytes) -> tuple[HubModule, ...]:
        what = f"the list of device {device_id!r}'s modules"
        if status != 200:
            raise _failure(status, headers, body, what, device_id, device_unknown=True)
        document = rest.read_document(body, f"the hub's answer to {what}")
        if not isinstance(document, list):
            raise rest.malformed(f"the hub's answer to {what} is not a JSON array")
        return tuple(_module(entry, what, device_id) for entry in document)

    return HubCall(_request("GET", device_id, None, None, authorization), read)


def get_module(
    device_id: str, module_id: str, authorization: str | None
) -> HubCall[HubModule | None]:
    """GET one module identity; None when the hub has none of that id."""

    def read(status: int, headers: Mapping[str, str], body: bytes) -> HubModule | None:
        what = f"getting module {module_id!r} of device {device_id!r}"
        if status == 404:
            return None
        if status != 200:
            raise _failure(status, headers, body, what, device_id)
        return _module(rest.read_document(body, _answer_to(what)), what, device_id, module_id)

    return HubCall(_request("GET", device_id, module_id, None, authorization), read)


def create_module(
    device_id: str, module_id: str, authorization: str | None
) -> HubCall[HubModule | ModuleExists]:
    """PUT a new module identity (no keys given: the hub makes its own until `set_module_keys`);
    `ModuleExists` when there is one already."""
    document = {"moduleId": module_id, "deviceId": device_id}

    def read(status: int, headers: Mapping[str, str], body: bytes) -> HubModule | ModuleExists:
        what = f"creating module {module_id!r} of device {device_id!r}"
        if status == 409:
            return ModuleExists(module_id)
        if status not in (200, 201):
            raise _failure(status, headers, body, what, device_id, device_unknown=True)
        return _module(rest.read_document(body, _answer_to(what)), what, device_id, module_id)

    return HubCall(_request("PUT", device_id, module_id, document, authorization), read)


def set_module_keys(
    device_id: str,
    module_id: str,
    primary: bytes,
    secondary: bytes,
    managed_by: str | None,
    authorization: str | None,
) -> HubCall[HubModule]:
    """PUT the module's SAS keys (and who manages it, when given) over whatever it had."""
    document: dict[str, object] = {
        "moduleId": module_id,
        "deviceId": device_id,
        "authentication": {
            "symmetricKey": {
                "primaryKey": base64.b64encode(primary).decode("ascii"),
                "secondaryKey": base64.b64encode(secondary).decode("ascii"),
            },
            "type": "sas",
        },
    }
    if managed_by is not None:
        document["managedBy"] = managed_by

    def read(status: int, headers: Mapping[str, str], body: bytes) -> HubModule:
        what = f"setting the keys of module {module_id!r} of device {device_id!r}"
        if status == 404:
            raise IdentityNotFound(
                f"the hub has no module {module_id!r} of device {device_id!r} to set keys of",
                hint="it was deleted meanwhile; create it again",
            )
        if status not in (200, 201):
            raise _failure(status, headers, body, what, device_id)
        return _module(rest.read_document(body, _answer_to(what)), what, device_id, module_id)

    request = _request("PUT", device_id, module_id, document, authorization, if_match="*")
    return HubCall(request, read)


def delete_module(device_id: str, module_id: str, authorization: str | None) -> HubCall[bool]:
    """DELETE a module identity: True when deleted, False when the hub had none."""

    def read(status: int, headers: Mapping[str, str], body: bytes) -> bool:
        if status == 404:
            return False
        if status not in (200, 204):
            what = f"deleting module {module_id!r} of device {device_id!r}"
            raise _failure(status, headers, body, what, device_id)
        return True

    return HubCall(
        _request("DELETE", device_id, module_id, None, authorization, if_match="*"), read
    )


def _request(
    method: str,
    device_id: str,
    module_id: str | None,
    document: object | None,
    authorization: str | None,
    **extra: str,
) -> CloudRequest:
    path = f"/devices/{quote(device_id, safe='')}/modules"
    if module_id is not None:
        path += f"/{quote(module_id, safe='')}"
    return rest.json_request(
        method, f"{path}?api-version={API_VERSION}", document, authorization, **extra
    )


def _answer_to(what: str) -> str:
    return f"the hub's answer to {what}"


def _module(document: object, what: str, device_id: str, module_id: str | None = None) -> HubModule:
    """A module identity from the hub's JSON, which must be of `device_id` (and `module_id`)."""
    if not isinstance(document, dict):
        raise rest.malformed(f"{_answer_to(what)} holds a module that is not a JSON object")
    texts: dict[str, str] = {}
    for name in ("moduleId", "deviceId", "generationId"):
        value = document.get(name)
        if not isinstance(value, str) or not value:
            raise rest.malformed(f"{_answer_to(what)} holds a module without {name}")
        texts[name] = value
    if texts["deviceId"] != device_id or module_id not in (None, texts["moduleId"]):
        raise rest.malformed(
            f"{_answer_to(what)} is about module {rest.shown(texts['moduleId'])} of device "
            f"{rest.shown(texts['deviceId'])}"
        )
    managed_by = document.get("managedBy")
    if managed_by is not None and not isinstance(managed_by, str):
        raise rest.malformed(f"{_answer_to(what)} has a managedBy that is not text")
    return HubModule(
        module_id=texts["moduleId"],
        device_id=texts["deviceId"],
        generation_id=texts["generationId"],
        managed_by=managed_by,
        has_keys=_has_keys(document.get("authentication")),
    )


def _has_keys(authentication: object) -> bool:
    if not isinstance(authentication, dict) or authentication.get("type") != "sas":
        return False
    keys = authentication.get("symmetricKey")
    return isinstance(keys, dict) and bool(keys.get("primaryKey"))


def _failure(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    what: str,
    device_id: str,
    *,
    device_unknown: bool = False,
) -> EdgekeeperError:
    """The error for an answer `read` does not accept."""
    said = rest.server_says(headers, body)
    detail = f" ({said})" if said else ""
    if status in (401, 403) or (status == 404 and device_unknown):
        return CloudUnauthorized(
            f"the hub refused {what} with {status}{detail}",
            hint=f"check that device {device_id!r} exists and is enabled in the hub, its key "
            "or certificate, and the device clock (tokens look expired when it is wrong); "
            "provisioning again brings a device DPS manages back",
        )
    if rest.is_transient(status):
        return rest.unreachable("the hub", status, headers, body)
    return rest.malformed(f"the hub answered {status} to {what}{detail}")
