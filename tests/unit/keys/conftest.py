"""Key service fixtures: a file-backed service on a temp dir and a thread executor."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from firmware.keys.file import FileBackend
from firmware.keys.registry import BackendRegistry
from firmware.keys.service import KeyService


class ThreadExecutor:
    """The daemon executor's contract (`async run(fn, *args)`) over a private thread pool."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.calls = 0

    async def run(self, fn, *args):
        self.calls += 1
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def file_service(key_dir: Path, executor: ThreadExecutor) -> KeyService:
    registry = BackendRegistry("file", {"file": lambda: FileBackend(key_dir)})
    return KeyService(registry, executor)


@pytest.fixture
def executor():
    pool = ThreadExecutor()
    yield pool
    pool.close()


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"
