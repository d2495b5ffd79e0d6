"""`WorkloadApi`: the workload API's handlers, wire-compatible with IoT Edge's workload API.

- `POST /modules/{name}/genid/{genid}/sign` `{"keyId","algo","data"}` -> `{"digest"}`
- `POST /modules/{name}/genid/{genid}/encrypt` `{"plaintext","initializationVector"}`
  -> `{"ciphertext"}`; `.../decrypt` `{"ciphertext","initializationVector"}` -> `{"plaintext"}`
- `GET /trust-bundle`, `GET /manifest-trust-bundle` -> `{"certificate"}`
- `POST /modules/{name}/genid/{genid}/certificate/server` `{"commonName","expiration"}` and
  `POST /modules/{name}/certificate/identity` -> 201 `{"privateKey": {"type": "key", "bytes"},
  "certificate", "expiration"}`

Every request first passes the socket's rate limit, then the module check (`WorkloadAccess`);
sign/encrypt/decrypt use the module's identity key at the given generation (404 for any other
generation). Keys stay in the key service; certificate private keys are made per request and
returned, never stored.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from firmware.api import versions
from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import Router
from firmware.api.workload import requests
from firmware.api.workload.access import WorkloadAccess
from firmware.api.workload.ratelimit import SocketRateLimits
from firmware.identity.modules import ModuleIdentities
from firmware.keys.backend import SignAlgorithm
from firmware.keys.service import KeyService

if TYPE_CHECKING:
    from firmware.certs.service import CertificateService, IssuedCertificate

LISTENERS = ("workload",)
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# The manifest trust bundle appeared in the workload API of IoT Edge 1.2.
_MANIFEST_SINCE = "2020-10-10"


class WorkloadApi:
    """The workload API's handlers; the services behind them are found at request time.

    `identities()`, `keys()` and `certs()` return the running `ModuleIdentities`, `KeyService`
    and `CertificateService`, or raise `Unavailable`.
    """

    def __init__(
        self,
        identities: Callable[[], ModuleIdentities],
        keys: Callable[[], KeyService],
        certs: Callable[[], CertificateService],
        access: WorkloadAccess,
        limits: SocketRateLimits,
    ) -> None:
        self._identities = identities
        self._keys = keys
        self._certs = certs
        self._access = access
        self._limits = limits

    def register(self, router: Router) -> None:
        """Add the workload routes to `router` (listener kind "workload")."""
        genid = "/modules/{name}/genid/{genid}"
        router.add("POST", f"{genid}/sign", self.sign, listeners=LISTENERS)
        router.add("POST", f"{genid}/encrypt", self.encrypt, listeners=LISTENERS)
        router.add("POST", f"{genid}/decrypt", self.decrypt, listeners=LISTENERS)
        router.add(
            "POST", f"{genid}/certificate/server", self.server_certificate, listeners=LISTENERS
        )
        router.add(
            "POST",
            "/modules/{name}/certificate/identity",
            self.identity_certificate,
            listeners=LISTENERS,
        )
        router.add("GET", "/trust-bundle", self.trust_bundle, listeners=LISTENERS)
        router.add(
            "GET",
            "/manifest-trust-bundle",
            self.manifest_trust_bundle,
            listeners=LISTENERS,
            api_versions=versions.since(_MANIFEST_SINCE),
        )

    async def sign(self, request: ApiRequest, name: str, genid: str) -> ApiResponse:
        await self._admit(request, name)
        parsed = requests.parse_sign(request.json_object())
        handle = await self._identities().key(name, genid)
        digest = await self._keys().sign(handle, SignAlgorithm.HMAC_SHA256, parsed.data)
        return ApiResponse(200, {"digest": _b64(digest)})

    async def encrypt(self, request: ApiRequest, name: str, genid: str) -> ApiResponse:
        await self._admit(request, name)
        parsed = requests.parse_encrypt(request.json_object())
        handle = await self._identities().key(name, genid)
        sealed = await self._keys().encrypt(handle, parsed.iv, b"", parsed.data)
        return ApiResponse(200, {"ciphertext": _b64(sealed)})

    async def decrypt(self, request: ApiRequest, name: str, genid: str) -> ApiResponse:
        await self._admit(request, name)
        parsed = requests.parse_decrypt(request.json_object())
        handle = await self._identities().key(name, genid)
        opened = await self._keys().decrypt(handle, parsed.iv, b"", parsed.data)
        return ApiResponse(200, {"plaintext": _b64(opened)})

    async def server_certificate(self, request: ApiRequest, name: str, genid: str) -> ApiResponse:
        await self._admit(request, name)
        parsed = requests.parse_server_certificate(request.json_object())
        await self._identities().key(name, genid)
        assert parsed.common_name is not None
        sans = [parsed.common_name]
        if _DNS_LABEL.match(name) and name != parsed.common_name:
            sans.append(name)
        issued = await self._certs().issue_server_certificate(
            parsed.common_name, sans, parsed.expiration
        )
        return ApiResponse(201, _certificate_document(issued))

    async def identity_certificate(self, request: ApiRequest, name: str) -> ApiResponse:
        await self._admit(request, name)
        parsed = requests.parse_identity_certificate(
            request.json_object() if request.body.strip() else None
        )
        self._identities().get(name)
        issued = await self._certs().issue_identity_certificate(name, parsed.expiration)
        return ApiResponse(201, _certificate_document(issued))

    async def trust_bundle(self, request: ApiRequest) -> ApiResponse:
        self._limits.check(request.listener)
        return ApiResponse(200, {"certificate": await self._certs().trust_bundle()})

    async def manifest_trust_bundle(self, request: ApiRequest) -> ApiResponse:
        self._limits.check(request.listener)
        return ApiResponse(200, {"certificate": await self._certs().manifest_trust_bundle()})

    async def _admit(self, request: ApiRequest, module: str) -> None:
        self._limits.check(request.listener)
        await self._access.check(request, module)


def _certificate_document(issued: IssuedCertificate) -> dict[str, object]:
    return {
        "privateKey": {"type": "key", "bytes": issued.private_key_pem},
        "certificate": issued.certificate_pem,
        "expiration": issued.expiration.isoformat().replace("+00:00", "Z"),
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
