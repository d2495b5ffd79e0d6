"""The bundle: the overlay's files, their rendering for a board, and the tarball's layout."""

from __future__ import annotations

import re
import tarfile
import tomllib
from pathlib import Path

import pytest

from buildkit.bundle import (
    SYSTEMD_WATCHDOG_SEC,
    BundleFile,
    bundle_files,
    commented_config,
    parent_directories,
    udev_rules,
    write_tarball,
)
from buildkit.paths import BOARDS

BOARD_FILES = sorted(BOARDS.glob("*.toml"))


def board(path: Path) -> dict[str, object]:
    return tomllib.loads(path.read_text())


def test_overlay_files_and_modes() -> None:
    files = bundle_files("sim", board(BOARDS / "sim.toml"), b"hsqs", "1.2.3")
    assert [(file.path, file.mode) for file in files] == [
        ("usr/lib/edgekeeper/program.squashfs", 0o644),
        ("usr/lib/edgekeeper/program", 0o755),
        ("usr/bin/edgekeeper", 0o777),
        ("etc/edgekeeper/config.toml", 0o644),
        ("lib/systemd/system/usr-lib-edgekeeper-program.mount", 0o644),
        ("lib/systemd/system/edgekeeper.service", 0o644),
        ("usr/lib/tmpfiles.d/edgekeeper.conf", 0o644),
        ("usr/lib/sysusers.d/edgekeeper.conf", 0o644),
        ("lib/udev/rules.d/60-edgekeeper.rules", 0o644),
    ]
    assert files[0].data == b"hsqs"
    assert files[1].directory
    assert files[2].link == "../lib/edgekeeper/program/edgekeeper"


def test_the_mount_unit_is_named_after_its_mount_point() -> None:
    files = {file.path: file for file in bundle_files("sim", board(BOARDS / "sim.toml"), b"", "1")}
    mount = files["lib/systemd/system/usr-lib-edgekeeper-program.mount"].data.decode()
    assert "What=/usr/lib/edgekeeper/program.squashfs" in mount
    assert "Where=/usr/lib/edgekeeper/program" in mount
    assert re.search(r"^Options=.*\bro\b", mount, re.M)
    unit = files["lib/systemd/system/edgekeeper.service"].data.decode()
    assert "Requires=usr-lib-edgekeeper-program.mount" in unit


@pytest.mark.parametrize("path", BOARD_FILES, ids=lambda p: p.stem)
def test_templates_are_filled_in_for_every_board(path: Path) -> None:
    document = board(path)
    files = bundle_files(path.stem, document, b"", "1.2.3")
    for file in files[1:]:
        text = file.data.decode()
        assert not re.search(r"@[A-Z_]+@", text), (file.path, text)
    unit = files[5].data.decode()
    budget = document["board"].get("memory_budget_mb", 64)  # type: ignore[attr-defined]
    assert f"MemoryMax={budget * 2}M" in unit
    assert f"WatchdogSec={SYSTEMD_WATCHDOG_SEC}" in unit
    assert "ExecStart=/usr/lib/edgekeeper/program/edgekeeper run" in unit


@pytest.mark.parametrize("path", BOARD_FILES, ids=lambda p: p.stem)
def test_commented_config_uncommented_is_the_board(path: Path) -> None:
    document = board(path)
    text = commented_config(path.stem, document)
    assert all(not line or line.startswith("#") for line in text.splitlines())
    settings = [
        line.removeprefix("# ")
        for line in text.splitlines()
        if re.match(r"# (\[[\w.-]+\]$|[\w-]+ = )", line)
    ]
    assert tomllib.loads("\n".join(settings)) == document


def test_udev_rules_cover_the_board_devices() -> None:
    rules = udev_rules(
        "b",
        {
            "tpm": "/dev/tpmrm0",
            "i2c": ["/dev/i2c-1", "/dev/i2c-2"],
            "spi": ["/dev/spidev0.1"],
            "serial": ["/dev/ttyS0"],
            "gpio": "/dev/gpiochip0",
            "note": "not a device",
        },
    )
    lines = [line for line in rules.splitlines() if not line.startswith("#")]
    assert lines == [
        'KERNEL=="gpiochip0", SUBSYSTEM=="*", GROUP="edgekeeper", MODE="0660"',
        'KERNEL=="i2c-1", SUBSYSTEM=="i2c-dev", GROUP="edgekeeper", MODE="0660"',
        'KERNEL=="i2c-2", SUBSYSTEM=="i2c-dev", GROUP="edgekeeper", MODE="0660"',
        'KERNEL=="ttyS0", SUBSYSTEM=="tty", GROUP="edgekeeper", MODE="0660"',
        'KERNEL=="spidev0.1", SUBSYSTEM=="spidev", GROUP="edgekeeper", MODE="0660"',
        'KERNEL=="tpmrm0", SUBSYSTEM=="tpmrm", GROUP="edgekeeper", MODE="0660"',
    ]


def test_parent_directories_come_before_their_children() -> None:
    assert parent_directories(["usr/bin/a", "usr/lib/x.d/b", "etc/c", "top"]) == [
        "etc",
        "usr",
        "usr/bin",
        "usr/lib",
        "usr/lib/x.d",
    ]


def test_tarball_is_a_rootfs_overlay(tmp_path: Path) -> None:
    files = [BundleFile("usr/bin/tool", b"binary", 0o755), BundleFile("etc/t/c.conf", b"c", 0o644)]
    target = tmp_path / "overlay.tar.gz"
    write_tarball(target, files, mtime=1_700_000_000)
    assert not list(tmp_path.glob("*.partial"))
    with tarfile.open(target) as tar:
        members = tar.getmembers()
        assert [(m.name, m.isdir(), m.mode) for m in members] == [
            ("./etc", True, 0o755),
            ("./etc/t", True, 0o755),
            ("./usr", True, 0o755),
            ("./usr/bin", True, 0o755),
            ("./usr/bin/tool", False, 0o755),
            ("./etc/t/c.conf", False, 0o644),
        ]
        assert {m.mtime for m in members} == {1_700_000_000}
        assert {(m.uid, m.gid) for m in members} == {(0, 0)}
        extracted = tar.extractfile("./usr/bin/tool")
        assert extracted is not None and extracted.read() == b"binary"


def test_tarball_holds_links_and_empty_directories(tmp_path: Path) -> None:
    files = [
        BundleFile("usr/lib/p/image", b"img", 0o644),
        BundleFile("usr/lib/p/mnt", b"", 0o755, directory=True),
        BundleFile("usr/bin/tool", b"", 0o777, link="../lib/p/mnt/tool"),
    ]
    target = tmp_path / "overlay.tar.gz"
    write_tarball(target, files, mtime=1_700_000_000)
    with tarfile.open(target) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert [name for name in members if name.endswith("/mnt")] == ["./usr/lib/p/mnt"]
    assert members["./usr/lib/p/mnt"].isdir()
    assert members["./usr/bin/tool"].issym()
    assert members["./usr/bin/tool"].linkname == "../lib/p/mnt/tool"
