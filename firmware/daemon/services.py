"""Which services the daemon runs for a configuration: one line per service.

Each `ServiceEntry` names the service, where its class lives (imported only when the config
enables it, so a board without a console never loads pyserial), the config sections whose change
restarts it on reload, and when it is enabled. The class is called with no arguments; the
service reads what it needs from `ctx` in `prepare`/`run`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def _always(config: Any) -> bool:
    return True


@dataclass(frozen=True)
class ServiceEntry:
    """One service the daemon can run."""

    name: str
    target: str
    sections: tuple[str, ...]
    enabled: Callable[[Any], bool] = _always

    def create(self) -> Any:
        """Import the service's module and make a new instance."""
        module_name, _, attribute = self.target.partition(":")
        factory = getattr(importlib.import_module(module_name), attribute)
        return factory()

    def section_changed(self, old: Any, new: Any) -> bool:
        """True if a config section this service depends on differs between two configs."""
        return any(getattr(old, section) != getattr(new, section) for section in self.sections)


SERVICES: tuple[ServiceEntry, ...] = (
    ServiceEntry("api", "firmware.api.listeners:ApiServerService", ("listen", "paths")),
    ServiceEntry(
        "console",
        "firmware.console.service:ConsoleService",
        ("console", "paths"),
        lambda config: config.console.device != "none",
    ),
    ServiceEntry("keys", "firmware.keys.daemon:KeysService", ("keys", "tpm", "paths")),
    ServiceEntry(
        "certs",
        "firmware.certs.daemon:CertificatesService",
        (
            "certificates",
            "edge_ca",
            "keys",
            "tpm",
            "paths",
            "hostname",
            "trust_bundle_cert",
            "manifest_trust_bundle_cert",
        ),
    ),
    # Before "workload": its prepare registers a module hook on the runtime service, which must
    # exist by then (and whose reconciler has not run yet).
    ServiceEntry(
        "runtime",
        "firmware.runtime.service:RuntimeService",
        ("runtime", "agent", "watchdog", "image_garbage_collection", "paths"),
        lambda config: bool(config.runtime.uri),
    ),
    ServiceEntry(
        "workload",
        "firmware.api.workload.daemon:WorkloadService",
        ("listen", "paths", "provisioning", "hostname"),
    ),
)


def enabled_services(
    config: Any, catalogue: tuple[ServiceEntry, ...] = SERVICES
) -> list[ServiceEntry]:
    """The entries `config` enables, in start order."""
    return [entry for entry in catalogue if entry.enabled(config)]
