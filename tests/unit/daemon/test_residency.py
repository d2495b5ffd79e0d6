"""Giving back start-up memory: which mappings are paged out, and that resident memory drops."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from firmware.daemon.residency import program_mappings, release_start_up_memory, resident_kib

MAPS = """\
55d0a000-55d0b000 r--p 00000000 fe:00 11 /opt/prog/edgekeeper
55d0b000-55d0d000 r-xp 00001000 fe:00 11 /opt/prog/edgekeeper
55d0d000-55d0e000 rw-p 00003000 fe:00 11 /opt/prog/edgekeeper
7f000000-7f002000 r--p 00000000 fe:00 12 /opt/prog/lib/_rust.so
7f100000-7f101000 r--s 00000000 fe:00 13 /opt/prog/shared.bin
7f200000-7f201000 r-xp 00000000 fe:00 14 /usr/lib/libc.so.6
7f300000-7f301000 r--p 00000000 fe:00 15 /opt/program-other/x
7f400000-7f421000 rw-p 00000000 00:00 0 [heap]
"""


def test_only_read_only_private_mappings_of_the_program_directory() -> None:
    assert program_mappings(MAPS, Path("/opt/prog")) == [
        (0x55D0A000, 0x1000),
        (0x55D0B000, 0x2000),
        (0x7F000000, 0x2000),
    ]


def test_resident_file_pages_of_the_program_are_given_back(tmp_path: Path) -> None:
    program = tmp_path / "program"
    program.mkdir()
    data = program / "blob"
    data.write_bytes(os.urandom(32 * 1024 * 1024))
    with (
        data.open("rb") as file,
        mmap.mmap(file.fileno(), 0, mmap.MAP_PRIVATE, mmap.PROT_READ) as mapped,
    ):
        assert sum(mapped[offset] for offset in range(0, len(mapped), mmap.PAGESIZE)) >= 0
        touched = resident_kib()
        released = release_start_up_memory(program)
        assert released.mappings == 1
        assert released.rss_before_kib >= touched - 1024
        assert released.released_kib > 24 * 1024, released
        assert resident_kib() < touched - 24 * 1024
