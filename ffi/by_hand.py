"""Building one binding by hand during development (`python ffi/<name>_build.py`): compile it in a
scratch directory and move the extension into firmware/_ffi/. build.py does not use this; it
compiles every script's `ffibuilder` itself (buildkit/ffi.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import cffi

FFI_PACKAGE = Path(__file__).resolve().parent.parent / "firmware" / "_ffi"


def compile_into_package(ffibuilder: cffi.FFI, name: str) -> Path:
    """Compile `ffibuilder` and move the extension into firmware/_ffi/; its path.

    The move is a rename, so a process that has the previous extension mapped keeps running.
    """
    with tempfile.TemporaryDirectory(prefix=f"{name}-build-") as tmpdir:
        built = Path(ffibuilder.compile(tmpdir=tmpdir, verbose=False))
        target = FFI_PACKAGE / built.name
        staged = target.with_name(f".{built.name}.new")
        shutil.copyfile(built, staged)
        os.replace(staged, target)
    return target
