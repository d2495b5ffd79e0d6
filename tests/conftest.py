"""Shared session fixtures: the sim board's real components, each private to the test session.

`sim_dockerd`, `busybox_image`, `swtpm`, `softhsm` start a private dockerd, swtpm and SoftHSM2
token under pytest's temp dir and stop them when the session ends; `client_image` is busybox plus
`uds_http` (tests/peers/uds_http.c, a static HTTP client over unix sockets) for module containers;
`edgekeeper_binary` is the built `dist/sim/edgekeeper`; `gateway` starts daemons against the
private dockerd (tests/peers/gateway.py) and `cloud_peers` a DPS and two hubs on loopback HTTPS
(tests/peers/cloud.py). A missing component fails the test with the package to install.
`async def` tests run on a fresh event loop each.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.cloud_fixture import cloud_peers  # noqa: F401 (a fixture, found by name)
from tests.peers.gateway import gateway  # noqa: F401 (a fixture, found by name)
from tests.peers.sim import (
    Dockerd,
    MissingComponent,
    ServiceFailed,
    SoftHsm,
    Swtpm,
    busybox_rootfs,
)

REPO = Path(__file__).resolve().parent.parent
ASYNC_TEST_TIMEOUT_S = 20


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an `async def` test on a fresh event loop, bounded in time."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    coroutine = pyfuncitem.obj(**arguments)
    asyncio.run(asyncio.wait_for(coroutine, ASYNC_TEST_TIMEOUT_S))
    return True


BUSYBOX_TAG = "edgekeeper-test/busybox:latest"
CLIENT_TAG = "edgekeeper-test/workload-client:latest"
UDS_HTTP = REPO / "tests" / "peers" / "uds_http.c"


def _start(service) -> None:
    try:
        service.start()
    except (MissingComponent, ServiceFailed) as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def sim_dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    """A private dockerd (vfs, no bridge, no iptables) on its own unix socket."""
    engine = Dockerd(tmp_path_factory.mktemp("dockerd"))
    _start(engine)
    try:
        yield engine
    finally:
        # the session's containers go first, so `stop` can remove the networks they were on
        leftover = engine.docker("ps", "-aq", check=False).stdout.split()
        if leftover:
            engine.docker("rm", "-f", *leftover, check=False)
        engine.stop()


@pytest.fixture(scope="session")
def busybox_image(sim_dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Tag of an image holding only the static busybox, imported into `sim_dockerd`."""
    try:
        rootfs = busybox_rootfs(tmp_path_factory.mktemp("busybox-rootfs"))
        return sim_dockerd.import_image(rootfs, BUSYBOX_TAG)
    except (MissingComponent, ServiceFailed) as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def client_image(sim_dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Tag of busybox plus `uds_http` (built here with gcc -static), imported into `sim_dockerd`."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is needed to build the test client: apt-get install gcc libc6-dev")
    rootfs = busybox_rootfs(tmp_path_factory.mktemp("client-rootfs"))
    built = subprocess.run(
        [gcc, "-static", "-O2", "-o", str(rootfs / "bin" / "uds_http"), str(UDS_HTTP)],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        pytest.fail(f"cannot build uds_http statically (install libc6-dev): {built.stderr}")
    (rootfs / "var" / "run").mkdir(parents=True)
    return sim_dockerd.import_image(rootfs, CLIENT_TAG)


@pytest.fixture(scope="session")
def swtpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swtpm]:
    """A swtpm TPM 2.0 simulator on free loopback ports; `.restart()` power-cycles it."""
    tpm = Swtpm(tmp_path_factory.mktemp("swtpm"))
    _start(tpm)
    try:
        yield tpm
    finally:
        tpm.stop()


@pytest.fixture
def fresh_swtpm(tmp_path: Path) -> Iterator[Swtpm]:
    """A swtpm of this test alone (empty TPM state): for tests that change persistent handles or
    hierarchies, which the session's `swtpm` shares with every other test."""
    tpm = Swtpm(tmp_path / "swtpm")
    _start(tpm)
    try:
        yield tpm
    finally:
        tpm.stop()


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    """A SoftHSM2 token in a private token dir; SOFTHSM2_CONF points at it for the session."""
    hsm = SoftHsm(tmp_path_factory.mktemp("softhsm"))
    _start(hsm)
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(hsm.conf)
    try:
        yield hsm
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous
        hsm.remove()


@pytest.fixture(scope="session")
def edgekeeper_binary() -> Path:
    """The built binary: $EDGEKEEPER_BINARY, else dist/sim/edgekeeper brought up to date."""
    given = os.environ.get("EDGEKEEPER_BINARY")
    if given:
        path = Path(given)
        if not (path.is_file() and os.access(path, os.X_OK)):
            pytest.fail(
                f"EDGEKEEPER_BINARY={given} is not an executable file "
                "(run `python3 build.py build --board sim` or unset it)",
                pytrace=False,
            )
        return path.resolve()
    build = subprocess.run(
        [sys.executable, str(REPO / "build.py"), "build", "--board", "sim"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    path = REPO / "dist" / "sim" / "edgekeeper"
    if build.returncode != 0 or not path.is_file():
        tail = "\n".join((build.stdout + build.stderr).splitlines()[-30:])
        pytest.fail(
            f"could not build {path} (`python3 build.py build --board sim` "
            f"exited {build.returncode}):\n{tail}",
            pytrace=False,
        )
    return path
