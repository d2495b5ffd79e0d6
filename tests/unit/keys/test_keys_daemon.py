"""The "keys" and "certs" daemon services through the router, as the CLI and console reach them.

A backend that cannot open (a PKCS#11 module that does not exist) is reported and does not stop
the other backends or the daemon.
"""

from __future__ import annotations

import asyncio
import io
import os
import time

import pytest

from firmware.api.model import ApiRequest
from firmware.api.router import Router
from firmware.api.versions import LATEST
from firmware.cli.commands import InProcessInvoker, execute
from firmware.cli.terminal import Terminal
from firmware.config import load_config
from firmware.daemon.logs import LogControl
from firmware.daemon.service import ConfigCell, DaemonContext, Service, ServiceDirectory
from firmware.daemon.status import DaemonStatus
from firmware.daemon.supervisor import Supervisor
from firmware.daemon.wiring import Wiring
from firmware.executor import BoundedExecutor
from firmware.keys.backend import KeyKind, SignAlgorithm
from firmware.store.state import StateStore

# A terminal of unknown width: tables are not cut, so the tests see every cell whole.
UNCUT = Terminal(columns=0, write=lambda text: None)


class Daemonless:
    """The daemon's wiring (every route registered once) without the daemon: services are made
    from the catalogue and run by the test."""

    def __init__(self, tmp_path, extra=""):
        config_file = tmp_path / "config.toml"
        config_file.write_text(
            f'[paths]\ndata_dir = "{tmp_path}/data"\nrun_dir = "{tmp_path}/run"\n{extra}'
        )
        config_file.chmod(0o600)  # it may hold a PIN: the loader refuses one others can read
        self.logs = LogControl(stream=io.StringIO())
        self.executor = BoundedExecutor()
        self.ctx = DaemonContext(
            config_cell=ConfigCell(load_config(config_file)),
            store=StateStore(tmp_path / "data" / "state"),
            router=Router(),
            executor=self.executor,
            supervisor=Supervisor(),
            logs=self.logs,
            started_at=time.time(),
            services=ServiceDirectory(),
            request_stop=lambda: None,
        )
        self.wiring = Wiring(self.ctx)
        self.wiring.register_routes(DaemonStatus(self.ctx, lambda: "running"))
        self.router = self.ctx.router
        self.services = self.ctx.services

    def create(self, name: str) -> Service:
        (entry,) = [entry for entry in self.wiring.catalogue if entry.name == name]
        return entry.create(self.ctx)

    def close(self) -> None:
        self.executor.shutdown()
        self.logs.close()


@pytest.fixture
def daemonless():
    made = []

    def make(tmp_path, extra=""):
        made.append(Daemonless(tmp_path, extra))
        return made[-1]

    yield make
    for each in made:
        each.close()


def request(method, path):
    return ApiRequest(method=method, path=path, query={"api-version": LATEST})


async def start(*services):
    tasks = []
    for service in services:
        await service.prepare()
        tasks.append(asyncio.create_task(service.run()))
    return tasks


async def stop(tasks):
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_keys_and_certificates_routes(tmp_path, daemonless):
    daemon = daemonless(tmp_path, "[certificates]\nrenew_at_percent = 80\n")
    router = daemon.router

    async def scenario():
        keys_service, certs_service = daemon.create("keys"), daemon.create("certs")
        assert (daemon.services.keys, daemon.services.certs) == (keys_service, certs_service)
        tasks = await start(keys_service, certs_service)
        await certs_service.wait_ready()
        keys = await daemon.services.require_keys().wait_ready()
        await keys.create_key("device-identity", KeyKind.HMAC_SHA256)
        listed = (await router.dispatch(request("GET", "/keys"))).json()
        certs = (await router.dispatch(request("GET", "/certificates"))).json()
        renewed = await router.dispatch(request("POST", "/certificates/workload-ca/renew"))
        missing = await router.dispatch(request("POST", "/certificates/nope/renew"))
        invoker = InProcessInvoker(router)
        shown = {
            words: await execute(words.split(), invoker, terminal=UNCUT)
            for words in ("keys list", "certs list", "certs renew edge-ca", "certs renew nope")
        }
        await stop(tasks)
        stopped = await router.dispatch(request("GET", "/keys"))
        # A restarted service registers nothing: the route reaches the new one.
        routes = router.routes()
        again = daemon.create("keys")
        tasks = await start(again)
        await again.wait_ready()
        relisted = (await router.dispatch(request("GET", "/keys"))).json()
        await stop(tasks)
        assert router.routes() == routes
        return listed, certs, renewed, missing, shown, stopped, relisted

    listed, certs, renewed, missing, shown, stopped, relisted = asyncio.run(scenario())
    assert stopped.status == 503 and "not ready" in stopped.json()["message"]
    assert relisted == listed
    names = {(k["name"], k["kind"], k["backend"]) for k in listed["keys"]}
    assert ("device-identity", "hmac-sha256", "file") in names
    assert {k["location"] for k in listed["keys"]} == {"recorded"}
    assert daemon.ctx.store.get("key-locations")["keys"]["device-identity"] == "file"
    assert ("edge-ca", "ec-p256", "file") in names
    assert listed["unavailable"] == []
    by_name = {c["name"]: c for c in certs["certificates"]}
    assert set(by_name) == {"edge-ca-root", "edge-ca", "workload-ca"}
    assert by_name["edge-ca"]["issuer"].startswith("CN=edgekeeper quickstart root")
    assert by_name["workload-ca"]["backend"] == "file"
    assert by_name["edge-ca"]["daysLeft"] > 89
    assert renewed.status == 200
    assert renewed.json()["notAfter"] >= by_name["workload-ca"]["notAfter"]
    assert missing.status == 404
    assert "nope" in missing.json()["message"]
    keys_text = shown["keys list"].text.splitlines()
    assert keys_text[0].split() == ["NAME", "KIND", "BACKEND", "NOTE"]
    assert any(
        line.split() == ["device-identity", "hmac-sha256", "file", "recorded", "here"]
        for line in keys_text
    )
    certs_text = shown["certs list"].text
    assert certs_text.startswith("NAME")
    assert "DAYS LEFT" in certs_text and "CN=edgekeeper workload CA" in certs_text
    assert shown["certs renew edge-ca"].text.startswith("renewed edge-ca: valid until ")
    assert shown["certs renew nope"].exit_code == 1
    assert "no managed certificate 'nope'" in shown["certs renew nope"].text
    assert (tmp_path / "data" / "keys").is_dir()
    assert (tmp_path / "data" / "certs" / "workload-ca.json").is_file()


