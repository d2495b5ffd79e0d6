"""Opening own files: a planted link, FIFO or hard link is refused, its target untouched."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from firmware.store.errors import UnsafeFile
from firmware.store.files import open_own_file, read_own_file

NOBODY = 65534


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_bytes(b"not yours\n")
    path.chmod(0o640)
    return path


def unchanged(victim: Path) -> bool:
    return victim.read_bytes() == b"not yours\n" and stat.S_IMODE(victim.stat().st_mode) == 0o640


def test_reads_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_bytes(b"x" * 200_000)
    assert read_own_file(path) == b"x" * 200_000


def test_missing_file_is_the_callers_business(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_own_file(tmp_path / "absent")


def test_a_link_is_refused_not_followed(tmp_path: Path, victim: Path) -> None:
    link = tmp_path / "doc.json"
    link.symlink_to(victim)
    with pytest.raises(UnsafeFile) as caught:
        read_own_file(link)
    assert caught.value.render() == (
        f"{link} is a symbolic link; refusing to follow it "
        f"(remove it (rm {link}); edgekeeper creates its own files)"
    )


def test_a_link_is_not_created_through(tmp_path: Path, victim: Path) -> None:
    link = tmp_path / "edgekeeper.lock"
    link.symlink_to(victim)
    with pytest.raises(UnsafeFile, match="symbolic link"):
        open_own_file(link, os.O_RDWR | os.O_CREAT, in_place=True)
    assert unchanged(victim)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "doc.json"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeFile, match="is not a regular file"):
        read_own_file(fifo)


def test_in_place_refuses_a_hard_link_to_another_file(tmp_path: Path, victim: Path) -> None:
    planted = tmp_path / "edgekeeper.lock"
    os.link(victim, planted)
    with pytest.raises(UnsafeFile, match="2 hard links"):
        open_own_file(planted, os.O_RDWR | os.O_CREAT, in_place=True)
    assert unchanged(victim)
    assert read_own_file(planted) == b"not yours\n"  # a reader may share it; a writer may not


def test_in_place_refuses_a_file_of_another_user(tmp_path: Path) -> None:
    planted = tmp_path / "edgekeeper.lock"
    planted.write_text("")
    os.chown(planted, NOBODY, -1)
    with pytest.raises(UnsafeFile, match="owned by uid 65534"):
        open_own_file(planted, os.O_RDWR, in_place=True)
