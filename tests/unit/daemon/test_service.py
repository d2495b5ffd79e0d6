"""The typed service directory: `require_*` answers the running service or `Unavailable`, and a
stopped service's entry is forgotten."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from firmware.daemon.service import ServiceDirectory
from firmware.errors import Unavailable

REQUIRED: dict[str, tuple[Callable[[ServiceDirectory], Any], str]] = {
    "keys": (ServiceDirectory.require_keys, "the key service is not running"),
    "certs": (ServiceDirectory.require_certs, "the certificate service is not running"),
    "runtime": (ServiceDirectory.require_runtime, "the runtime service is not running"),
    "workload": (ServiceDirectory.require_workload, "the workload service is not running"),
}


@pytest.mark.parametrize("role", sorted(REQUIRED))
def test_require_raises_unavailable_when_absent(role: str) -> None:
    require, message = REQUIRED[role]
    with pytest.raises(Unavailable) as raised:
        require(ServiceDirectory())
    assert raised.value.message == message
    assert raised.value.http_status == 503


def test_require_names_the_fix_for_a_disabled_runtime() -> None:
    with pytest.raises(Unavailable) as raised:
        ServiceDirectory().require_runtime()
    assert raised.value.render() == (
        "the runtime service is not running (set [runtime] uri in config.toml)"
    )


@pytest.mark.parametrize("role", sorted(REQUIRED))
def test_require_answers_the_running_service_and_forget_clears_it(role: str) -> None:
    require, _ = REQUIRED[role]
    service = object()
    directory = ServiceDirectory(**{role: service})
    assert require(directory) is service
    directory.forget("consolelike")  # not a role: nothing happens
    assert require(directory) is service
    directory.forget(role)
    assert getattr(directory, role) is None
    with pytest.raises(Unavailable):
        require(directory)
