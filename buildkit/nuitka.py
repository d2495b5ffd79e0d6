"""The program: dist/BOARD/edgekeeper.dist compiled by Nuitka (dist/BOARD/edgekeeper points at its
binary), its build key, and which modules are compiled to C or kept as bytecode."""

from __future__ import annotations

import os
import platform
import shutil
import time
from pathlib import Path

from buildkit.boards import board_file
from buildkit.locale_guard import locale_guard_object
from buildkit.log import BuildError, log
from buildkit.paths import CACHE, DIST, RECIPE, ROOT, VENV_PYTHON
from buildkit.shell import run
from buildkit.stamps import digest, tree_digest
from buildkit.venv import venv_python_version, venv_version

# A standalone directory, shipped packed in a read-only squashfs image that the gateway mounts
# (buildkit/bundle.py); `onefile` (one self-unpacking file) is for comparisons. See docs/build.md
# for the measurements behind the choice.
BUILD_MODE = "standalone"
BUILD_MODES = ("standalone", "onefile")

# Modules the compiled program loads without a static import (Nuitka would not see them) or that
# Nuitka's anti-bloat drops although the standard library needs them at run time.
NUITKA_INCLUDE_MODULES = ("_json", "_bisect", "json.decoder", "json.encoder", "bisect")
NUITKA_INCLUDE_PACKAGES = ("firmware", "serial.urlhandler")

# Packages kept as bytecode instead of compiled to C: code that runs at start, on a command or
# on a configuration's backend, never per request. Compiled code is mapped from the program file
# and its module init touches most of it; bytecode costs flash and memory only once imported.
# What serves requests stays compiled: the HTTP server and parser, the router, the workload API,
# the key service and its backends, h11 (docs/build.md, "Compiled or bytecode").
BYTECODE_PACKAGES = (
    "firmware.api.management",
    "firmware.certs",
    "firmware.cli",
    "firmware.config",
    "firmware.console",
    "firmware.daemon",
    "firmware.identity",
    "firmware.runtime",
    "firmware.store",
    "firmware.tpm",
    "cryptography",
    "serial",
    "tpm2_pytss",
    "typing_extensions",
)

# Libraries that Nuitka treats as "system" and does not bundle although a minimal rootfs may lack
# them: (library, where in the distribution the rpath of the module that needs it looks).
BUNDLED_SYSTEM_LIBRARIES = (
    ("libz.so.1", "."),
    ("libgcc_s.so.1", "cryptography/hazmat/bindings"),
)

# The onefile binary unpacks its program once into a directory named after the build and reuses
# it on every later start (files are checked by CRC32); systemd runs that program directly so
# the daemon is one process (see docs/build.md). {CACHE_DIR} is $XDG_CACHE_HOME or ~/.cache.
ONEFILE_UNPACK_SPEC = "{CACHE_DIR}/edgekeeper/%s"
UNPACK_ID_LENGTH = 16


def key_sources(board: str) -> tuple[Path, ...]:
    """Every file whose change must rebuild the binary: the program, its cffi build scripts,
    the board file compiled in, and the build recipe (build.py and buildkit/)."""
    return (ROOT / "firmware", ROOT / "ffi", board_file(board), *RECIPE)


def build_key(board: str, mode: str) -> str:
    return digest(
        tree_digest(*key_sources(board)),
        venv_python_version(),
        venv_version("nuitka"),
        mode,
    )


def built_key(board: str) -> str:
    """The key dist/<board>/edgekeeper was built from (its unpack dir is named after it)."""
    return (DIST / board / "edgekeeper.buildkey").read_text().strip()


def system_library(name: str) -> Path:
    """Path of a shared library as the dynamic loader would find it on this machine."""
    listing = run(["/sbin/ldconfig", "-p"], capture=True).stdout
    machine = {"x86_64": "x86-64", "aarch64": "AArch64"}.get(platform.machine(), "")
    for line in listing.splitlines():
        fields = line.strip().split(" => ")
        if len(fields) == 2 and fields[0].split()[0] == name and machine in fields[0]:
            return Path(fields[1]).resolve()
    raise BuildError(f"{name} not found by ldconfig: install it (Debian: zlib1g, libgcc-s1)")


def nuitka_options(board: str, mode: str, outdir: Path, key: str) -> list[str]:
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
        f"--include-data-files={board_file(board)}=firmware/board.toml",
    ]
    for library, where in BUNDLED_SYSTEM_LIBRARIES:
        options.append(f"--include-data-files={system_library(library)}={where}/{library}")
    options += [f"--include-module={name}" for name in NUITKA_INCLUDE_MODULES]
    options += [f"--include-package={name}" for name in NUITKA_INCLUDE_PACKAGES]
    options += [f"--noinclude-custom-mode={name}:bytecode" for name in BYTECODE_PACKAGES]
    if mode == "onefile":
        unpack_id = key[:UNPACK_ID_LENGTH]
        options.append(f"--onefile-tempdir-spec={ONEFILE_UNPACK_SPEC % unpack_id}")
        options.append("--onefile-cache-mode=cached")
    if os.environ.get("CI") is None:
        options.append("--quiet")
    return options


def prune_unpacked_programs(keep: str, max_age_s: float = 86400) -> None:
    """Remove this user's unpacked programs of builds older than a day (~60 MB each)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgekeeper"
    for unpacked in cache.glob("*"):
        stale = time.time() - unpacked.stat().st_mtime > max_age_s
        if unpacked.name != keep and len(unpacked.name) == UNPACK_ID_LENGTH and stale:
            shutil.rmtree(unpacked, ignore_errors=True)


def compile_binary(board: str, mode: str) -> Path:
    """dist/<board>/edgekeeper, compiled only when its build key changed (the venv and the cffi
    modules must be in place)."""
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
    # The bytecode Nuitka compiles carries no column positions (tracebacks keep their line
    # numbers): 0.8 MB less program, 0.3 MB less anonymous memory at idle (docs/build.md). An
    # environment variable, not -X no_debug_ranges: Nuitka runs itself again without -X options.
    env["PYTHONNODEBUGRANGES"] = "1"
    # -X utf8: the program runs in UTF-8 mode and never calls setlocale() on LC_CTYPE from the
    # environment, which crashes when LANG names a locale the rootfs lacks.
    nuitka: list[str | Path] = [VENV_PYTHON, "-X", "utf8", "-m", "nuitka"]
    run([*nuitka, *nuitka_options(board, mode, outdir, key), "firmware"], cwd=ROOT, env=env)
    produced = outdir / ("edgekeeper" if mode == "onefile" else "firmware.dist/edgekeeper")
    if not produced.exists():
        raise BuildError(f"Nuitka finished but {produced} is missing")
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
