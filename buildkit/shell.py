"""Running other programs for the build: a failure or Ctrl-C ends the build with one line."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from buildkit.log import BuildError, log


def run(
    argv: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    capture: bool = False,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command (its output captured as text when `capture`); a missing program or, with
    `check`, a non-zero exit raises BuildError; Ctrl-C stops the command and exits 130."""
    args = [str(arg) for arg in argv]
    try:
        result = subprocess.run(
            args, cwd=cwd, env=env, capture_output=capture, text=True, check=False
        )
    except FileNotFoundError as error:
        raise BuildError(f"{error.filename}: not found") from None
    except KeyboardInterrupt:
        log(f"interrupted: {args[0]}")
        raise SystemExit(130) from None
    if check and result.returncode != 0:
        raise BuildError(f"`{' '.join(args)}` exited {result.returncode}")
    return result
