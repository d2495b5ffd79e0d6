"""One build.py at a time sets up or builds in this tree; the others wait, then find it done."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from buildkit.log import log
from buildkit.paths import CACHE


@contextlib.contextmanager
def build_lock(path: Path = CACHE / "build.lock") -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another build.py is setting up or building here; waiting for it")
            fcntl.flock(file, fcntl.LOCK_EX)
        yield
