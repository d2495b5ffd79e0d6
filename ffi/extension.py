"""What every binding script shares: its version, read from firmware/_ffi/__init__.py without
importing firmware, and the hand build during development (`python ffi/<name>_build.py`): compile
in a scratch directory and move the extension into firmware/_ffi/. build.py compiles each
script's `ffibuilder` itself (buildkit/ffi.py)."""

from __future__ import annotations

import ast
import os
import shutil
import tempfile
from pathlib import Path

import cffi

FFI_PACKAGE = Path(__file__).resolve().parent.parent / "firmware" / "_ffi"


def binding_version(name: str) -> int:
    """The integer constant `name` of firmware/_ffi/__init__.py (e.g. PKCS11_BINDING_VERSION)."""
    tree = ast.parse((FFI_PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names = {target.id for target in targets if isinstance(target, ast.Name)}
        if name in names and isinstance(node.value, ast.Constant):
            return int(node.value.value)
    raise RuntimeError(f"firmware/_ffi/__init__.py does not define {name}")


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
