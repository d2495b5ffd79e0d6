"""The state store: named JSON documents in one private directory, each replaced atomically.

`StateStore(root)` keeps `<root>/<name>.json` (directory 0700, files 0600). A symbolic link or
anything but a regular file in a document's place is refused, never followed. Its methods block
(file I/O and fsync): daemon code calls them through the executor, e.g.
`await ctx.executor.run(ctx.store.put, "agent", doc)`. A file that does not parse is reported
with its path and left in place, never silently replaced by an empty document.
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path
from typing import Any

from firmware.store.atomic import TEMP_SUFFIX, fsync_dir, write_atomic
from firmware.store.directory import OwnDirectory
from firmware.store.errors import CorruptState, InvalidStateName, StateReadError, StateWriteError
from firmware.store.files import read_own_file

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
DIR_MODE = 0o700
FILE_MODE = 0o600


class StateStore:
    """Named JSON documents under `root`, each written with `write_atomic`."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def ensure(self) -> None:
        """Create the directory (0700) if needed, refuse it if others could change it (see
        `OwnDirectory`), make it 0700, drop stale temp files.

        A temporary file is left only by a write that was killed before its rename; the
        document it belonged to still holds its previous content.
        """
        OwnDirectory(self.root, "state directory", "[paths] data_dir", DIR_MODE).ensure()
        try:
            os.chmod(self.root, DIR_MODE)
            for leftover in self.root.glob(f".*{TEMP_SUFFIX}"):
                leftover.unlink()
        except OSError as exc:
            raise _dir_error(self.root, exc) from exc

    def path(self, name: str) -> Path:
        """The file that holds document `name`."""
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
            raise InvalidStateName(
                f"invalid state name {name!r}",
                hint="use 1-64 characters from a-z 0-9 . _ - starting with a letter or digit",
            )
        return self.root / f"{name}.json"

    def get(self, name: str) -> dict[str, Any] | None:
        """Document `name`, or None when it was never stored (or was deleted)."""
        path = self.path(name)
        try:
            raw = read_own_file(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateReadError(
                f"cannot read state file {path}: {exc.strerror}",
                hint="check its owner and mode (0600, owned by the daemon's user)",
            ) from exc
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptState(
                f"state file {path} is corrupt: {exc}",
                hint=f"it was left as is; restore it from a backup or move it aside "
                f"(mv {path} {path}.bad) to start this part afresh",
            ) from exc
        if not isinstance(doc, dict):
            raise CorruptState(
                f"state file {path} does not hold a JSON object",
                hint=f"move it aside (mv {path} {path}.bad) to start this part afresh",
            )
        return doc

    def put(self, name: str, doc: dict[str, Any]) -> None:
        """Replace document `name` with `doc` (a JSON-serialisable dict) atomically."""
        path = self.path(name)
        if not isinstance(doc, dict):
            raise TypeError(f"state document {name!r} must be a dict, not {type(doc).__name__}")
        data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        if not self.root.is_dir():
            self.ensure()
        write_atomic(path, data, mode=FILE_MODE)

    def delete(self, name: str) -> bool:
        """Remove document `name`; True if it existed."""
        path = self.path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _dir_error(self.root, exc) from exc
        fsync_dir(self.root)
        return True

    def names(self) -> list[str]:
        """Names of the stored documents, sorted."""
        try:
            entries = sorted(self.root.glob("*.json"))
        except OSError as exc:
            raise _dir_error(self.root, exc) from exc
        return [entry.name[: -len(".json")] for entry in entries]


def _dir_error(root: Path, exc: OSError) -> StateWriteError:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StateWriteError(
            f"state directory {root} is not usable: {exc.strerror}",
            hint=f"make it writable by uid {os.geteuid()} or set [paths] data_dir elsewhere",
        )
    return StateWriteError(
        f"state directory {root} is not usable: {exc.strerror or exc}",
        hint="check the disk and [paths] data_dir",
    )
