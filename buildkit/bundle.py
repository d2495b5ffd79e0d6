"""The flash-ready bundle: a rootfs-overlay tarball with the binary, its config, systemd unit,
tmpfiles, sysusers and udev rules (docs/build.md, "The bundle")."""

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
from buildkit.nuitka import BUILD_MODE, UNPACK_ID_LENGTH, built_key
from buildkit.paths import BOARDS, DIST, ROOT
from buildkit.steps import build

TEMPLATES = BOARDS / "bundle"

# WatchdogSec= of the unit; the daemon pings at half of it, its only periodic wake-up.
SYSTEMD_WATCHDOG_SEC = 30

# Device kinds of [board.devices] and the kernel subsystem their nodes belong to.
DEVICE_SUBSYSTEMS = {"tpm": "tpm", "i2c": "i2c-dev", "spi": "spidev", "serial": "tty"}


@dataclass(frozen=True)
class BundleFile:
    path: str  # relative to the rootfs, e.g. "usr/bin/edgekeeper"
    data: bytes
    mode: int


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
    binary: bytes,
    version: str,
    unpack_id: str,
    templates: Path = TEMPLATES,
) -> list[BundleFile]:
    """Every file of the overlay, the templates of `templates` filled in for this board."""
    settings = board.get("board", {})
    substitutions = {
        "@VERSION@": version,
        "@BOARD@": board_name,
        "@WATCHDOG_SEC@": str(SYSTEMD_WATCHDOG_SEC),
        "@UNPACK_ID@": unpack_id,
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
        BundleFile("usr/bin/edgekeeper", binary, 0o755),
        BundleFile("etc/edgekeeper/config.toml", config, 0o644),
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
    with tarfile.open(partial, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for directory in parent_directories(file.path for file in files):
            info = tarfile.TarInfo(f"./{directory}")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)
        for file in files:
            info = tarfile.TarInfo(f"./{file.path}")
            info.size, info.mode, info.mtime = len(file.data), file.mode, mtime
            tar.addfile(info, io.BytesIO(file.data))
    partial.replace(target)


def make_bundle(board_name: str) -> Path:
    """dist/<board>/edgekeeper-<board>-<version>.tar.gz around the up-to-date onefile binary."""
    binary = build(board_name, BUILD_MODE)
    version = product_version()
    files = bundle_files(
        board_name,
        board_document(board_name),
        binary.read_bytes(),
        version,
        built_key(board_name)[:UNPACK_ID_LENGTH],
    )
    target = DIST / board_name / f"edgekeeper-{board_name}-{version}.tar.gz"
    write_tarball(target, files, int(binary.stat().st_mtime))
    log(f"bundle {target.relative_to(ROOT)}")
    return target
