"""Giving back the memory that only starting up needed, once the daemon has settled.

Starting touches far more than an idle daemon uses: every module's code and constants are read
from the program file while it is imported, and the allocator keeps the heap that start-up
objects left free. Once the daemon is ready and settled, `release_start_up_memory` collects
garbage, asks the C allocator to return its free heap (`malloc_trim`), and tells the kernel that
the read-only pages mapped from the program's own files (the binary and the libraries shipped
beside it) are not needed now (`madvise(MADV_PAGEOUT)`). They are clean file pages: the kernel
drops them at no cost and reads again, on demand, the few that later requests touch. Libraries
of the system and anything writable are left alone. Kernels before 5.4 lack MADV_PAGEOUT: then
only the heap is trimmed.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import os
from dataclasses import dataclass
from pathlib import Path

MADV_PAGEOUT = 21
MAPS = Path("/proc/self/maps")
STATUS = Path("/proc/self/status")


@dataclass(frozen=True)
class ReleasedMemory:
    """Resident memory before and after, and how many program mappings were paged out."""

    rss_before_kib: int
    rss_after_kib: int
    mappings: int

    @property
    def released_kib(self) -> int:
        return self.rss_before_kib - self.rss_after_kib


def program_mappings(maps: str, program_dir: Path) -> list[tuple[int, int]]:
    """(start, length) of every read-only private mapping of a file under `program_dir`."""
    prefix = f"{program_dir}/"
    found = []
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or not fields[5].startswith(prefix):
            continue
        permissions = fields[1]
        if "w" in permissions or not permissions.endswith("p"):
            continue
        start, end = (int(bound, 16) for bound in fields[0].split("-"))
        found.append((start, end - start))
    return found


def resident_kib(status: Path = STATUS) -> int:
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def release_start_up_memory(program_dir: Path | None = None) -> ReleasedMemory:
    """Collect, trim the C heap and page out the program's read-only mappings (blocking: run it
    in the executor)."""
    program_dir = program_dir or Path(os.readlink("/proc/self/exe")).parent
    before = resident_kib()
    gc.collect()
    libc = ctypes.CDLL(None, use_errno=True)
    trim = getattr(libc, "malloc_trim", None)  # glibc only
    if trim is not None:
        trim(0)
    paged = 0
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    for start, length in program_mappings(MAPS.read_text(), program_dir):
        if libc.madvise(start, length, MADV_PAGEOUT) != 0:
            if ctypes.get_errno() == errno.EINVAL:
                break  # a kernel without MADV_PAGEOUT
            continue
        paged += 1
    return ReleasedMemory(before, resident_kib(), paged)
