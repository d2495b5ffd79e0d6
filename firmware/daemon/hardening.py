"""Keeping the daemon's memory out of core dumps and debuggers: it holds keys, PINs and tokens.

`harden_process()`, the first step of `edgekeeper run` (never the CLI), sets the core file size
limit to 0, soft and hard, so nothing in the process can raise it again, and clears the
"dumpable" flag (`prctl(PR_SET_DUMPABLE, 0)`): no core dump even through a core_pattern pipe
handler, no ptrace attach or /proc/PID/mem read by other processes of the same user, and the
/proc/PID files owned by root. It reads both back from the kernel and refuses to start if
either did not take. `ProcessHardening.current()` is what the start log line reports.
"""

from __future__ import annotations

import ctypes
import os
import resource
from dataclasses import dataclass

from firmware.errors import DaemonError

PR_GET_DUMPABLE = 3  # <linux/prctl.h>
PR_SET_DUMPABLE = 4


@dataclass(frozen=True)
class ProcessHardening:
    """The process's core dump limit (soft, hard) and dumpable flag, as the kernel has them."""

    core_limit: tuple[int, int]
    dumpable: bool

    @classmethod
    def current(cls) -> ProcessHardening:
        """The state of this process now."""
        return cls(
            core_limit=resource.getrlimit(resource.RLIMIT_CORE),
            dumpable=_prctl(PR_GET_DUMPABLE) != 0,
        )

    @property
    def core_dumps(self) -> bool:
        return self.core_limit != (0, 0)

    @property
    def hardened(self) -> bool:
        return not self.core_dumps and not self.dumpable


def harden_process() -> ProcessHardening:
    """Turn core dumps off and make the process non-dumpable; DaemonError if that fails."""
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        _prctl(PR_SET_DUMPABLE, 0)
        state = ProcessHardening.current()
    except OSError as error:
        raise DaemonError(
            f"cannot protect the daemon's memory from core dumps: {error.strerror or error}",
            hint="edgekeeper needs setrlimit(RLIMIT_CORE) and prctl(PR_SET_DUMPABLE); "
            "check the seccomp profile it runs under",
        ) from error
    if not state.hardened:
        raise DaemonError(
            f"the daemon's memory is still dumpable (core limit {state.core_limit}, "
            f"dumpable {state.dumpable})",
            hint="check the seccomp profile or security module edgekeeper runs under",
        )
    return state


def _prctl(option: int, value: int = 0) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    result = int(libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result
