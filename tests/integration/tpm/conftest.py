"""TPM fixtures: a fresh swtpm per test (empty TPM state) and connections to it, all closed.

Tests that change the TPM's persistent or hierarchy state use these instead of the session's
`swtpm`, which other tests share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from firmware.tpm.connection import TpmConnection
from tests.peers.sim import MissingComponent, ServiceFailed, Swtpm


@pytest.fixture
def fresh_swtpm(tmp_path) -> Iterator[Swtpm]:
    tpm = Swtpm(tmp_path / "swtpm")
    try:
        tpm.start()
    except (MissingComponent, ServiceFailed) as error:
        pytest.fail(str(error), pytrace=False)
    yield tpm
    tpm.stop()


@pytest.fixture
def connect(fresh_swtpm) -> Iterator[Callable[..., TpmConnection]]:
    """Open `TpmConnection`s to the fresh swtpm (keyword arguments passed on); closed at the end."""
    opened: list[TpmConnection] = []

    def open_one(**options) -> TpmConnection:
        opened.append(TpmConnection(fresh_swtpm.tcti, **options))
        return opened[-1]

    yield open_one
    for tpm in opened:
        tpm.close()
