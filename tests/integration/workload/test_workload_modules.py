"""End to end against a real dockerd: modules call the workload API from inside their containers.

The workload API runs in-process (file-backed key service, certificate service, module
identities); the runtime's reconciler creates the module containers through `WorkloadHook`, which
gives each module its identity, its own socket in a directory bind-mounted read-only at
/var/run/iotedge and the IOTEDGE_* environment; on a shared socket, a caller may act only as the
module whose container it runs in. The modules' image is the static busybox plus a tiny static
HTTP client (`tests/peers/uds_http.c`, built with gcc -static by the `client_image` fixture),
imported with `docker import`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from firmware.api import versions
from firmware.api.client import ApiClient
from firmware.api.server import ApiSocketServer
from firmware.api.workload.environment import DeviceFacts
from firmware.api.workload.hook import WorkloadHook, WorkloadPlacement
from firmware.api.workload.sockets import ModuleSockets
from firmware.errors import Forbidden
from firmware.identity.modules import MASTER_KEY, derivation_label
from firmware.keys.backend import SignAlgorithm
from firmware.runtime.backoff import BackoffPolicy
from firmware.runtime.desired import DesiredModules
from firmware.runtime.engine import DockerEngine
from firmware.runtime.reconciler import Reconciler
from firmware.runtime.spec import MODULE_LABEL, ModuleSpec, PullPolicy
from firmware.runtime.status import RunningContainer
from firmware.store.state import StateStore
from tests.peers.waiting import wait_until_async
from tests.unit.api.workload.workload_rig import API_VERSION, workload_rig

pytestmark = pytest.mark.docker

SHARED_IN_CONTAINER = "/var/run/shared-workload.sock"


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A short run directory (unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ekwl", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def module(name: str, image: str, shared: Path) -> ModuleSpec:
    return ModuleSpec(
        name=name,
        image=image,
        create_options={
            "Cmd": ["sleep", "3600"],
            "StopTimeout": 1,
            "HostConfig": {"NetworkMode": "none", "Binds": [f"{shared}:{SHARED_IN_CONTAINER}"]},
        },
        pull_policy=PullPolicy.NEVER,
    )


async def running_container(engine: DockerEngine, name: str) -> RunningContainer | None:
    """Module `name`'s running container as the engine shows it, or None."""
    for found in await engine.list_containers({MODULE_LABEL: name}):
        if found.state == "running":
            info = await engine.inspect(found.container_id)
            return RunningContainer(info["Id"], int(info["State"]["Pid"]))
    return None


