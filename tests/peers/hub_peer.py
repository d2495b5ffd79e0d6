"""An IoT Hub for tests: the device registry and the module identity REST API a device calls.

Routes (api-version 2017-11-08-preview, 2020-05-31-preview or 2021-04-12, else 400):
`GET /devices/{d}/modules`, `GET|PUT|DELETE /devices/{d}/modules/{m}`, authorised by the device's
SAS token (`sr={hub}/devices/{d}`, no skn) or its X.509 client certificate (thumbprint, or issued
by the device's CA with CN = device id); and `GET /twins/{d}/modules/{m}`, authorised by the
module's SAS token (`sr={hub}/devices/{d}/modules/{m}`, primary or secondary key), so a test sees
that a module's key works. Errors carry IoT Hub's body `{"Message": "ErrorCode:<code>;...",
"ExceptionMessage"}` and its `iothub-errorcode` header. The hub's name is `127.0.0.1:PORT`.
An IoT Edge device comes with the system modules `$edgeAgent` and `$edgeHub`, made by the hub with
keys of its own (a device may set their keys, never create or delete them), as on IoT Hub.
With a `state_file` the registry survives a restart (the sim board).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import os
import secrets
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.peers.cloud_ca import (
    IssuedCert,
    common_name,
    issued_by,
    thumbprint_sha1,
    thumbprint_sha256,
)
from tests.peers.cloud_https import HOST, Answer, Call, HttpsPeer
from tests.peers.sas_token import parse_sas, sas_valid

API_VERSIONS = frozenset({"2017-11-08-preview", "2020-05-31-preview", "2021-04-12"})
KEY_BYTES = range(16, 65)
NEVER = "0001-01-01T00:00:00Z"
SYSTEM_MODULES = ("$edgeAgent", "$edgeHub")
ERROR_CODES = {
    400: "ArgumentInvalid",
    401: "IotHubUnauthorizedAccess",
    404: "ModuleNotFound",
    409: "ModuleAlreadyExistsOnDevice",
    412: "PreconditionFailed",
    429: "ThrottlingException",
    500: "ServerError",
    503: "ServiceUnavailable",
}


@dataclass(frozen=True)
class DeviceCredential:
    """How a device authenticates: a SAS key, an X.509 thumbprint, or a CA that signs its cert."""

    symmetric_key: str | None = None
    x509_thumbprint: str | None = None
    x509_ca: x509.Certificate | None = None


@dataclass(frozen=True)
class HubDevice:
    device_id: str
    credential: DeviceCredential
    enabled: bool = True


@dataclass(frozen=True)
class HubModule:
    device_id: str
    module_id: str
    generation_id: str
    etag: str
    primary_key: str | None
    secondary_key: str | None
    managed_by: str | None
    auth_type: str = "sas"


def _system_module(device_id: str, module_id: str) -> HubModule:
    """A system module as the hub makes it with an IoT Edge device: its own keys, no manager."""
    return HubModule(
        device_id=device_id,
        module_id=module_id,
        generation_id=str(secrets.randbelow(10**18)).zfill(18),
        etag=_new_etag(),
        primary_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        secondary_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        managed_by=None,
    )


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or ERROR_CODES.get(status, "ServerError")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _new_etag() -> str:
    return base64.b64encode(secrets.token_bytes(9)).decode()


def _valid_key(key: object) -> bool:
    if key is None:
        return True
    if not isinstance(key, str):
        return False
    try:
        return len(base64.b64decode(key, validate=True)) in KEY_BYTES
    except binascii.Error:
        return False


class HubPeer(HttpsPeer):
    """One IoT Hub; DPS adds the devices it assigns here with `add_device`."""

    def __init__(
        self,
        cert: IssuedCert,
        trust: list[x509.Certificate],
        port: int = 0,
        state_file: Path | None = None,
    ) -> None:
        super().__init__(cert, trust, port)
        self._state_file = state_file
        self._devices: dict[str, HubDevice] = {}
        self._modules: dict[str, dict[str, HubModule]] = {}
        if state_file is not None and state_file.exists():
            self._load(state_file)

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def devices(self) -> dict[str, HubDevice]:
        with self._lock:
            return dict(self._devices)

    def modules(self, device_id: str) -> dict[str, HubModule]:
        with self._lock:
            return dict(self._modules.get(device_id, {}))

    def add_device(self, device_id: str, credential: DeviceCredential) -> None:
        """Register `device_id`, or give an existing one `credential` (modules and the enabled
        state are kept)."""
        with self._lock:
            if credential.x509_ca is not None:
                self.trust(credential.x509_ca)
            previous = self._devices.get(device_id)
            enabled = previous.enabled if previous else True
            self._devices[device_id] = HubDevice(device_id, credential, enabled)
            modules = self._modules.setdefault(device_id, {})
            for module_id in SYSTEM_MODULES:
                modules.setdefault(module_id, _system_module(device_id, module_id))
            self._save()

    def disable_device(self, device_id: str) -> None:
        """The device's requests get 401 from now on."""
        self._set_enabled(device_id, False)

    def enable_device(self, device_id: str) -> None:
        self._set_enabled(device_id, True)

    def _set_enabled(self, device_id: str, enabled: bool) -> None:
        with self._lock:
            self._devices[device_id] = replace(self._devices[device_id], enabled=enabled)
            self._save()

    def verify_device_token(self, device_id: str, token: str) -> bool:
        with self._lock:
            device = self._devices.get(device_id)
        parsed = parse_sas(token)
        if device is None or parsed is None or device.credential.symmetric_key is None:
            return False
        resource = f"{self.host}/devices/{device_id}"
        return sas_valid(
            parsed, key_b64=device.credential.symmetric_key, resource=resource, key_name=None
        )

    def verify_module_token(self, device_id: str, module_id: str, token: str) -> bool:
        """Whether `token` is a valid module SAS token for an enabled device's module."""
        with self._lock:
            device = self._devices.get(device_id)
            module = self._modules.get(device_id, {}).get(module_id)
        parsed = parse_sas(token)
        if device is None or not device.enabled or module is None or parsed is None:
            return False
        resource = f"{self.host}/devices/{device_id}/modules/{module_id}"
        return any(
            sas_valid(parsed, key_b64=key, resource=resource, key_name=None)
            for key in (module.primary_key, module.secondary_key)
            if key is not None
        )

    def error(self, status: int, message: str, code: str | None = None) -> Answer:
        code = code or ERROR_CODES.get(status, "ServerError")
        tracking = uuid.uuid4().hex
        body = {
            "Message": f"ErrorCode:{code};{message}",
            "ExceptionMessage": f"Tracking ID:{tracking}-TimeStamp:{_now()}",
        }
        return Answer.json(status, body, (("iothub-errorcode", code),))

    def answer(self, call: Call) -> Answer:
        try:
            if call.query.get("api-version") not in API_VERSIONS:
                raise HubError(
                    400, f"api-version {call.query.get('api-version')!r} is not supported"
                )
            return self._route(call)
        except HubError as failure:
            return self.error(failure.status, str(failure), failure.code)

    def _route(self, call: Call) -> Answer:
        match (call.method, call.segments):
            case ("GET", ("twins", device_id, "modules", module_id)):
                return self._twin(call, device_id, module_id)
            case (_, ("devices", device_id, "modules", *rest)) if len(rest) <= 1:
                self._authorise_device(call, device_id)
                return self._modules_api(call, device_id, rest[0] if rest else None)
        raise HubError(404, f"no route for {call.method} {call.path}", "NotFound")

    def _modules_api(self, call: Call, device_id: str, module_id: str | None) -> Answer:
        match (call.method, module_id):
            case ("GET", None):
                return Answer.json(200, [self._view(m) for m in self.modules(device_id).values()])
            case ("GET", str()):
                return Answer.json(200, self._view(self._existing(device_id, module_id)))
            case ("PUT", str()):
                return Answer.json(200, self._view(self._put(call, device_id, module_id)))
            case ("DELETE", str()):
                self._delete(call, device_id, module_id)
                return Answer(204)
        raise HubError(405, f"{call.method} is not allowed on {call.path}", "MethodNotAllowed")

    def _authorise_device(self, call: Call, device_id: str) -> None:
        with self._lock:
            device = self._devices.get(device_id)
        if device is None or not device.enabled:
            raise HubError(401, f"device {device_id} is unknown or disabled")
        header = call.headers.get("authorization")
        if header is not None:
            if self.verify_device_token(device_id, header):
                return
            raise HubError(401, "the SAS token is not valid for this device")
        if call.client_cert is not None and self._cert_matches(device, call.client_cert):
            return
        raise HubError(401, "no valid credential for this device")

    @staticmethod
    def _cert_matches(device: HubDevice, cert: x509.Certificate) -> bool:
        credential = device.credential
        if credential.x509_thumbprint is not None:
            return credential.x509_thumbprint.upper() in (
                thumbprint_sha1(cert),
                thumbprint_sha256(cert),
            )
        return (
            credential.x509_ca is not None
            and common_name(cert) == device.device_id
            and issued_by(cert, credential.x509_ca)
        )

    def _existing(self, device_id: str, module_id: str) -> HubModule:
        module = self.modules(device_id).get(module_id)
        if module is None:
            raise HubError(404, f"module {module_id} not found on device {device_id}")
        return module

    def _put(self, call: Call, device_id: str, module_id: str) -> HubModule:
        try:
            body = json.loads(call.body)
        except ValueError as failure:
            raise HubError(400, f"the body is not JSON: {failure}") from None
        if not isinstance(body, dict) or body.get("moduleId") != module_id:
            raise HubError(400, "the body's moduleId does not match the path")
        if body.get("deviceId") != device_id:
            raise HubError(400, "the body's deviceId does not match the path")
        authentication = body.get("authentication") or {}
        keys = authentication.get("symmetricKey") or {}
        primary, secondary = keys.get("primaryKey"), keys.get("secondaryKey")
        if not (_valid_key(primary) and _valid_key(secondary)):
            raise HubError(400, "a symmetric key is not base64 of 16 to 64 bytes")
        auth_type = authentication.get("type", "sas")
        if auth_type not in ("sas", "none"):
            raise HubError(400, f"authentication type {auth_type!r} is not supported here")
        if_match = call.headers.get("if-match")
        with self._lock:
            current = self._modules[device_id].get(module_id)
            if if_match is None:
                if current is not None:
                    raise HubError(409, f"module {module_id} already exists on {device_id}")
                module = HubModule(
                    device_id=device_id,
                    module_id=module_id,
                    generation_id=str(secrets.randbelow(10**18)).zfill(18),
                    etag=_new_etag(),
                    primary_key=primary,
                    secondary_key=secondary,
                    managed_by=body.get("managedBy"),
                    auth_type=auth_type,
                )
            else:
                current = self._matching(current, if_match, device_id, module_id)
                module = replace(
                    current,
                    etag=_new_etag(),
                    primary_key=primary,
                    secondary_key=secondary,
                    managed_by=body.get("managedBy"),
                    auth_type=auth_type,
                )
            self._modules[device_id][module_id] = module
            self._save()
        return module

    def _delete(self, call: Call, device_id: str, module_id: str) -> None:
        if_match = call.headers.get("if-match")
        if if_match is None:
            raise HubError(400, "deleting a module needs an If-Match header")
        if module_id in SYSTEM_MODULES:
            raise HubError(400, f"system module {module_id} cannot be deleted")
        with self._lock:
            self._matching(self._modules[device_id].get(module_id), if_match, device_id, module_id)
            del self._modules[device_id][module_id]
            self._save()

    @staticmethod
    def _matching(
        module: HubModule | None, if_match: str, device_id: str, module_id: str
    ) -> HubModule:
        if module is None:
            raise HubError(404, f"module {module_id} not found on device {device_id}")
        if if_match.strip() != "*" and if_match.strip().strip('"') != module.etag:
            raise HubError(412, f"If-Match {if_match!r} does not match the module's etag")
        return module

    def _twin(self, call: Call, device_id: str, module_id: str) -> Answer:
        if not self.verify_module_token(
            device_id, module_id, call.headers.get("authorization", "")
        ):
            raise HubError(401, "the SAS token is not valid for this module")
        module = self._existing(device_id, module_id)
        return Answer.json(
            200,
            {
                "deviceId": device_id,
                "moduleId": module_id,
                "etag": module.etag,
                "version": 1,
                "properties": {"desired": {"$version": 1}, "reported": {"$version": 1}},
            },
        )

    @staticmethod
    def _view(module: HubModule) -> dict[str, object]:
        return {
            "moduleId": module.module_id,
            "deviceId": module.device_id,
            "managedBy": module.managed_by,
            "generationId": module.generation_id,
            "etag": module.etag,
            "connectionState": "Disconnected",
            "connectionStateUpdatedTime": NEVER,
            "lastActivityTime": NEVER,
            "cloudToDeviceMessageCount": 0,
            "authentication": {
                "symmetricKey": {
                    "primaryKey": module.primary_key,
                    "secondaryKey": module.secondary_key,
                },
                "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
                "type": module.auth_type,
            },
        }

    def _save(self) -> None:
        if self._state_file is None:
            return
        state = {
            "devices": [
                {
                    "device_id": device.device_id,
                    "enabled": device.enabled,
                    "symmetric_key": device.credential.symmetric_key,
                    "x509_thumbprint": device.credential.x509_thumbprint,
                    "x509_ca": device.credential.x509_ca.public_bytes(
                        serialization.Encoding.PEM
                    ).decode()
                    if device.credential.x509_ca
                    else None,
                }
                for device in self._devices.values()
            ],
            "modules": [asdict(m) for modules in self._modules.values() for m in modules.values()],
        }
        temporary = self._state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self._state_file)

    def _load(self, state_file: Path) -> None:
        state = json.loads(state_file.read_text())
        for entry in state["devices"]:
            ca = entry["x509_ca"]
            credential = DeviceCredential(
                symmetric_key=entry["symmetric_key"],
                x509_thumbprint=entry["x509_thumbprint"],
                x509_ca=x509.load_pem_x509_certificate(ca.encode()) if ca else None,
            )
            if credential.x509_ca is not None:
                self.trust(credential.x509_ca)
            self._devices[entry["device_id"]] = HubDevice(
                entry["device_id"], credential, entry["enabled"]
            )
            self._modules.setdefault(entry["device_id"], {})
        for entry in state["modules"]:
            self._modules.setdefault(entry["device_id"], {})[entry["module_id"]] = HubModule(
                **entry
            )