MISSING_DEVICES = {
    "pkcs11": (
        '[keys.pkcs11]\nmodule = "/nonexistent/libvendor-pkcs11.so"\ntoken_label = "t"\n'
        'pin = "1234"\n',
        "libvendor-pkcs11.so",
    ),
    "tpm": ('[tpm]\ntcti = "device:/nonexistent/tpmrm9"\n', "/nonexistent/tpmrm9"),
}


@pytest.mark.parametrize("backend", sorted(MISSING_DEVICES))
def test_unusable_backend_is_reported_and_others_keep_serving(tmp_path, daemonless, backend):
    section, device = MISSING_DEVICES[backend]
    daemon = daemonless(tmp_path, f'[keys.backends]\nhsm-key = "{backend}"\n{section}')

    async def scenario():
        service = daemon.create("keys")
        tasks = await start(service)
        keys = await service.wait_ready()
        await keys.create_key("local", KeyKind.AES_256)
        listed = (await daemon.router.dispatch(request("GET", "/keys"))).json()
        failure = None
        try:
            await keys.create_key("hsm-key", KeyKind.AES_256)
        except Exception as err:
            failure = err
        await stop(tasks)
        return listed, failure

    listed, failure = asyncio.run(scenario())
    assert ("local", "aes-256", "file") in {
        (k["name"], k["kind"], k["backend"]) for k in listed["keys"]
    }
    [problem] = listed["unavailable"]
    assert problem["backend"] == backend
    assert device in problem["message"]
    assert failure is not None and failure.http_status == 503
    assert device in failure.render()


@pytest.mark.parametrize("backend", sorted(MISSING_DEVICES))
def test_keys_route_answers_503_while_the_default_backend_is_down(tmp_path, daemonless, backend):
    section, device = MISSING_DEVICES[backend]
    daemon = daemonless(tmp_path, f'[keys]\ndefault_backend = "{backend}"\n{section}')

    async def scenario():
        (task,) = await start(daemon.create("keys"))
        await asyncio.gather(task, return_exceptions=True)
        answer = await daemon.router.dispatch(request("GET", "/keys"))
        return task, answer

    task, answer = asyncio.run(scenario())
    assert device in task.exception().render()
    assert answer.status == 503
    assert "not ready" in answer.json()["message"]


def test_a_new_default_backend_keeps_the_keys_and_says_so(tmp_path, daemonless):
    section, device = MISSING_DEVICES["pkcs11"]

    async def sign_device_key(daemon):
        service = daemon.create("keys")
        tasks = await start(service)
        keys = await service.wait_ready()
        handle = await keys.create_key("device-identity", KeyKind.HMAC_SHA256)
        tag = await keys.sign(handle, SignAlgorithm.HMAC_SHA256, b"x")
        return service, tasks, keys, tag

    async def scenario():
        before = daemonless(tmp_path)
        _, tasks, _, tag = await sign_device_key(before)
        await stop(tasks)
        after = daemonless(tmp_path, f'[keys]\ndefault_backend = "pkcs11"\n{section}')
        service, tasks, keys, tag_after = await sign_device_key(after)
        refused = None
        try:
            await keys.create_key("new-key", KeyKind.AES_256)
        except Exception as err:
            refused = err
        status = service.describe()
        shown = await execute(["keys", "list"], InProcessInvoker(after.router), terminal=UNCUT)
        await stop(tasks)
        return tag, tag_after, refused, status, shown.text

    tag, tag_after, refused, status, text = asyncio.run(scenario())
    assert tag_after == tag
    assert refused is not None and refused.http_status == 503 and device in refused.render()
    assert not (tmp_path / "data" / "keys" / "new-key.key").exists()
    assert sorted(os.listdir(tmp_path / "data" / "keys")) == sorted(
        ["device-identity.key", "edgekeeper-handle-validation.key"]
    )
    assert status["degraded"] is True
    assert device in status["backends_down"]["pkcs11"]
    assert {moved["name"] for moved in status["keys_elsewhere"]} == {
        "device-identity",
        "edgekeeper-handle-validation",
    }
    assert (
        "device-identity lives in file, config names pkcs11: "
        "use `edgekeeper keys migrate device-identity --to pkcs11` to move it"
    ) in text.splitlines()
    assert any(
        line.split()[:3] == ["device-identity", "hmac-sha256", "file"]
        and line.endswith("recorded here; config names pkcs11 for new keys")
        for line in text.splitlines()
    )
