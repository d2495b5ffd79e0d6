#!/usr/bin/env python3
"""Set up, build, run, test and bundle edgekeeper; standard library only, run by a bare python3.

    python3 build.py run                 set up, build the sim binary, start the sim services and
                                         run the daemon in the foreground until Ctrl-C
    python3 build.py test [PYTEST ARGS]  set up, build, run the test suite against the binary
    python3 build.py setup               Debian packages + .venv (implicit in the others)
    python3 build.py build [--board B]   cffi modules + Nuitka -> dist/B/edgekeeper (cached)
    python3 build.py sim start|stop|status
    python3 build.py bundle --board B    rootfs-overlay tarball dist/B/edgekeeper-B-VERSION.tar.gz

Every step is keyed on its inputs (stamp files under .cache/), so a second run only checks.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
CACHE = ROOT / ".cache"
STAMPS = CACHE / "stamps"
SIM_DIR = ROOT / ".sim"
DIST = ROOT / "dist"

# Debian packages: what the sim board and the build need. Value: why, for the log.
APT_PACKAGES = {
    "docker.io": "private dockerd for the sim board and tests",
    "swtpm": "TPM 2.0 simulator",
    "swtpm-tools": "swtpm_setup and friends",
    "softhsm2": "PKCS#11 token for tests",
    "libtss2-dev": "tpm2-tss headers and libraries (tpm2-pytss builds against them)",
    "tpm2-tools": "TPM command line tools used by tests",
    "patchelf": "Nuitka standalone needs it to set rpaths",
    "busybox-static": "minimal container rootfs for the binary test",
    "pkg-config": "tpm2-pytss finds tpm2-tss with it",
    "ccache": "Nuitka reuses compiled C objects between builds",
    "gcc": "C compiler for Nuitka and cffi",
    "libc6-dev": "C headers for Nuitka and cffi",
}

# Modules the compiled program loads without a static import (Nuitka would not see them) or that
# Nuitka's anti-bloat drops although the standard library needs them at run time.
NUITKA_INCLUDE_MODULES = ("_json", "_bisect", "json.decoder", "json.encoder", "bisect")
NUITKA_INCLUDE_PACKAGES = ("firmware", "serial.urlhandler")

# Libraries that Nuitka treats as "system" and does not bundle although a minimal rootfs may lack
# them: (library, where in the distribution the rpath of the module that needs it looks).
BUNDLED_SYSTEM_LIBRARIES = (
    ("libz.so.1", "."),
    ("libgcc_s.so.1", "cryptography/hazmat/bindings"),
)

# One file: `onefile` (see docs/build.md for the measurements behind the choice).
BUILD_MODE = "onefile"


def log(message: str) -> None:
    print(f"build.py: {message}", file=sys.stderr, flush=True)


def fail(message: str, code: int = 2) -> None:
    log(f"error: {message}")
    raise SystemExit(code)


def run(argv: list, **kwargs) -> subprocess.CompletedProcess:
    """Run a command; a failure or Ctrl-C ends build.py with one line (and stops the command)."""
    argv = [str(a) for a in argv]
    check = kwargs.pop("check", True)
    try:
        result = subprocess.run(argv, **kwargs, check=False)
    except FileNotFoundError as error:
        fail(f"{error.filename}: not found")
    except KeyboardInterrupt:
        log(f"interrupted: {argv[0]}")
        raise SystemExit(130) from None
    if check and result.returncode != 0:
        fail(f"`{' '.join(argv)}` exited {result.returncode}")
    return result


class BuildLock:
    """One build.py at a time may set up or build in this tree (others wait, then find it done)."""

    def __init__(self) -> None:
        self.path = CACHE / "build.lock"
        self.file = None

    def __enter__(self) -> BuildLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "w")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another build.py is setting up or building here; waiting for it")
            fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc_info) -> None:
        self.file.close()


def digest(*parts: bytes | str) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode() if isinstance(part, str) else part)
        hasher.update(b"\0")
    return hasher.hexdigest()


def tree_digest(*paths: Path) -> str:
    """Hash of the names and contents of every source file under `paths` (no caches, no .so)."""
    hasher = hashlib.sha256()
    for base in paths:
        files = [base] if base.is_file() else sorted(base.rglob("*"))
        for path in files:
            if not path.is_file() or "__pycache__" in path.parts or path.suffix in {".so", ".o"}:
                continue
            hasher.update(str(path.relative_to(ROOT)).encode() + b"\0")
            hasher.update(path.read_bytes() + b"\0")
    return hasher.hexdigest()


class Stamp:
    """A file under .cache/stamps recording the key of the inputs a step last succeeded on."""

    def __init__(self, name: str, key: str) -> None:
        self.path = STAMPS / name
        self.key = key

    def fresh(self) -> bool:
        try:
            return self.path.read_text().strip() == self.key
        except OSError:
            return False

    def record(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(self.key + "\n")


# ----------------------------------------------------------------------------------------- setup


def missing_debian_packages(packages: list[str]) -> list[str]:
    if shutil.which("dpkg-query") is None:
        fail("dpkg-query not found: build.py sets up Debian-based machines only")
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
    import sysconfig

    needed = []
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        needed.append(f"python3.{sys.version_info.minor}-dev")
    try:
        import ensurepip  # noqa: F401
        import venv  # noqa: F401
    except ImportError:
        needed.append(f"python3.{sys.version_info.minor}-venv")
    return needed


def setup_debian() -> None:
    wanted = list(APT_PACKAGES)
    if not VENV_PYTHON.exists():
        wanted += python_packages_needed()
    missing = missing_debian_packages(wanted)
    if not missing:
        return
    if os.geteuid() != 0:
        fail(f"missing Debian packages {' '.join(missing)}: run as root or apt-get install them")
    for package in missing:
        log(f"installing {package}: {APT_PACKAGES.get(package, 'Python headers / venv support')}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", NEEDRESTART_MODE="a")
    apt_lists = Path("/var/lib/apt/lists")
    if not any(apt_lists.glob("*Packages*")):
        run(["apt-get", "update", "-q"], env=env)
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        run(["apt-get", "update", "-q"], env=env)
        run(install, env=env)


def pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def python_requirements() -> list[str]:
    project = pyproject()["project"]
    requirements = list(project.get("dependencies", []))
    for extra in ("build", "test", "dev"):
        requirements += project.get("optional-dependencies", {}).get(extra, [])
    return requirements


def setup_venv() -> None:
    requirements = python_requirements()
    if VENV_PYTHON.exists() and venv_stamp(requirements).fresh():
        return
    if not VENV_PYTHON.exists():
        if sys.prefix != sys.base_prefix:
            fail(f"run build.py with the system python3, not from the virtualenv {sys.prefix}")
        log(f"creating {VENV}")
        run([sys.executable, "-m", "venv", VENV])
    log("installing Python dependencies into .venv")
    quiet = ["-q"] if os.environ.get("CI") is None else []
    run([VENV_PYTHON, "-m", "pip", "install", *quiet, *requirements])
    venv_stamp(requirements).record()


def venv_stamp(requirements: list[str]) -> Stamp:
    """Keyed on the requirements and the venv's interpreter, not on who runs build.py."""
    return Stamp("venv", digest(*requirements, (VENV / "pyvenv.cfg").read_text()))


