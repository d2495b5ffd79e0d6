"""How this program was built: by Nuitka (its version and mode) or run from source, for
`edgekeeper version` and the support bundle. Nuitka gives every compiled module a
`__compiled__` global; a module run by CPython has none."""

from __future__ import annotations

import platform
import sys


def build_description(*, interpreter_path: bool = False) -> str:
    """ "nuitka 2.4.8 (onefile), python 3.11.7", or "not compiled (python 3.11.7)" with the
    interpreter's path after the version when `interpreter_path`."""
    compiled = globals().get("__compiled__")
    python = platform.python_version()
    if compiled is None:
        where = f", {sys.executable}" if interpreter_path else ""
        return f"not compiled (python {python}{where})"
    mode = "onefile" if getattr(compiled, "onefile", False) else "standalone"
    return f"nuitka {compiled.major}.{compiled.minor}.{compiled.micro} ({mode}), python {python}"
