"""Debian packages the build, the sim board and the tests need, installed with apt when missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from buildkit.log import BuildError, log
from buildkit.paths import VENV_PYTHON
from buildkit.shell import run

# Value: why, for the log.
APT_PACKAGES = {
    "docker.io": "private dockerd for the sim board and tests",
    "swtpm": "TPM 2.0 simulator",
    "swtpm-tools": "swtpm_setup and friends",
    "softhsm2": "PKCS#11 token for tests",
    "libtss2-dev": "tpm2-tss headers and libraries (tpm2-pytss builds against them)",
    "tpm2-tools": "TPM command line tools used by tests",
    "patchelf": "Nuitka standalone needs it to set rpaths",
    "busybox-static": "minimal container rootfs for the binary test",
    "squashfs-tools": "mksquashfs packs the program into the bundle's read-only image",
    "pkg-config": "tpm2-pytss finds tpm2-tss with it",
    "ccache": "Nuitka reuses compiled C objects between builds",
    "gcc": "C compiler for Nuitka and cffi",
    "libc6-dev": "C headers for Nuitka and cffi",
    "libssl-dev": "OpenSSL 3 headers for the TLS binding (ffi/openssl_build.py)",
}


def missing_debian_packages(packages: list[str]) -> list[str]:
    if shutil.which("dpkg-query") is None:
        raise BuildError("dpkg-query not found: build.py sets up Debian-based machines only")
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    )
    installed = {
        line.split()[0].split(":")[0]
        for line in result.stdout.splitlines()
        if line.endswith(" installed")
    }
    return [package for package in packages if package not in installed]


def python_packages_needed() -> list[str]:
    """Debian packages the interpreter running build.py lacks for a venv and for compiling."""
    needed = []
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        needed.append(f"python3.{sys.version_info.minor}-dev")
    try:
        import ensurepip  # noqa: F401  (Debian ships it apart, in python3.X-venv)
        import venv  # noqa: F401
    except ImportError:
        needed.append(f"python3.{sys.version_info.minor}-venv")
    return needed


def install_debian_packages() -> None:
    wanted = list(APT_PACKAGES)
    if not VENV_PYTHON.exists():
        wanted += python_packages_needed()
    missing = missing_debian_packages(wanted)
    if not missing:
        return
    if os.geteuid() != 0:
        raise BuildError(
            f"missing Debian packages {' '.join(missing)}: run as root or apt-get install them"
        )
    for package in missing:
        log(f"installing {package}: {APT_PACKAGES.get(package, 'Python headers / venv support')}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", NEEDRESTART_MODE="a")
    if not any(Path("/var/lib/apt/lists").glob("*Packages*")):
        run(["apt-get", "update", "-q"], env=env)
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if run(install, env=env, check=False).returncode != 0:
        run(["apt-get", "update", "-q"], env=env)
        run(install, env=env)
