"""The "keys" and "certs" daemon services through the router, as the CLI and console reach them.

A backend that cannot open (a PKCS#11 module that does not exist) is reported and does not stop
the other backends or the daemon.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from firmware.api.model import ApiRequest
from firmware.api.router import Router
from firmware.api.versions import LATEST
from firmware.certs.daemon import CertificatesService
from firmware.cli.commands import InProcessInvoker, execute
from firmware.config import load_config
from firmware.daemon.service import ServiceDirectory
from firmware.executor import BoundedExecutor
from firmware.keys.backend import KeyKind
from firmware.keys.daemon import KeysService, key_service


def make_ctx(tmp_path, extra=""):
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        f'[paths]\ndata_dir = "{tmp_path}/data"\nrun_dir = "{tmp_path}/run"\n{extra}'
    )
    return SimpleNamespace(
        config=load_config(config_file),
        router=Router(),
        executor=BoundedExecutor(),
        services=ServiceDirectory(),
    )


def request(method, path):
    return ApiRequest(method=method, path=path, query={"api-version": LATEST})


async def start(ctx, *services):
    tasks = []
    for service in services:
        ctx.services.add(service)
        await service.prepare(ctx)
        tasks.append(asyncio.create_task(service.run(ctx)))
    return tasks


async def stop(tasks):
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_keys_and_certificates_routes(tmp_path):
    ctx = make_ctx(tmp_path, "[certificates]\nrenew_at_percent = 80\n")

    async def scenario():
        keys_service, certs_service = KeysService(), CertificatesService()
        tasks = await start(ctx, keys_service, certs_service)
        await certs_service.wait_ready()
        keys = await key_service(ctx)
        await keys.create_key("device-identity", KeyKind.HMAC_SHA256)
        listed = (await ctx.router.dispatch(request("GET", "/keys"))).json()
        certs = (await ctx.router.dispatch(request("GET", "/certificates"))).json()
        renewed = await ctx.router.dispatch(request("POST", "/certificates/workload-ca/renew"))
        missing = await ctx.router.dispatch(request("POST", "/certificates/nope/renew"))
        invoker = InProcessInvoker(ctx.router)
        shown = {
            words: await execute(words.split(), invoker)
            for words in ("keys list", "certs list", "certs renew edge-ca", "certs renew nope")
        }
        await stop(tasks)
        # a restarted service registers nothing twice
        again = KeysService()
        await again.prepare(ctx)
        return listed, certs, renewed, missing, shown

    listed, certs, renewed, missing, shown = asyncio.run(scenario())
    ctx.executor.shutdown()
    names = {(k["name"], k["kind"], k["backend"]) for k in listed["keys"]}
    assert ("device-identity", "hmac-sha256", "file") in names
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
    assert keys_text[0].split() == ["NAME", "KIND", "BACKEND"]
    assert any(line.split() == ["device-identity", "hmac-sha256", "file"] for line in keys_text)
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
def test_unusable_backend_is_reported_and_others_keep_serving(tmp_path, backend):
    section, device = MISSING_DEVICES[backend]
    ctx = make_ctx(tmp_path, f'[keys.backends]\nhsm-key = "{backend}"\n{section}')

    async def scenario():
        service = KeysService()
        tasks = await start(ctx, service)
        keys = await service.wait_ready()
        await keys.create_key("local", KeyKind.AES_256)
        listed = (await ctx.router.dispatch(request("GET", "/keys"))).json()
        failure = None
        try:
            await keys.create_key("hsm-key", KeyKind.AES_256)
        except Exception as err:
            failure = err
        await stop(tasks)
        return listed, failure

    listed, failure = asyncio.run(scenario())
    ctx.executor.shutdown()
    assert ("local", "aes-256", "file") in {
        (k["name"], k["kind"], k["backend"]) for k in listed["keys"]
    }
    [problem] = listed["unavailable"]
    assert problem["backend"] == backend
    assert device in problem["message"]
    assert failure is not None and failure.http_status == 503
    assert device in failure.render()


@pytest.mark.parametrize("backend", sorted(MISSING_DEVICES))
def test_keys_route_answers_503_while_the_default_backend_is_down(tmp_path, backend):
    section, device = MISSING_DEVICES[backend]
    ctx = make_ctx(tmp_path, f'[keys]\ndefault_backend = "{backend}"\n{section}')

    async def scenario():
        service = KeysService()
        ctx.services.add(service)
        await service.prepare(ctx)
        task = asyncio.create_task(service.run(ctx))
        await asyncio.gather(task, return_exceptions=True)
        answer = await ctx.router.dispatch(request("GET", "/keys"))
        return task, answer

    task, answer = asyncio.run(scenario())
    ctx.executor.shutdown()
    assert device in task.exception().render()
    assert answer.status == 503
    assert "not ready" in answer.json()["message"]
