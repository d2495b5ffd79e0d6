"""The built binary runs on a rootfs holding only busybox and the libraries `ldd` lists for it.

The image is made from the static busybox plus exactly the files `ldd` names for
dist/sim/edgekeeper and for the program it unpacks (glibc: libc, libm and the loader), imported
into the private dockerd and run with no network.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from tests.peers.sim import Dockerd, busybox_rootfs
from tests.peers.waiting import WaitTimeout, wait_until

pytestmark = pytest.mark.binary

REPO = Path(__file__).resolve().parents[2]
IN_IMAGE = "/usr/bin/edgekeeper"

GOOD_CONFIG = """\
[paths]
data_dir = "/var/lib/edgekeeper"
run_dir = "/run/edgekeeper"

[console]
device = "none"

[logging]
level = "info"
"""

BAD_CONFIG = """\
[console]
device = "none"
bogus_setting = 1

[logging]
level = "loud"
"""


def product_version() -> str:
    text = (REPO / "firmware" / "__init__.py").read_text()
    return re.search(r'__version__\s*=\s*"([^"]+)"', text).group(1)


def ldd_libraries(binary: Path) -> list[Path]:
    """Every file `ldd` resolves for `binary`, the dynamic loader included."""
    listing = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True)
    libraries = []
    for line in listing.stdout.splitlines():
        found = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if found:
            libraries.append(Path(found.group(1)))
    assert libraries, f"ldd found no libraries for {binary}:\n{listing.stdout}"
    return libraries


def unpacked_program(binary: Path, cache_home: Path) -> Path:
    """The program a onefile binary unpacks and runs (itself when it is not a onefile build)."""
    env = {"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(cache_home)}
    subprocess.run([str(binary), "version"], env=env, capture_output=True, check=True)
    unpacked = sorted(cache_home.glob("edgekeeper/*/edgekeeper.bin"))
    return unpacked[0] if unpacked else binary


@pytest.fixture(scope="module")
def binary_image(
    sim_dockerd: Dockerd, edgekeeper_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    rootfs = busybox_rootfs(tmp_path_factory.mktemp("binary-rootfs"))
    target = rootfs / IN_IMAGE.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(edgekeeper_binary, target)
    program = unpacked_program(edgekeeper_binary, tmp_path_factory.mktemp("unpack"))
    for library in {*ldd_libraries(edgekeeper_binary), *ldd_libraries(program)}:
        copy = rootfs / str(library).lstrip("/")
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library.resolve(), copy)
    etc = rootfs / "etc" / "edgekeeper"
    etc.mkdir(parents=True)
    (etc / "good.toml").write_text(GOOD_CONFIG)
    (etc / "bad.toml").write_text(BAD_CONFIG)
    for directory in ("var/lib/edgekeeper", "run/edgekeeper", "root"):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
    assert not (rootfs / "usr" / "lib" / "locale").exists()
    return sim_dockerd.import_image(rootfs, f"edgekeeper-test/binary:{uuid.uuid4().hex[:12]}")


def run_in_image(
    engine: Dockerd, image: str, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    options = [f"--env={key}={value}" for key, value in (env or {}).items()]
    return engine.docker(
        "run", "--rm", "--network", "none", *options, image, IN_IMAGE, *argv, check=False
    )


def test_version_prints_the_product_version(sim_dockerd: Dockerd, binary_image: str) -> None:
    result = run_in_image(sim_dockerd, binary_image, "version")
    assert result.returncode == 0, result.stderr
    assert product_version() in result.stdout


def test_config_validate_accepts_a_good_file(sim_dockerd: Dockerd, binary_image: str) -> None:
    result = run_in_image(
        sim_dockerd, binary_image, "config", "validate", "/etc/edgekeeper/good.toml"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_validate_rejects_a_bad_file(sim_dockerd: Dockerd, binary_image: str) -> None:
    result = run_in_image(
        sim_dockerd, binary_image, "config", "validate", "/etc/edgekeeper/bad.toml"
    )
    output = result.stdout + result.stderr
    assert result.returncode not in (0, 139), output
    assert result.returncode < 128, f"died from a signal: {output}"
    assert "bogus_setting" in output
    assert "level" in output


def test_runs_without_locale_files_whatever_lang_says(
    sim_dockerd: Dockerd, binary_image: str
) -> None:
    for env in ({"LANG": "C.UTF-8"}, {"LC_ALL": "de_DE.UTF-8"}, {"LC_CTYPE": "C.UTF-8"}):
        result = run_in_image(sim_dockerd, binary_image, "version", env=env)
        assert result.returncode == 0, f"{env}: exit {result.returncode}: {result.stderr}"
        assert product_version() in result.stdout


def test_daemon_starts_and_answers_status(sim_dockerd: Dockerd, binary_image: str) -> None:
    name = f"edgekeeper-{uuid.uuid4().hex[:8]}"
    sim_dockerd.docker(
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "none",
        "--env",
        "LANG=C.UTF-8",
        binary_image,
        IN_IMAGE,
        "run",
        "--config",
        "/etc/edgekeeper/good.toml",
    )
    try:
        attempts: list[subprocess.CompletedProcess[str]] = []

        def answers() -> bool:
            attempts.append(sim_dockerd.docker("exec", name, IN_IMAGE, "status", check=False))
            return attempts[-1].returncode == 0

        try:
            wait_until(answers, timeout_s=20, what="`status` inside the container", interval_s=0.2)
        except WaitTimeout:
            logs = sim_dockerd.docker("logs", name, check=False)
            last = attempts[-1]
            raise AssertionError(
                f"status: {last.stdout}{last.stderr}\ndaemon log:\n{logs.stdout}{logs.stderr}"
            ) from None
        status = attempts[-1]
        assert product_version() in status.stdout
        assert "running" in status.stdout
        started = time.monotonic()
        sim_dockerd.docker("stop", "--time", "15", name)
        assert time.monotonic() - started < 10, "SIGTERM did not stop the daemon promptly"
        state = sim_dockerd.docker("inspect", "--format", "{{.State.ExitCode}}", name)
        assert state.stdout.strip() == "0", sim_dockerd.docker("logs", name, check=False).stderr
    finally:
        sim_dockerd.docker("rm", "--force", name, check=False)


def test_bundle_is_a_rootfs_overlay(edgekeeper_binary: Path, tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, str(REPO / "build.py"), "bundle", "--board", "sim"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    tarball = Path(built.stdout.strip().splitlines()[-1])
    assert tarball.name == f"edgekeeper-sim-{product_version()}.tar.gz"
    with tarfile.open(tarball) as bundle:
        names = {member.name.removeprefix("./") for member in bundle.getmembers()}
        bundle.extractall(tmp_path, filter="data")
    for path in (
        "usr/bin/edgekeeper",
        "etc/edgekeeper/config.toml",
        "lib/systemd/system/edgekeeper.service",
        "usr/lib/tmpfiles.d/edgekeeper.conf",
        "lib/udev/rules.d/60-edgekeeper.rules",
    ):
        assert path in names
    assert (tmp_path / "usr/bin/edgekeeper").read_bytes() == edgekeeper_binary.read_bytes()
    unit = (tmp_path / "lib/systemd/system/edgekeeper.service").read_text()
    for line in ("Type=notify", "NotifyAccess=main", "Restart=on-failure", "WatchdogSec="):
        assert line in unit
    assert "@" not in unit.replace("$MAINPID", "")
    program = re.search(r"^ExecStart=(\S+)", unit, re.M).group(1)
    cache_home = tmp_path / "var" / "cache"
    unpacked = unpacked_program(tmp_path / "usr/bin/edgekeeper", cache_home)
    assert str(unpacked).endswith(program.removeprefix("/var/cache")), (unpacked, program)
    assert "d /run/edgekeeper" in (tmp_path / "usr/lib/tmpfiles.d/edgekeeper.conf").read_text()
    validate = subprocess.run(
        [
            str(tmp_path / "usr/bin/edgekeeper"),
            "config",
            "validate",
            str(tmp_path / "etc/edgekeeper/config.toml"),
        ],
        env={"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(cache_home)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
