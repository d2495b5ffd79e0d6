"""TPM fixtures: connections to the test's fresh swtpm (`fresh_swtpm`, tests/conftest.py), all
closed at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from firmware.tpm.connection import TpmConnection


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
