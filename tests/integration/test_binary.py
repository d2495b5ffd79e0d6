"""The built program runs on a rootfs holding only busybox and the libraries `ldd` lists for it.

The image is made from the static busybox, the program directory dist/sim/edgekeeper.dist where
the bundle mounts it, and exactly the files outside it that `ldd` names for its executables and
libraries (glibc: libc, libm and the loader), imported into the private dockerd and run with no
network. The bundle is unpacked, its squashfs image mounted as the gateway's mount unit does, and
the command it installs run from there.
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
PROGRAM_DIR = "usr/lib/edgekeeper/program"

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
    return libraries


def elf_files(directory: Path) -> list[Path]:
    return [
        path
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not path.is_symlink() and path.read_bytes()[:4] == b"\x7fELF"
    ]


@pytest.fixture(scope="module")
def binary_image(
    sim_dockerd: Dockerd, edgekeeper_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    rootfs = busybox_rootfs(tmp_path_factory.mktemp("binary-rootfs"))
    program_dir = edgekeeper_binary.resolve().parent
    shutil.copytree(program_dir, rootfs / PROGRAM_DIR, symlinks=True)
    command = rootfs / IN_IMAGE.lstrip("/")
    command.parent.mkdir(parents=True, exist_ok=True)
    command.symlink_to(f"/{PROGRAM_DIR}/{edgekeeper_binary.resolve().name}")
    assert ldd_libraries(edgekeeper_binary), f"ldd found no libraries for {edgekeeper_binary}"
    outside = {
        library
        for elf in elf_files(program_dir)
        for library in ldd_libraries(elf)
        if program_dir not in library.resolve().parents
    }
    for library in outside:
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
        "usr/lib/edgekeeper/program.squashfs",
        "lib/systemd/system/usr-lib-edgekeeper-program.mount",
        "etc/edgekeeper/config.toml",
        "lib/systemd/system/edgekeeper.service",
        "usr/lib/tmpfiles.d/edgekeeper.conf",
        "lib/udev/rules.d/60-edgekeeper.rules",
    ):
        assert path in names
    unit = (tmp_path / "lib/systemd/system/edgekeeper.service").read_text()
    for line in ("Type=notify", "NotifyAccess=main", "Restart=on-failure", "WatchdogSec="):
        assert line in unit
    assert "@" not in unit.replace("$MAINPID", "")
    program = re.search(r"^ExecStart=(\S+)", unit, re.M).group(1)
    assert program == f"/{PROGRAM_DIR}/edgekeeper"
    assert "d /run/edgekeeper" in (tmp_path / "usr/lib/tmpfiles.d/edgekeeper.conf").read_text()
    mount_point = tmp_path / PROGRAM_DIR
    assert mount_point.is_dir() and not any(mount_point.iterdir())
    image = tmp_path / "usr/lib/edgekeeper/program.squashfs"
    subprocess.run(
        ["mount", "-t", "squashfs", "-o", "loop,ro,nodev,nosuid", image, mount_point], check=True
    )
    try:
        assert (mount_point / "edgekeeper").read_bytes() == edgekeeper_binary.read_bytes()
        command = tmp_path / "usr/bin/edgekeeper"
        assert command.resolve() == mount_point / "edgekeeper"
        env = {"PATH": "/usr/bin:/bin"}
        version = subprocess.run(
            [command, "version"], env=env, capture_output=True, text=True, check=False
        )
        assert version.returncode == 0 and product_version() in version.stdout, version.stderr
        validate = subprocess.run(
            [command, "config", "validate", tmp_path / "etc/edgekeeper/config.toml"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert validate.returncode == 0, validate.stdout + validate.stderr
    finally:
        subprocess.run(["umount", mount_point], check=True)
