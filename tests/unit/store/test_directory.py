"""OwnDirectory: which modes, owners, parents and links make a daemon directory unsafe.

The table builds each case under pytest's tmp dir (root-owned, as every harness's root is) and
names the words the refusal must carry; `None` means the directory is accepted. Owner cases
chown to 65534 (nobody), so the suite runs as root, as it does everywhere in this project.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from firmware.errors import StateError
from firmware.store.directory import OwnDirectory
from firmware.store.errors import UnsafeDirectory

NOBODY = 65534


def make_dir(path: Path, mode: int, owner: int = 0) -> Path:
    path.mkdir()
    os.chmod(path, mode)
    os.chown(path, owner, -1)
    return path


def own(mode: int, owner: int = 0) -> Callable[[Path], Path]:
    return lambda root: make_dir(root / "dir", mode, owner)


def inside(parent_mode: int, parent_owner: int = 0) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        parent = make_dir(root / "parent", parent_mode, parent_owner)
        return make_dir(parent / "dir", 0o700)

    return build


def through_link(link_owner: int) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        make_dir(root / "target", 0o700)
        link = root / "link"
        link.symlink_to("target")
        os.lchown(link, link_owner, -1)
        return link

    return build


def a_file(root: Path) -> Path:
    path = root / "file"
    path.write_text("")
    return path


def dangling_link(root: Path) -> Path:
    link = root / "link"
    link.symlink_to("nowhere")
    return link


CASES: list[tuple[str, Callable[[Path], Path], tuple[str, ...] | None]] = [
    ("private", own(0o700), None),
    ("readable by all", own(0o755), None),
    ("world-writable", own(0o777), ("writable by group or others", "mode 0777", "chmod 700 ")),
    ("group-writable", own(0o770), ("writable by group or others", "mode 0770", "chmod 700 ")),
    ("world-writable and sticky", own(0o1777), ("writable by group or others", "mode 1777")),
    ("owned by nobody", own(0o700, NOBODY), ("owned by uid 65534", "uid 0", "chown 0:0 ")),
    ("in a sticky /tmp-like parent", inside(0o1777), None),
    ("in a private parent", inside(0o700), None),
    ("in a world-writable parent", inside(0o777), ("not sticky", "mode 0777", "chmod go-w ")),
    ("in a group-writable parent", inside(0o775), ("not sticky", "mode 0775", "chmod go-w ")),
    ("in a parent owned by nobody", inside(0o755, NOBODY), ("owned by uid 65534", "move it away")),
    ("in a sticky parent owned by nobody", inside(0o1777, NOBODY), ("owned by uid 65534",)),
    ("through root's link", through_link(0), None),
    ("through nobody's link", through_link(NOBODY), ("symbolic link", "owned by uid 65534")),
    ("a file", a_file, ("is not a directory",)),
    ("a dangling link", dangling_link, ("cannot be checked",)),
]


@pytest.mark.parametrize(
    ("build", "refused"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_check(
    tmp_path: Path, build: Callable[[Path], Path], refused: tuple[str, ...] | None
) -> None:
    path = build(tmp_path)
    directory = OwnDirectory(path, "data_dir", "[paths] data_dir", 0o700)
    if refused is None:
        directory.check()
        return
    with pytest.raises(UnsafeDirectory) as caught:
        directory.check()
    rendered = caught.value.render()
    assert f"data_dir {path}" in rendered
    for words in refused:
        assert words in rendered


def test_the_fix_names_the_real_directory_behind_a_link(tmp_path: Path) -> None:
    target = make_dir(tmp_path / "target", 0o777)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(UnsafeDirectory) as caught:
        OwnDirectory(tmp_path / "link", "run_dir", "[paths] run_dir", 0o755).check()
    assert f"(really {target})" in caught.value.message
    assert caught.value.hint == f"chmod 755 {target}"


def test_ensure_creates_safe_modes_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        made = OwnDirectory(tmp_path / "a" / "b" / "data", "data_dir", "[paths] data_dir", 0o700)
        assert made.ensure() == tmp_path / "a" / "b" / "data"
    finally:
        os.umask(previous)
    modes = [stat.S_IMODE(os.stat(tmp_path / p).st_mode) for p in ("a", "a/b", "a/b/data")]
    assert modes == [0o755, 0o755, 0o700]


def test_ensure_refuses_an_existing_unsafe_directory_without_repairing_it(tmp_path: Path) -> None:
    path = make_dir(tmp_path / "run", 0o777)
    with pytest.raises(UnsafeDirectory, match="writable by group or others"):
        OwnDirectory(path, "run_dir", "[paths] run_dir", 0o755).ensure()
    assert stat.S_IMODE(path.stat().st_mode) == 0o777


def test_ensure_names_what_blocks_creation(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("")
    with pytest.raises(StateError) as caught:
        OwnDirectory(tmp_path / "blocker" / "run", "run_dir", "[paths] run_dir", 0o755).ensure()
    assert caught.value.message.startswith(f"cannot create run_dir {tmp_path}/blocker/run")
    assert "[paths] run_dir" in caught.value.hint


def test_ensure_creates_nothing_inside_an_unsafe_parent(tmp_path: Path) -> None:
    parent = make_dir(tmp_path / "parent", 0o777)
    with pytest.raises(UnsafeDirectory, match="not sticky"):
        OwnDirectory(parent / "a" / "run", "run_dir", "[paths] run_dir", 0o755).ensure()
    assert list(parent.iterdir()) == []