def setup() -> None:
    setup_debian()
    setup_venv()


def venv_version(module: str) -> str:
    cached = _versions.get(module)
    if cached is None:
        cached = run(
            [VENV_PYTHON, "-c", f"import importlib.metadata as m; print(m.version({module!r}))"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        _versions[module] = cached
    return cached


_versions: dict[str, str] = {}


def venv_python_version() -> str:
    cached = _versions.get("python")
    if cached is None:
        cached = run(
            [VENV_PYTHON, "-c", "import sys; print(sys.version)"], capture_output=True, text=True
        ).stdout.strip()
        _versions["python"] = cached
    return cached


# ----------------------------------------------------------------------------------------- build


def board_file(board: str) -> Path:
    path = ROOT / "boards" / f"{board}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in (ROOT / "boards").glob("*.toml"))
        fail(f"no board file {path.relative_to(ROOT)} (known boards: {', '.join(known) or 'none'})")
    return path


def build_ffi() -> None:
    """Compile every ffi/*_build.py in API mode; the module lands inside the firmware package."""
    scripts = sorted((ROOT / "ffi").glob("*_build.py"))
    for script in scripts:
        key = digest(script.read_bytes(), venv_python_version(), venv_version("cffi"))
        stamp = Stamp(f"ffi-{script.stem}", key)
        built = stamp.path.with_suffix(".out")
        if stamp.fresh() and built.exists() and Path(built.read_text().strip()).exists():
            continue
        log(f"compiling {script.relative_to(ROOT)}")
        workdir = CACHE / "ffi" / script.stem
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        program = (
            "import runpy, shutil, sys\n"
            "from pathlib import Path\n"
            f"builder = runpy.run_path({str(script)!r}, run_name='ffi_build')['ffibuilder']\n"
            f"out = Path(builder.compile(tmpdir={str(workdir)!r}, verbose=False))\n"
            "name = builder._assigned_source[0]\n"
            "assert name.startswith('firmware.'), f'{name}: cffi modules belong in firmware'\n"
            "dest = Path(*name.split('.')[:-1]) / out.name\n"
            "dest.parent.mkdir(parents=True, exist_ok=True)\n"
            "shutil.copy2(out, dest)\n"
            "print(dest.resolve())\n"
        )
        result = run([VENV_PYTHON, "-c", program], cwd=ROOT, capture_output=True, text=True)
        stamp.record()
        built.write_text(result.stdout.strip().splitlines()[-1] + "\n")


def system_library(name: str) -> Path:
    """Path of a shared library as the dynamic loader would find it on this machine."""
    listing = run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
    machine = {"x86_64": "x86-64", "aarch64": "AArch64"}.get(platform.machine(), "")
    for line in listing.splitlines():
        fields = line.strip().split(" => ")
        if len(fields) == 2 and fields[0].split()[0] == name and machine in fields[0]:
            return Path(fields[1]).resolve()
    fail(f"{name} not found by ldconfig: install it (Debian: zlib1g, libgcc-s1)")
    raise AssertionError("unreachable")


def nuitka_options(board: str, mode: str, outdir: Path, key: str) -> list[str]:
    board_path = board_file(board)
    options = [
        f"--mode={mode}",
        "--python-flag=-m",
        "--python-flag=no_site",
        "--python-flag=no_docstrings",
        "--python-flag=-O",
        f"--output-dir={outdir}",
        "--output-filename=edgekeeper",
        "--jobs=2",
        "--assume-yes-for-downloads",
        "--deployment",
        "--noinclude-pytest-mode=nofollow",
        "--noinclude-setuptools-mode=nofollow",
        "--noinclude-unittest-mode=nofollow",
        "--noinclude-pydoc-mode=nofollow",
        f"--include-data-files={board_path}=firmware/board.toml",
    ]
    for library, where in BUNDLED_SYSTEM_LIBRARIES:
        options.append(f"--include-data-files={system_library(library)}={where}/{library}")
    options += [f"--include-module={name}" for name in NUITKA_INCLUDE_MODULES]
    options += [f"--include-package={name}" for name in NUITKA_INCLUDE_PACKAGES]
    if mode == "onefile":
        unpack_id = key[:UNPACK_ID_LENGTH]
        options.append(f"--onefile-tempdir-spec={ONEFILE_UNPACK_SPEC % unpack_id}")
        options.append("--onefile-cache-mode=cached")
    if os.environ.get("CI") is None:
        options.append("--quiet")
    return options


# The onefile binary unpacks its program once into a directory named after the build and reuses
# it on every later start (files are checked by CRC32); systemd runs that program directly so
# the daemon is one process (see docs/build.md). {CACHE_DIR} is $XDG_CACHE_HOME or ~/.cache.
ONEFILE_UNPACK_SPEC = "{CACHE_DIR}/edgekeeper/%s"
UNPACK_ID_LENGTH = 16

# WatchdogSec= of the unit; the daemon pings at half of it, its only periodic wake-up.
SYSTEMD_WATCHDOG_SEC = 30


# Linked into the program and the onefile bootstrap through LDFLAGS; runs before main().
LOCALE_GUARD_C = r"""
/* edgekeeper locale guard (generated by build.py).
 * A minimal rootfs has no locale files, but LANG or LC_* may still name a locale (LANG=C.UTF-8
 * is common). The embedded interpreter's start-up aborts without a message when that locale
 * cannot be loaded. When it cannot, fall back to the always-present C locale; the program runs
 * in Python's UTF-8 mode either way, so text handling does not depend on the locale.
 */
#include <locale.h>
#include <stdlib.h>

__attribute__((constructor)) static void edgekeeper_locale_guard(void) {
    static const char *const names[] = {
        "LANG", "LANGUAGE", "LC_CTYPE", "LC_NUMERIC", "LC_TIME", "LC_COLLATE", "LC_MONETARY",
        "LC_MESSAGES", "LC_PAPER", "LC_NAME", "LC_ADDRESS", "LC_TELEPHONE", "LC_MEASUREMENT",
        "LC_IDENTIFICATION",
    };
    if (setlocale(LC_ALL, "") == NULL) {
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            unsetenv(names[i]);
        }
        setenv("LC_ALL", "C", 1);
    }
    setlocale(LC_ALL, "C");
}
"""


def locale_guard_object() -> Path:
    source = CACHE / "locale-guard" / "locale_guard.c"
    target = source.with_suffix(".o")
    if not (source.exists() and source.read_text() == LOCALE_GUARD_C and target.exists()):
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(LOCALE_GUARD_C)
        run(["gcc", "-O2", "-fPIC", "-Wall", "-Werror", "-c", source, "-o", target])
    return target


def prune_unpacked_programs(keep: str, max_age_s: float = 86400) -> None:
    """Remove this user's unpacked programs of builds older than a day (~60 MB each)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgekeeper"
    for unpacked in cache.glob("*"):
        stale = time.time() - unpacked.stat().st_mtime > max_age_s
        if unpacked.name != keep and len(unpacked.name) == UNPACK_ID_LENGTH and stale:
            shutil.rmtree(unpacked, ignore_errors=True)


def built_key(board: str) -> str:
    """The key dist/<board>/edgekeeper was built from (its unpack dir is named after it)."""
    return (DIST / board / "edgekeeper.buildkey").read_text().strip()


def build_key(board: str, mode: str) -> str:
    return digest(
        tree_digest(ROOT / "firmware", ROOT / "ffi", board_file(board), Path(__file__).resolve()),
        venv_python_version(),
        venv_version("nuitka"),
        mode,
    )


def build(board: str, mode: str = BUILD_MODE) -> Path:
    """dist/<board>/edgekeeper, rebuilt only when its inputs changed."""
    with BuildLock():
        return build_locked(board, mode)


def check_arch(board: str) -> None:
    """Nuitka builds for the machine it runs on: refuse a board of another architecture."""
    import tomllib

    arch = tomllib.loads(board_file(board).read_text()).get("board", {}).get("arch")
    machine = platform.machine()
    aliases = {"arm64": "aarch64", "amd64": "x86_64", "armv7": "armv7l"}
    if arch and aliases.get(arch, arch) != machine:
        fail(
            f"board {board} is {arch} but this machine is {machine}: Nuitka does not "
            f"cross-compile; run build.py on an {arch} builder (or an {arch} container)"
        )


def build_locked(board: str, mode: str) -> Path:
    check_arch(board)
    setup()
    build_ffi()
    target = DIST / board / "edgekeeper"
    key = build_key(board, mode)
    keyfile = DIST / board / "edgekeeper.buildkey"
    if target.exists() and keyfile.exists() and keyfile.read_text().strip() == key:
        log(f"{target.relative_to(ROOT)} is up to date")
        return target
    outdir = CACHE / "nuitka" / board
    log(f"compiling {target.relative_to(ROOT)} with Nuitka ({mode}); this takes a few minutes")
    started = time.monotonic()
    env = dict(os.environ)
    env.setdefault("NUITKA_CACHE_DIR", str(CACHE / "nuitka-cache"))
    env["LDFLAGS"] = f"{env.get('LDFLAGS', '')} {locale_guard_object()}".strip()
    run(
        # -X utf8: the program runs in UTF-8 mode and never calls setlocale() on LC_CTYPE from
        # the environment, which crashes when LANG names a locale the rootfs lacks.
        [
            VENV_PYTHON,
            "-X",
            "utf8",
            "-m",
            "nuitka",
            *nuitka_options(board, mode, outdir, key),
            "firmware",
        ],
        cwd=ROOT,
        env=env,
    )
    produced = outdir / ("edgekeeper" if mode == "onefile" else "firmware.dist/edgekeeper")
    if not produced.exists():
        fail(f"Nuitka finished but {produced} is missing")
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode == "onefile":
        partial = target.with_name(".edgekeeper.partial")
        shutil.copy2(produced, partial)
        partial.replace(target)
    else:
        shutil.rmtree(target.parent / "edgekeeper.dist", ignore_errors=True)
        shutil.copytree(produced.parent, target.parent / "edgekeeper.dist", symlinks=True)
        target.unlink(missing_ok=True)
        target.symlink_to("edgekeeper.dist/edgekeeper")
    keyfile.write_text(key + "\n")
    prune_unpacked_programs(keep=key[:UNPACK_ID_LENGTH])
    log(f"built {target.relative_to(ROOT)} in {time.monotonic() - started:.0f} s")
    return target


# ------------------------------------------------------------------------------------------- sim


def sim_board():
    sys.path.insert(0, str(ROOT))
    from tests.peers.sim import SimBoard

    return SimBoard(SIM_DIR)


def sim_start():
    from tests.peers.sim import MissingComponent, ServiceFailed

    board = sim_board()
    try:
        board.start()
    except (MissingComponent, ServiceFailed) as error:
        fail(str(error))
    return board


def sim_describe(board) -> None:
    state = board.status()
    for name, up in state.items():
        words = ("token ready", "no token") if name == "softhsm" else ("running", "stopped")
        print(f"{name:10} {words[0] if up else words[1]}")
    print(f"engine socket   {board.dockerd.uri}")
    print(f"swtpm           {board.swtpm.tcti} (control port {board.swtpm.ctrl_port})")
    print(f"SOFTHSM2_CONF   {board.softhsm.conf} (token {board.softhsm.token_label!r})")
    print(f"run dir         {board.run_dir}")
    print(f"console pty     written by the daemon to {board.run_dir}/console.pty")
    print(f"config          {board.config_file}")


def command_sim(action: str) -> int:
    setup_debian()
    if action == "start":
        board = sim_start()
        sim_describe(board)
    elif action == "stop":
        sim_board().stop()
        log("sim services stopped")
    else:
        board = sim_board()
        sim_describe(board)
        return 0 if all(board.status().values()) else 3
    return 0


# ------------------------------------------------------------------------------------ run / test


def command_run(extra: list[str]) -> int:
    binary = build("sim")
    board = sim_board()
    already = board.status()
    board = sim_start()
    env = dict(os.environ, SOFTHSM2_CONF=str(board.softhsm.conf))
    log(f"starting {binary.relative_to(ROOT)} run --config {board.config_file} (Ctrl-C stops)")
    daemon = subprocess.Popen(
        [binary, "run", "--config", board.config_file, *extra], cwd=ROOT, env=env
    )

    def forward(signum, _frame):
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, lambda *_: daemon.send_signal(signal.SIGHUP))
    code = 0
    try:
        while True:
            try:
                code = daemon.wait()
                break
            except KeyboardInterrupt:
                forward(signal.SIGINT, None)
    finally:
        if daemon.poll() is None:
            daemon.terminate()
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        for name, service in (
            ("dockerd", board.dockerd),
            ("swtpm", board.swtpm),
            ("softhsm", board.softhsm),
        ):
            if not already[name]:
                service.stop()
        log("stopped the daemon and the sim services it started")
    return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT, 130, 143) else code


def command_test(pytest_args: list[str]) -> int:
    binary = build("sim")
    env = dict(os.environ, EDGEKEEPER_BINARY=str(binary))
    env.pop("SOFTHSM2_CONF", None)
    names_paths = any(
        not arg.startswith("-") and (ROOT / arg.split("::")[0]).exists() for arg in pytest_args
    )
    argv = [VENV_PYTHON, "-m", "pytest", *([] if names_paths else ["tests"]), *pytest_args]
    log(" ".join(map(str, argv)))
    return subprocess.run([str(a) for a in argv], cwd=ROOT, env=env, check=False).returncode


# ---------------------------------------------------------------------------------------- bundle


def version() -> str:
    text = (ROOT / "firmware" / "__init__.py").read_text()
    found = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    if not found:
        fail("firmware/__init__.py has no __version__")
    return found.group(1)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(value)


def commented_config(board_name: str, board: dict) -> str:
    """/etc/edgekeeper/config.toml: the board's settings shown commented out, ready to edit."""
    lines = [
        f"# edgekeeper configuration for the {board_name} board.",
        "# The board file is compiled into the binary; every setting below is the board's",
        "# default, commented out. Uncomment and change what differs on this gateway, or drop",
        "# files into /etc/edgekeeper/config.d/ (merged in name order).",
        "# Validate with: edgekeeper config validate /etc/edgekeeper/config.toml",
        "",
    ]

    def emit(table: dict, prefix: str) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        if scalars:
            lines.append(f"# [{prefix}]" if prefix else "")
            for key, value in scalars.items():
                try:
                    lines.append(f"# {key} = {toml_value(value)}")
                except TypeError:
                    continue
            lines.append("")
        for key, value in table.items():
            if isinstance(value, dict):
                emit(value, f"{prefix}.{key}" if prefix else key)

    emit(board, "")
    return "\n".join(lines).rstrip() + "\n"


def udev_rules(board_name: str, devices: dict) -> str:
    """Rules giving the daemon's group access to the board's TPM, I2C and serial devices."""
    lines = [
        f"# edgekeeper: device access on the {board_name} board (from boards/{board_name}.toml).",
        "# The daemon runs as root; the group lets the CLI and tools run unprivileged.",
    ]
    subsystems = {"tpm": "tpm", "i2c": "i2c-dev", "spi": "spidev", "serial": "tty"}
    for kind, value in sorted(devices.items()):
        paths = value if isinstance(value, list) else [value]
        for path in paths:
            if not isinstance(path, str) or not path.startswith("/dev/"):
                continue
            name = path.removeprefix("/dev/")
            subsystem = subsystems.get(kind, "*")
            if kind == "tpm" and name.startswith("tpmrm"):
                subsystem = "tpmrm"
            lines.append(
                f'KERNEL=="{name}", SUBSYSTEM=="{subsystem}", GROUP="edgekeeper", MODE="0660"'
            )
    return "\n".join(lines) + "\n"


def command_bundle(board_name: str) -> Path:
    import tomllib

    binary = build(board_name, BUILD_MODE)
    board_path = board_file(board_name)
    board_doc = tomllib.loads(board_path.read_text())
    devices = board_doc.get("board", {}).get("devices", {})
    ver = version()
    templates = ROOT / "boards" / "bundle"
    memory_mb = board_doc.get("board", {}).get("memory_budget_mb", 64)
    substitutions = {
        "@VERSION@": ver,
        "@BOARD@": board_name,
        "@WATCHDOG_SEC@": str(SYSTEMD_WATCHDOG_SEC),
        "@UNPACK_ID@": built_key(board_name)[:UNPACK_ID_LENGTH],
        "@MEMORY_MAX@": f"{int(memory_mb) * 2}M",
    }

    def render(name: str) -> bytes:
        text = (templates / name).read_text()
        for key, value in substitutions.items():
            text = text.replace(key, value)
        return text.encode()

    members = [
        ("usr/bin/edgekeeper", binary.read_bytes(), 0o755),
        ("etc/edgekeeper/config.toml", commented_config(board_name, board_doc).encode(), 0o644),
        ("lib/systemd/system/edgekeeper.service", render("edgekeeper.service"), 0o644),
        ("usr/lib/tmpfiles.d/edgekeeper.conf", render("tmpfiles.conf"), 0o644),
        ("usr/lib/sysusers.d/edgekeeper.conf", render("sysusers.conf"), 0o644),
        ("lib/udev/rules.d/60-edgekeeper.rules", udev_rules(board_name, devices).encode(), 0o644),
    ]
    target = DIST / board_name / f"edgekeeper-{board_name}-{ver}.tar.gz"
    directories = sorted({str(Path(name).parent) for name, _, _ in members} - {"."})
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(partial, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        mtime = int(binary.stat().st_mtime)
        parents = set()
        for directory in directories:
            parts = Path(directory).parts
            for depth in range(1, len(parts) + 1):
                parents.add("/".join(parts[:depth]))
        for directory in sorted(parents):
            info = tarfile.TarInfo(f"./{directory}")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)
        for name, data, mode in members:
            info = tarfile.TarInfo(f"./{name}")
            info.size, info.mode, info.mtime = len(data), mode, mtime
            tar.addfile(info, io.BytesIO(data))
    partial.replace(target)
    log(f"bundle {target.relative_to(ROOT)}")
    print(target)
    return target


# ------------------------------------------------------------------------------------------ main


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="build.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup", help="install Debian packages and the .venv")
    for name in ("build", "bundle"):
        sub = commands.add_parser(name, help=f"{name} for a board")
        sub.add_argument("--board", default="sim", help="board name (boards/NAME.toml)")
        sub.add_argument(
            "--mode",
            choices=("onefile", "standalone"),
            default=BUILD_MODE,
            help="Nuitka mode (default %(default)s; standalone is for measurements)",
        )
    sub = commands.add_parser("sim", help="the sim board's services")
    sub.add_argument("action", choices=("start", "stop", "status"))
    commands.add_parser("run", help="run the daemon on the sim board until Ctrl-C")
    commands.add_parser("test", help="run the test suite against the built binary")
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in ("test", "run"):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "setup":
        with BuildLock():
            setup()
        log("set-up complete")
        return 0
    if args.command == "build":
        print(build(args.board, args.mode))
        return 0
    if args.command == "bundle":
        command_bundle(args.board)
        return 0
    if args.command == "sim":
        return command_sim(args.action)
    if args.command == "run":
        return command_run(rest)
    return command_test(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
