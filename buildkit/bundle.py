"""The flash-ready bundle: a rootfs-overlay tarball with the program's squashfs image, the mount
unit that mounts it read-only, the `edgekeeper` command pointing into it, the config, the daemon's
systemd unit, tmpfiles, sysusers and udev rules (docs/build.md, "The bundle")."""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buildkit.boards import board_document
from buildkit.log import BuildError, log
from buildkit.paths import BOARDS, DIST, ROOT
from buildkit.shell import run
from buildkit.steps import build

TEMPLATES = BOARDS / "bundle"

# WatchdogSec= of the unit; the daemon pings at half of it, its only periodic wake-up.
SYSTEMD_WATCHDOG_SEC = 30

# Device kinds of [board.devices] and the kernel subsystem their nodes belong to.
DEVICE_SUBSYSTEMS = {"tpm": "tpm", "i2c": "i2c-dev", "spi": "spidev", "serial": "tty"}

# Where the program lives on the gateway: the image file, and the directory it is mounted on
# (the mount unit's name is that path, systemd-escaped).
IMAGE_PATH = "usr/lib/edgekeeper/program.squashfs"
MOUNT_POINT = "usr/lib/edgekeeper/program"
MOUNT_UNIT = "usr-lib-edgekeeper-program.mount"

# zstd: 17.5 MB for the sim program against 16.1 MB with xz, but a cold start (page cache
# dropped) takes 0.23 s against 0.71 s with xz (docs/build.md). The gateway's kernel needs
# CONFIG_SQUASHFS and CONFIG_SQUASHFS_ZSTD (mainline since 4.14).
SQUASHFS_OPTIONS = ("-comp", "zstd", "-Xcompression-level", "19", "-all-root", "-noappend")


@dataclass(frozen=True)
class BundleFile:
    path: str  # relative to the rootfs, e.g. "usr/bin/edgekeeper"
    data: bytes
    mode: int
    link: str = ""  # a symbolic link to this target instead of a file
    directory: bool = False  # an (empty) directory instead of a file


def product_version() -> str:
    text = (ROOT / "firmware" / "__init__.py").read_text()
    found = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    if not found:
        raise BuildError("firmware/__init__.py has no __version__")
    return found.group(1)


def toml_value(value: object) -> str:
    """`value` as a TOML literal; TypeError for what a board's settings never hold."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(value)


def commented_config(board_name: str, board: dict[str, Any]) -> str:
    """/etc/edgekeeper/config.toml: the board's settings shown commented out, ready to edit."""
    lines = [
        f"# edgekeeper configuration for the {board_name} board.",
        "# The board file is compiled into the binary; every setting below is the board's",
        "# default, commented out. Uncomment and change what differs on this gateway, or drop",
        "# files into /etc/edgekeeper/config.d/ (merged in name order).",
        "# Validate with: edgekeeper config validate /etc/edgekeeper/config.toml",
        "",
    ]

    def emit(table: dict[str, Any], prefix: str) -> None:
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


def udev_rules(board_name: str, devices: dict[str, Any]) -> str:
    """Rules giving the daemon's group access to the board's TPM, I2C, SPI and serial devices."""
    lines = [
        f"# edgekeeper: device access on the {board_name} board (from boards/{board_name}.toml).",
        "# The daemon runs as root; the group lets the CLI and tools run unprivileged.",
    ]
    for kind, value in sorted(devices.items()):
        for path in value if isinstance(value, list) else [value]:
            if not isinstance(path, str) or not path.startswith("/dev/"):
                continue
            name = path.removeprefix("/dev/")
            subsystem = DEVICE_SUBSYSTEMS.get(kind, "*")
            if kind == "tpm" and name.startswith("tpmrm"):
                subsystem = "tpmrm"
            lines.append(
                f'KERNEL=="{name}", SUBSYSTEM=="{subsystem}", GROUP="edgekeeper", MODE="0660"'
            )
    return "\n".join(lines) + "\n"


