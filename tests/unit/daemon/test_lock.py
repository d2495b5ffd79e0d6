"""Single-instance lock: a second holder fails naming the pid; the lock dies with its process."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from firmware.daemon.lock import InstanceLock
from firmware.errors import DaemonError
from firmware.store.errors import UnsafeFile

REPO = Path(__file__).resolve().parents[3]


def test_second_lock_names_the_holder(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path)
    first.acquire()
    assert (tmp_path / "edgekeeper.lock").read_text() == f"{os.getpid()}\n"
    with pytest.raises(DaemonError) as caught:
        InstanceLock(tmp_path).acquire()
    assert f"pid {os.getpid()}" in caught.value.message
    assert str(tmp_path / "edgekeeper.lock") in caught.value.message
    first.release()
    again = InstanceLock(tmp_path)
    again.acquire()
    again.release()


def test_lock_held_by_another_process_and_freed_when_it_dies(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from firmware.daemon.lock import InstanceLock; "
            "InstanceLock(sys.argv[1]).acquire(); print('held', flush=True); sys.stdin.read()",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(DaemonError, match=f"pid {holder.pid} holds"):
            InstanceLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
        for pipe in (holder.stdin, holder.stdout):
            if pipe is not None:
                pipe.close()
    lock = InstanceLock(tmp_path)
    lock.acquire()
    lock.release()


def test_unwritable_run_dir_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DaemonError, match="cannot open lock file") as caught:
        InstanceLock(blocker).acquire()
    assert "run_dir" in caught.value.hint


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_text("root:x:0:0\n")
    path.chmod(0o640)
    return path


def test_a_link_at_the_lock_path_is_refused_and_its_target_untouched(
    tmp_path: Path, victim: Path
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "edgekeeper.lock").symlink_to(victim)
    with pytest.raises(UnsafeFile) as caught:
        InstanceLock(run_dir).acquire()
    assert caught.value.render() == (
        f"{run_dir}/edgekeeper.lock is a symbolic link; refusing to follow it "
        f"(remove it (rm {run_dir}/edgekeeper.lock); edgekeeper creates its own files)"
    )
    assert victim.read_text() == "root:x:0:0\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o640


def test_a_hard_link_at_the_lock_path_is_not_truncated(tmp_path: Path, victim: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    os.link(victim, run_dir / "edgekeeper.lock")
    with pytest.raises(UnsafeFile, match="hard links"):
        InstanceLock(run_dir).acquire()
    assert victim.read_text() == "root:x:0:0\n"
