"""`ServerNamePolicy`: the names a module may put in a server certificate it asks for.

Every module and downstream device trusts what the workload CA signs, so a module gets a
certificate only for names that are its own:

- its module name, when that is a DNS label (`tempSensor`, not `temp_sensor` or `a.b`) and not
  a name that belongs to someone else: the gateway's host name, the hub module's name, or a name
  `module_names` gives another module;
- the names `[certificates] module_names` lists for it;
- the gateway's host name (`hostname`), for `[certificates] hub_module` only.

Names compare as DNS does, case-insensitively. A wildcard, an IP address or text that is not a
DNS name is malformed (400), whatever the settings say; a well-formed name the module may not
claim is refused (403) naming the setting that would allow it. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from firmware.certs.errors import InvalidCertificateRequest, ServerNameRefused

MAX_DNS_NAME = 253
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class ServerNamePolicy:
    """Who may claim which server name; `module_names` maps a module to its extra DNS names.
    Built by `CertificatePolicy.server_names` from `hostname` and `[certificates]`."""

    hostname: str
    hub_module: str = "edgeHub"
    module_names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def allowed(self, module_id: str) -> tuple[str, ...]:
        """The names `module_id` may claim, lowercase: its own name first when it may."""
        names: list[str] = []
        own = _own_label(module_id)
        if own is not None and own not in self._reserved_for_others(module_id):
            names.append(own)
        names += [name.lower() for name in self.module_names.get(module_id, ())]
        if self._is_hub(module_id):
            names.append(self.hostname.lower())
        return tuple(dict.fromkeys(names))

    def subject_names(self, module_id: str, common_name: str) -> tuple[str, ...]:
        """The SANs of the server certificate `module_id` asks for with `common_name`: the
        common name, then the module's own name when it may claim that too.

        `InvalidCertificateRequest` when `common_name` is not a plain DNS name;
        `ServerNameRefused` when the module may not claim it."""
        name = checked_dns_name(common_name)
        allowed = self.allowed(module_id)
        if name not in allowed:
            raise self._refusal(module_id, common_name, allowed)
        own = _own_label(module_id)
        extra = (own,) if own is not None and own in allowed and own != name else ()
        return (common_name, *extra)

    def _reserved_for_others(self, module_id: str) -> set[str]:
        reserved = {
            name.lower()
            for other, names in self.module_names.items()
            if other != module_id
            for name in names
        }
        if not self._is_hub(module_id):
            reserved |= {self.hostname.lower(), self.hub_module.removeprefix("$").lower()}
        return reserved

    def _is_hub(self, module_id: str) -> bool:
        return module_id.removeprefix("$") == self.hub_module.removeprefix("$")

    def _refusal(self, module_id: str, name: str, allowed: tuple[str, ...]) -> ServerNameRefused:
        if name.lower() == self.hostname.lower():
            return ServerNameRefused(
                f"module {module_id!r} may not claim the gateway's host name {name!r}: only "
                f"[certificates] hub_module ({self.hub_module!r}) may",
                hint=f'set hub_module = "{module_id}" if this module is the hub',
            )
        may = ", ".join(allowed) if allowed else "no name"
        return ServerNameRefused(
            f"module {module_id!r} may not claim {name!r} in a server certificate: it is neither "
            f"the module's own name nor listed for it in [certificates] module_names (it may "
            f"claim: {may})",
            hint=f'add "{name}" to module_names for "{module_id}" to allow it',
        )


def checked_dns_name(name: str) -> str:
    """`name` lowercase if it is a plain DNS name (no wildcard, no IP address, LDH labels);
    `InvalidCertificateRequest` naming it otherwise."""
    if "*" in name:
        raise InvalidCertificateRequest(
            f"server name {name!r} is a wildcard; a module gets certificates for exact names only",
            hint="ask for the module's own host name",
        )
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise InvalidCertificateRequest(
            f"server name {name!r} is an IP address; a module gets certificates for DNS names only",
            hint="ask for the module's own host name",
        )
    lowered = name.lower()
    labels = lowered.split(".")
    if (
        not name.isascii()
        or len(lowered) > MAX_DNS_NAME
        or not all(_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise InvalidCertificateRequest(
            f"server name {name!r} is not a DNS name",
            hint="use labels of letters, digits and inner hyphens, separated by dots",
        )
    return lowered


def _own_label(module_id: str) -> str | None:
    """The module's name as a DNS label, lowercase, or None when it is not one."""
    lowered = module_id.lower()
    return lowered if _LABEL.fullmatch(lowered) else None