def bundle_files(
    board_name: str,
    board: dict[str, Any],
    image: bytes,
    version: str,
    templates: Path = TEMPLATES,
) -> list[BundleFile]:
    """Every file of the overlay, the templates of `templates` filled in for this board;
    `image` is the program's squashfs image."""
    settings = board.get("board", {})
    substitutions = {
        "@VERSION@": version,
        "@BOARD@": board_name,
        "@WATCHDOG_SEC@": str(SYSTEMD_WATCHDOG_SEC),
        "@PROGRAM@": f"/{MOUNT_POINT}/edgekeeper",
        "@IMAGE@": f"/{IMAGE_PATH}",
        "@MOUNT_POINT@": f"/{MOUNT_POINT}",
        "@MOUNT_UNIT@": MOUNT_UNIT,
        "@MEMORY_MAX@": f"{int(settings.get('memory_budget_mb', 64)) * 2}M",
    }

    def render(name: str) -> bytes:
        text = (templates / name).read_text()
        for placeholder, value in substitutions.items():
            text = text.replace(placeholder, value)
        return text.encode()

    config = commented_config(board_name, board).encode()
    rules = udev_rules(board_name, settings.get("devices", {})).encode()
    return [
        BundleFile(IMAGE_PATH, image, 0o644),
        BundleFile(MOUNT_POINT, b"", 0o755, directory=True),
        BundleFile("usr/bin/edgekeeper", b"", 0o777, link="../lib/edgekeeper/program/edgekeeper"),
        BundleFile("etc/edgekeeper/config.toml", config, 0o644),
        BundleFile(f"lib/systemd/system/{MOUNT_UNIT}", render("program.mount"), 0o644),
        BundleFile("lib/systemd/system/edgekeeper.service", render("edgekeeper.service"), 0o644),
        BundleFile("usr/lib/tmpfiles.d/edgekeeper.conf", render("tmpfiles.conf"), 0o644),
        BundleFile("usr/lib/sysusers.d/edgekeeper.conf", render("sysusers.conf"), 0o644),
        BundleFile("lib/udev/rules.d/60-edgekeeper.rules", rules, 0o644),
    ]


def parent_directories(paths: Iterable[str]) -> list[str]:
    """Every directory above `paths` (relative), parents before children."""
    directories: set[str] = set()
    for path in paths:
        parts = Path(path).parent.parts
        directories.update("/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
    return sorted(directories)


def write_tarball(target: Path, files: list[BundleFile], mtime: int) -> None:
    """A gzipped tar of `files` under "./", their directories first (0755), every entry dated
    `mtime`; written beside `target` and renamed into place."""
    partial = target.with_name(target.name + ".partial")
    listed = {file.path for file in files if file.directory}
    with tarfile.open(partial, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for directory in parent_directories(file.path for file in files):
            if directory not in listed:
                info = tarfile.TarInfo(f"./{directory}")
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
                tar.addfile(info)
        for file in files:
            info = tarfile.TarInfo(f"./{file.path}")
            info.mode, info.mtime = file.mode, mtime
            if file.directory:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif file.link:
                info.type, info.linkname = tarfile.SYMTYPE, file.link
                tar.addfile(info)
            else:
                info.size = len(file.data)
                tar.addfile(info, io.BytesIO(file.data))
    partial.replace(target)


def program_image(program_dir: Path) -> Path:
    """dist/<board>/edgekeeper.squashfs: the standalone program directory as a read-only
    squashfs image, made again when the program is newer."""
    image = program_dir.with_suffix(".squashfs")
    binary = program_dir / "edgekeeper"
    if image.exists() and image.stat().st_mtime >= binary.stat().st_mtime:
        return image
    partial = image.with_name(f".{image.name}.partial")
    partial.unlink(missing_ok=True)
    run(["mksquashfs", program_dir, partial, *SQUASHFS_OPTIONS, "-quiet"], capture=True)
    partial.replace(image)
    return image


def make_bundle(board_name: str) -> Path:
    """dist/<board>/edgekeeper-<board>-<version>.tar.gz around the up-to-date program's image."""
    binary = build(board_name, "standalone").resolve()
    image = program_image(binary.parent)
    version = product_version()
    files = bundle_files(board_name, board_document(board_name), image.read_bytes(), version)
    target = DIST / board_name / f"edgekeeper-{board_name}-{version}.tar.gz"
    write_tarball(target, files, int(binary.stat().st_mtime))
    log(f"bundle {target.relative_to(ROOT)} (program image {image.stat().st_size} bytes)")
    return target
