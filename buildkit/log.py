"""build.py's voice: one-line progress messages on stderr, and the error that ends a build."""

from __future__ import annotations

import sys


def log(message: str) -> None:
    print(f"build.py: {message}", file=sys.stderr, flush=True)


class BuildError(Exception):
    """A step cannot go on. The message says what is wrong and what to do; build.py prints it
    once, as `build.py: error: MESSAGE`, and exits 2."""