class Modules:
    """Runs commands in the module containers (docker exec, off the event loop)."""

    def __init__(self, sim_dockerd, engine: DockerEngine) -> None:
        self.dockerd = sim_dockerd
        self.engine = engine

    async def container(self, name: str) -> str:
        running = await wait_until_async(
            lambda: running_container(self.engine, name),
            timeout_s=60,
            what=f"module {name}'s container to run",
            interval_s=0.1,
        )
        return running.container_id

    async def exec(self, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
        container = await self.container(name)
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.dockerd.docker("exec", container, *argv, check=False)
        )

    async def call(
        self, name: str, method: str, target: str, body: object = None, socket: str = ""
    ) -> tuple[int, object]:
        """`uds_http` in module `name`'s container against its own socket (or `socket`)."""
        sep = "&" if "?" in target else "?"
        argv = [
            "uds_http",
            socket or "/var/run/iotedge/workload.sock",
            method,
            f"{target}{sep}api-version={API_VERSION}",
        ]
        if body is not None:
            argv.append(json.dumps(body))
        result = await self.exec(name, *argv)
        assert result.returncode == 0, result.stderr
        status, _, text = result.stdout.partition("\n")
        return int(status), json.loads(text) if text.strip() else None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_modules_use_their_own_workload_socket(
    sim_dockerd, client_image, tmp_path: Path, run_dir: Path
) -> None:
    engine = DockerEngine(str(sim_dockerd.socket))
    a, b = f"wla{uuid.uuid4().hex[:6]}", f"wlb{uuid.uuid4().hex[:6]}"
    modules = Modules(sim_dockerd, engine)

    async def scenario() -> None:
        async with workload_rig(tmp_path, containers=partial(running_container, engine)) as rig:
            sockets = ModuleSockets(run_dir, rig.router)

            placement = WorkloadPlacement(
                rig.identities,
                sockets,
                lambda: DeviceFacts("dev-1", "hub.example.net", "gw.local"),
                rig.limits,
            )

            async def placed() -> WorkloadPlacement:
                return placement

            hook = WorkloadHook(placed, is_agent=lambda name: False)
            reconciler = Reconciler(
                engine,
                DesiredModules(StateStore(tmp_path / "runtime")),
                policy=BackoffPolicy(initial=0.5, factor=2.0, cap=4.0, reset_after=60.0),
                owner=f"wl-{uuid.uuid4().hex[:8]}",
                hooks=(hook,),
            )
            shared_path = run_dir / "workload.sock"
            shared = ApiSocketServer(
                f"unix://{shared_path}", rig.router, listener="workload", mode=0o666
            )
            await shared.start()
            task = asyncio.ensure_future(reconciler.run())
            try:
                await reconciler.put(module(a, client_image, shared_path))
                await reconciler.put(module(b, client_image, shared_path))
                await checks(rig, sockets, shared_path, reconciler)
                await reconciler.apply({})
                await wait_until_async(
                    lambda: not sockets.status(),
                    timeout_s=30,
                    what="the module sockets to be removed with their modules",
                )
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await shared.close()
                await sockets.close_all()
            assert not (run_dir / "mnt" / a).exists()

    async def checks(rig, sockets, shared_path, reconciler) -> None:
        await modules.container(a)
        await modules.container(b)
        env = (await modules.exec(a, "env")).stdout
        genid = rig.identities.get(a).generation_id
        for line in (
            f"IOTEDGE_MODULEID={a}",
            f"IOTEDGE_MODULEGENERATIONID={genid}",
            "IOTEDGE_WORKLOADURI=unix:///var/run/iotedge/workload.sock",
            "IOTEDGE_DEVICEID=dev-1",
            "IOTEDGE_IOTHUBHOSTNAME=hub.example.net",
            "IOTEDGE_GATEWAYHOSTNAME=gw.local",
            "IOTEDGE_AUTHSCHEME=sasToken",
            f"IOTEDGE_APIVERSION={versions.MODULE_DEFAULT}",
        ):
            assert line in env.splitlines(), env
        assert "IOTEDGE_MANAGEMENTURI" not in env
        assert (run_dir / "mnt" / a / "workload.sock").is_socket()

        # sign, checked against the key derived here through the key service
        data = f"hub.example.net%2Fdevices%2Fdev-1%2Fmodules%2F{a}\n1900000000".encode()
        sign = {"keyId": "primary", "algo": "HMACSHA256", "data": b64(data)}
        status, answer = await modules.call(a, "POST", f"/modules/{a}/genid/{genid}/sign", sign)
        assert status == 200, answer
        child = await rig.keys.derive(await rig.keys.load(MASTER_KEY), derivation_label(a, genid))
        expected = await rig.keys.sign(child, SignAlgorithm.HMAC_SHA256, data)
        assert base64.b64decode(answer["digest"]) == expected

        # encrypt / decrypt round trip
        iv = b64(os.urandom(12))
        base = f"/modules/{a}/genid/{genid}"
        status, sealed = await modules.call(
            a, "POST", f"{base}/encrypt", {"plaintext": b64(b"twin"), "initializationVector": iv}
        )
        assert status == 200, sealed
        status, opened = await modules.call(
            a,
            "POST",
            f"{base}/decrypt",
            {"ciphertext": sealed["ciphertext"], "initializationVector": iv},
        )
        assert status == 200 and base64.b64decode(opened["plaintext"]) == b"twin"

        # trust bundle and a server certificate, chain-verified, SANs checked
        status, bundle = await modules.call(a, "GET", "/trust-bundle")
        assert status == 200
        root = x509.load_pem_x509_certificates(bundle["certificate"].encode())[0]
        expiry = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        status, issued = await modules.call(
            a,
            "POST",
            f"{base}/certificate/server",
            {"commonName": a, "expiration": expiry},
        )
        assert status == 201, issued
        chain = x509.load_pem_x509_certificates(issued["certificate"].encode())
        for child_cert, parent in zip(chain, [*chain[1:], root], strict=True):
            child_cert.verify_directly_issued_by(parent)
        leaf = chain[0]
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == a
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(sans.get_values_for_type(x509.DNSName)) == {a}
        assert "PRIVATE KEY" in issued["privateKey"]["bytes"]

        # module b cannot act as a, on its socket or on the shared one, and cannot see a's socket
        status, refused = await modules.call(b, "POST", f"/modules/{a}/genid/{genid}/sign", sign)
        assert status == 403, refused
        assert f"belongs to module {b!r}" in refused["message"]
        listing = await modules.exec(b, "ls", "-a", "/var/run/iotedge")
        assert listing.stdout.split() == [".", "..", "workload.sock"]
        assert (await modules.exec(b, "ls", f"/var/run/{a}")).returncode != 0
        status, refused = await modules.call(
            b, "POST", f"/modules/{a}/genid/{genid}/sign", sign, socket=SHARED_IN_CONTAINER
        )
        assert status == 403, refused
        assert "is not in the container" in refused["message"]
        status, answer = await modules.call(
            a, "POST", f"/modules/{a}/genid/{genid}/sign", sign, socket=SHARED_IN_CONTAINER
        )
        assert status == 200 and base64.b64decode(answer["digest"]) == expected
        # the host (this test) is in no container: the shared socket refuses it
        host = ApiClient(f"unix://{shared_path}", api_version=API_VERSION)
        with pytest.raises(Forbidden, match="is not in the container"):
            await host.request("POST", f"/modules/{a}/genid/{genid}/sign", body=sign)
        # the socket directory is mounted read-only: a module can plant nothing there
        planted = await modules.exec(b, "ln", "-s", "/etc/passwd", "/var/run/iotedge/x.sock")
        assert planted.returncode != 0 and "Read-only file system" in planted.stderr
        statuses = {entry.module for entry in sockets.status()}
        assert {a, b} <= statuses

    try:
        asyncio.run(asyncio.wait_for(scenario(), 240))
    finally:

        async def remove() -> None:
            for name in (a, b):
                for found in await engine.list_containers({MODULE_LABEL: name}):
                    await engine.remove(found.container_id, force=True)

        asyncio.run(remove())
