"""A workload API in-process: file-backed key service, certificate service, module identities,
a router with the workload and identity routes. Tests drive it through `Router.dispatch`, or
serve it on real sockets (`ModuleSockets`)."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.api.management import identities as identity_routes
from firmware.api.model import ApiRequest, ApiResponse, PeerCredentials
from firmware.api.router import Router
from firmware.api.workload.access import ContainerLookup, WorkloadAccess
from firmware.api.workload.ratelimit import ModuleBudgets, RateLimit, SocketRateLimits
from firmware.api.workload.routes import WorkloadApi
from firmware.certs.policy import CertificatePolicy
from firmware.certs.service import CertificateService
from firmware.config.schema import WorkloadBudgets
from firmware.executor import BoundedExecutor
from firmware.identity.modules import ModuleIdentities
from firmware.keys.file import FileBackend
from firmware.keys.registry import BackendRegistry
from firmware.keys.service import KeyService
from firmware.store.state import StateStore

API_VERSION = "2020-10-10"


@dataclass
class WorkloadRig:
    root: Path
    executor: BoundedExecutor
    keys: KeyService
    certs: CertificateService
    identities: ModuleIdentities
    router: Router
    limits: SocketRateLimits

    async def call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        listener: str = "workload",
        version: str | None = API_VERSION,
        peer: PeerCredentials | None = None,
        raw: bytes | None = None,
    ) -> ApiResponse:
        query = {} if version is None else {"api-version": version}
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        request = ApiRequest(method, path, query=query, body=data, listener=listener, peer=peer)
        return await self.router.dispatch(request)

    async def sign(self, module: str, genid: str, data: bytes, **kwargs: Any) -> ApiResponse:
        body = {"keyId": "primary", "algo": "HMACSHA256", "data": b64(data)}
        return await self.call("POST", f"/modules/{module}/genid/{genid}/sign", body, **kwargs)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@contextlib.asynccontextmanager
async def workload_rig(
    root: Path,
    *,
    containers: ContainerLookup | None = None,
    limit: RateLimit | None = None,
    budgets: WorkloadBudgets | None = None,
    policy: dict[str, Any] | None = None,
) -> AsyncIterator[WorkloadRig]:
    """`budgets` default to ample ones; `policy` changes the `CertificatePolicy`."""
    executor = BoundedExecutor()
    registry = BackendRegistry("file", {"file": lambda: FileBackend(root / "keys")})
    keys = KeyService(registry, executor)
    await keys.start()
    settings = {"directory": root / "certs", "hostname": "testbox", **(policy or {})}
    certs = CertificateService(keys, CertificatePolicy(**settings), executor)
    await certs.start()
    identities = ModuleIdentities(keys, StateStore(root / "state"), executor.run)
    await identities.start()
    router = Router()
    limits = SocketRateLimits(limit or RateLimit(rate=100000.0, burst=100000))
    access = WorkloadAccess(containers, executor.run)
    ample = WorkloadBudgets(100000, 100000, 100000, 100000)
    spend = ModuleBudgets(lambda: budgets or ample)
    WorkloadApi(lambda: identities, lambda: certs, access, limits, spend).register(router)
    for method, pattern, handler in identity_routes.routes(lambda: identities):
        router.add(method, pattern, handler)
    try:
        yield WorkloadRig(root, executor, keys, certs, identities, router, limits)
    finally:
        await certs.stop()
        await keys.close()
        executor.shutdown()
