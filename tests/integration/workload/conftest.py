"""The module image of the workload tests: the static busybox plus `uds_http` (a tiny static HTTP
client over unix sockets, built here with gcc -static), imported into the private dockerd."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.peers.sim import busybox_rootfs

HERE = Path(__file__).resolve().parent
CLIENT_TAG = "edgekeeper-test/workload-client:latest"


@pytest.fixture(scope="session")
def client_image(sim_dockerd, tmp_path_factory: pytest.TempPathFactory) -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is needed to build the test client: apt-get install gcc libc6-dev")
    rootfs = busybox_rootfs(tmp_path_factory.mktemp("client-rootfs"))
    built = subprocess.run(
        [gcc, "-static", "-O2", "-o", str(rootfs / "bin" / "uds_http"), str(HERE / "uds_http.c")],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        pytest.fail(f"cannot build uds_http statically (install libc6-dev): {built.stderr}")
    (rootfs / "var" / "run").mkdir(parents=True)
    return sim_dockerd.import_image(rootfs, CLIENT_TAG)
