"""write_atomic: content, mode, and failures that keep the old file and leave no temp file."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from pathlib import Path

import pytest

from firmware.errors import StateError
from firmware.store import atomic
from firmware.store.atomic import write_atomic


def test_writes_content_and_mode(tmp_path: Path) -> None:
    target = tmp_path / "doc.json"
    write_atomic(target, b"hello", mode=0o640)
    assert target.read_bytes() == b"hello"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["doc.json"]


def test_permission_error_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "doc.json"
    write_atomic(target, b"old")

    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.os, "open", refuse)
    with pytest.raises(StateError) as caught:
        write_atomic(target, b"new")
    monkeypatch.undo()
    assert str(target) in caught.value.message
    assert "permission denied" in caught.value.message
    assert "writable" in caught.value.hint
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["doc.json"]


def test_failure_after_temp_created_removes_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "doc.json"
    write_atomic(target, b"old")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(StateError, match="disk full"):
        write_atomic(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["doc.json"]


def test_missing_directory_names_it(tmp_path: Path) -> None:
    with pytest.raises(StateError) as caught:
        write_atomic(tmp_path / "nope" / "doc.json", b"x")
    assert "nope" in caught.value.render()


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            "a real full-disk test needs to mount a small tmpfs (run as root with CAP_SYS_ADMIN): "
            + done.stderr.strip()
        )
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_real_full_disk_keeps_old_content(small_tmpfs: Path) -> None:
    target = small_tmpfs / "doc.json"
    write_atomic(target, b"old content")
    filler = small_tmpfs / "filler"
    with pytest.raises(OSError) as full, open(filler, "wb") as out:
        while True:
            out.write(b"\0" * 4096)
            out.flush()
    assert full.value.errno == errno.ENOSPC
    with pytest.raises(StateError) as caught:
        write_atomic(target, b"x" * 32768)
    assert caught.value.render().startswith(f"cannot write {target}: disk full")
    assert target.read_bytes() == b"old content"
    assert sorted(os.listdir(small_tmpfs)) == ["doc.json", "filler"]


def test_a_link_planted_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    victim.chmod(0o644)
    target = tmp_path / "doc.json"
    target.symlink_to(victim)
    write_atomic(target, b"ours")
    assert not target.is_symlink()
    assert target.read_bytes() == b"ours"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert victim.read_bytes() == b"not yours"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644


def test_a_link_planted_at_a_temp_name_is_skipped(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    target = tmp_path / "doc.json"
    planted = tmp_path / f"{atomic.temp_prefix(target)}{os.getpid()}.0{atomic.TEMP_SUFFIX}"
    planted.symlink_to(victim)
    write_atomic(target, b"ours")
    assert target.read_bytes() == b"ours"
    assert victim.read_bytes() == b"not yours"
    assert planted.is_symlink()
