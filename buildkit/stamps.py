"""Step caching: keys over a step's inputs; stamps record the key a step last succeeded on."""

from __future__ import annotations

import hashlib
from pathlib import Path

from buildkit.paths import ROOT, STAMPS

SKIPPED_SUFFIXES = frozenset({".so", ".o"})  # build products that land in the source tree


def digest(*parts: bytes | str) -> str:
    """SHA-256 over `parts`, each terminated so that ("ab", "c") and ("a", "bc") differ."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode() if isinstance(part, str) else part)
        hasher.update(b"\0")
    return hasher.hexdigest()


def tree_digest(*paths: Path, root: Path = ROOT) -> str:
    """SHA-256 over the names (relative to `root`) and contents of every source file under
    `paths`, files or directories: no __pycache__, no compiled .so or .o."""
    hasher = hashlib.sha256()
    for base in paths:
        files = [base] if base.is_file() else sorted(base.rglob("*"))
        for path in files:
            if not path.is_file() or "__pycache__" in path.parts or path.suffix in SKIPPED_SUFFIXES:
                continue
            hasher.update(str(path.relative_to(root)).encode() + b"\0")
            hasher.update(path.read_bytes() + b"\0")
    return hasher.hexdigest()


class Stamp:
    """A file under .cache/stamps recording the key of the inputs a step last succeeded on."""

    def __init__(self, name: str, key: str, directory: Path = STAMPS) -> None:
        self.path = directory / name
        self.key = key

    def fresh(self) -> bool:
        try:
            return self.path.read_text().strip() == self.key
        except OSError:
            return False

    def record(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(self.key + "\n")
