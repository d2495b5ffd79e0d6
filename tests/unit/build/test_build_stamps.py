"""Step caching: keys change with their inputs and only with them; the binary's key covers the
build recipe; the build lock makes a second build wait."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import buildkit.lock
from buildkit.lock import build_lock
from buildkit.nuitka import key_sources
from buildkit.paths import ROOT
from buildkit.stamps import Stamp, digest, tree_digest


def test_digest_separates_its_parts() -> None:
    assert digest("ab", "c") != digest("a", "bc")
    assert digest("a", b"b") == digest(b"a", "b")


def make_tree(root: Path) -> Path:
    source = root / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "mod.py").write_text("x = 1\n")
    (source / "top.py").write_text("y = 2\n")
    return source


def test_tree_digest_follows_contents_and_names(tmp_path: Path) -> None:
    source = make_tree(tmp_path)
    before = tree_digest(source, root=tmp_path)
    assert tree_digest(source, root=tmp_path) == before
    (source / "top.py").write_text("y = 3\n")
    changed = tree_digest(source, root=tmp_path)
    assert changed != before
    (source / "top.py").rename(source / "other.py")
    assert tree_digest(source, root=tmp_path) not in (before, changed)


def test_tree_digest_ignores_caches_and_compiled_objects(tmp_path: Path) -> None:
    source = make_tree(tmp_path)
    before = tree_digest(source, root=tmp_path)
    (source / "pkg" / "__pycache__").mkdir()
    (source / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    (source / "pkg" / "_ffi.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\0")
    (source / "pkg" / "guard.o").write_bytes(b"\0")
    assert tree_digest(source, root=tmp_path) == before


def test_stamp_is_fresh_only_for_the_recorded_key(tmp_path: Path) -> None:
    assert not Stamp("step", "k1", tmp_path / "stamps").fresh()
    Stamp("step", "k1", tmp_path / "stamps").record()
    assert Stamp("step", "k1", tmp_path / "stamps").fresh()
    assert not Stamp("step", "k2", tmp_path / "stamps").fresh()
    assert not Stamp("other", "k1", tmp_path / "stamps").fresh()


def test_binary_key_covers_program_ffi_board_and_every_recipe_file() -> None:
    sources = key_sources("sim")
    covered = [
        ROOT / "build.py",
        ROOT / "boards" / "sim.toml",
        *sorted((ROOT / "buildkit").glob("*.py")),
        *sorted((ROOT / "ffi").glob("*_build.py")),
        ROOT / "firmware" / "__main__.py",
    ]
    for path in covered:
        assert any(path == source or source in path.parents for source in sources), path
    assert not any((ROOT / "boards" / "rpi4-tpm.toml").is_relative_to(s) for s in sources)


def test_a_second_build_waits_for_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock_file = tmp_path / "cache" / "build.lock"
    waiting = threading.Event()
    monkeypatch.setattr(buildkit.lock, "log", lambda message: waiting.set())
    order: list[str] = []

    def second() -> None:
        with build_lock(lock_file):
            order.append("second")

    with build_lock(lock_file):
        thread = threading.Thread(target=second)
        thread.start()
        assert waiting.wait(timeout=10), "the second build did not wait for the lock"
        order.append("first")
    thread.join(timeout=10)
    assert order == ["first", "second"]
