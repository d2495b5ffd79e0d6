"""`WorkloadApi`: the workload API's handlers, wire-compatible with IoT Edge's workload API.

- `POST /modules/{name}/genid/{genid}/sign` `{"keyId","algo","data"}` -> `{"digest"}`
- `POST /modules/{name}/genid/{genid}/encrypt` `{"plaintext","initializationVector"}`
  -> `{"ciphertext"}`; `.../decrypt` `{"ciphertext","initializationVector"}` -> `{"plaintext"}`
- `GET /trust-bundle`, `GET /manifest-trust-bundle` -> `{"certificate"}`; with no manifest trust
  bundle configured, `{"certificate": ""}` as IoT Edge answers (edgeAgent and edgeHub read the
  empty text as "no manifest signing" and fail at start on a 404). Like edgelet, both at every
  api-version (edge-util's 2020-07-07 client asks for the manifest trust bundle at 2020-07-07)
- `POST /modules/{name}/genid/{genid}/certificate/server` `{"commonName","expiration"}` and
  `POST /modules/{name}/certificate/identity` -> 201 `{"privateKey": {"type": "key", "bytes"},
  "certificate", "expiration"}`

Every request first passes the socket's rate limit, then the module check (`WorkloadAccess`).
sign uses the module's primary or secondary key, encrypt/decrypt its encryption key, at the given
generation (404 for any other generation; see `firmware.identity.modules`). Server certificates
name only what the module may claim, and carry the path's module id without its `$` besides the
common name, as IoT Edge's do (`firmware.certs.server_names`). Certificates and key operations
spend the module's and the global budget (`ModuleBudgets`, 429 with Retry-After once spent) once
the request is found well-formed and allowed, just before the costly work. Keys stay in the key
service; certificate private keys are made per request and returned, never stored.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING

from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import Router
from firmware.api.workload import requests
from firmware.api.workload.access import WorkloadAccess
from firmware.api.workload.ratelimit import ModuleBudgets, SocketRateLimits
from firmware.identity.modules import ModuleIdentities

if TYPE_CHECKING:
    from firmware.certs.service import CertificateService, IssuedCertificate

LISTENERS = ("workload",)


class WorkloadApi:
    """The workload API's handlers; the services behind them are found at request time.

    `identities()` and `certs()` return the running `ModuleIdentities` and `CertificateService`,
    or raise `Unavailable`. `limits` and `budgets` outlive the services (made once by the wiring).
    """

    def __init__(
        self,
        identities: Callable[[], ModuleIdentities],
        certs: Callable[[], CertificateService],
        access: WorkloadAccess,
        limits: SocketRateLimits,
        budgets: ModuleBudgets,
    ) -> None:
        self._identities = identities
        self._certs = certs
        self._access = access
        self._limits = limits
        self._budgets = budgets

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
        router.add("GET", "/manifest-trust-bundle", self.manifest_trust_bundle, listeners=LISTENERS)

    async def sign(self, request: ApiRequest, name: str, genid: str) -> ApiResponse:
        await self._admit(request, name)
        parsed = requests.parse_sign(request.json_object())
        self._budgets.key_operations.spend(name)
        digest = await self._identities().sign(name, genid, parsed.key, parsed.data)
        return ApiResponse(200, {"digest": _b64(digest)})

    async def encrypt(self, request: ApiRequest, name: str, genid: str) -> ApiResponse:
        await self._admit(request, name)
        parsed = requests.parse_encrypt(request.json_object())
        self._budgets.key_operations.spend(name)
        sealed = await self._identities().encrypt(name, genid, parsed.iv, parsed.data)
        return ApiResponse(200, {"ciphertext": _b64(sealed)})

    async def decrypt(self, request: ApiRequest, name: str, genid: str) -> ApiResponse:
        await self._admit(request, name)
        parsed = requests.parse_decrypt(request.json_object())
        self._budgets.key_operations.spend(name)
        opened = await self._identities().decrypt(name, genid, parsed.iv, parsed.data)
        return ApiResponse(200, {"plaintext": _b64(opened)})

    async def server_certificate(self, request: ApiRequest, name: str, genid: str) -> ApiResponse:
        await self._admit(request, name)
        parsed = requests.parse_server_certificate(request.json_object())
        self._identities().at_generation(name, genid)
        certs = self._certs()
        certs.module_server_names(name, parsed.common_name)
        self._budgets.certificates.spend(name)
        issued = await certs.issue_module_server_certificate(
            name, parsed.common_name, parsed.expiration
        )
        return ApiResponse(201, _certificate_document(issued))

    async def identity_certificate(self, request: ApiRequest, name: str) -> ApiResponse:
        await self._admit(request, name)
        parsed = requests.parse_identity_certificate(
            request.json_object() if request.body.strip() else None
        )
        self._identities().get(name)
        self._budgets.certificates.spend(name)
        issued = await self._certs().issue_identity_certificate(name, parsed.expiration)
        return ApiResponse(201, _certificate_document(issued))

    async def trust_bundle(self, request: ApiRequest) -> ApiResponse:
        self._limits.check(request.listener)
        return ApiResponse(200, {"certificate": await self._certs().trust_bundle()})

    async def manifest_trust_bundle(self, request: ApiRequest) -> ApiResponse:
        self._limits.check(request.listener)
        bundle = await self._certs().manifest_trust_bundle()
        return ApiResponse(200, {"certificate": "" if bundle is None else bundle})

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
