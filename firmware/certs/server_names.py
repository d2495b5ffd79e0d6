"""`ServerNamePolicy`: the names a module may put in a server certificate it asks for.

Every module and downstream device trusts what the workload CA signs, so a module gets a
certificate only for names that are its own:

- its own name: the module id from the request path without IoT Edge's `$` prefix (`edgeHub`
  for `$edgeHub`), when that is a DNS label (`tempSensor`, not `temp_sensor` or `a.b`). As with
  IoT Edge, every server certificate the module gets carries it as a DNS SAN besides the common
  name asked for;
- the names `[certificates] module_names` lists for it;
- the gateway's host name (`hostname`), for `[certificates] hub_module` only.

A module whose own name belongs to someone else (it is the gateway's host name or the hub's name
and the module is not the hub, or `module_names` lists it for another module) gets no server
certificate at all (403 naming the clash), since each would carry that name.

Names compare as DNS does, case-insensitively; the own name keeps its letters in the SAN. A
wildcard, an IP address or text that is not a DNS name is malformed (400), whatever the settings
say; a well-formed name the module may not claim is refused (403) naming the setting that would
allow it. Settings name modules without the `$` (`hub_module = "edgeHub"` is `$edgeHub`). Pure:
no I/O.
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
        """The names `module_id` may claim, lowercase: its own name first, when it has one."""
        module = _module_name(module_id)
        own = _own_name(module_id)
        names = [] if own is None else [own.lower()]
        names += [name.lower() for name in self.module_names.get(module, ())]
        if self._is_hub(module):
            names.append(self.hostname.lower())
        return tuple(dict.fromkeys(names))

    def subject_names(self, module_id: str, common_name: str) -> tuple[str, ...]:
        """The SANs of the server certificate `module_id` asks for with `common_name`: the
        common name, then the module's own name unless it is the common name in other letters.

        `InvalidCertificateRequest` when `common_name` is not a plain DNS name;
        `ServerNameRefused` when the module may not claim it, or when its own name is someone
        else's."""
        name = checked_dns_name(common_name)
        own = _own_name(module_id)
        if own is not None:
            self._check_own(module_id, own)
        allowed = self.allowed(module_id)
        if name not in allowed:
            raise self._refusal(module_id, common_name, allowed)
        extra = (own,) if own is not None and own.lower() != name else ()
        return (common_name, *extra)

    def _check_own(self, module_id: str, own: str) -> None:
        """`ServerNameRefused` when `own`, which every certificate of the module would carry,
        is the host name, the hub's name or a name configured for another module."""
        module = _module_name(module_id)
        lowered = own.lower()
        hub = _module_name(self.hub_module)
        if not self._is_hub(module) and lowered in (self.hostname.lower(), hub.lower()):
            whose = "the gateway's host name" if lowered == self.hostname.lower() else "the hub's"
            raise ServerNameRefused(
                f"module {module_id!r} gets no server certificate: every one carries the "
                f"module's name {own!r}, which is {whose}; only [certificates] hub_module "
                f"({self.hub_module!r}) may claim it",
                hint=f'rename the module, or set hub_module = "{module}" if it is the hub',
            )
        for other, names in self.module_names.items():
            if other != module and lowered in (listed.lower() for listed in names):
                raise ServerNameRefused(
                    f"module {module_id!r} gets no server certificate: every one carries the "
                    f"module's name {own!r}, which [certificates] module_names lists for "
                    f"module {other!r}",
                    hint=f'remove "{own}" from module_names for "{other}", or rename the module',
                )

    def _is_hub(self, module: str) -> bool:
        return module == _module_name(self.hub_module)

    def _refusal(self, module_id: str, name: str, allowed: tuple[str, ...]) -> ServerNameRefused:
        if name.lower() == self.hostname.lower():
            return ServerNameRefused(
                f"module {module_id!r} may not claim the gateway's host name {name!r}: only "
                f"[certificates] hub_module ({self.hub_module!r}) may",
                hint=f'set hub_module = "{_module_name(module_id)}" if this module is the hub',
            )
        may = ", ".join(allowed) if allowed else "no name"
        return ServerNameRefused(
            f"module {module_id!r} may not claim {name!r} in a server certificate: it is neither "
            f"the module's own name nor listed for it in [certificates] module_names (it may "
            f"claim: {may})",
            hint=f'add "{name}" to module_names for "{_module_name(module_id)}" to allow it',
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


def _module_name(module_id: str) -> str:
    """The module's name as the settings give it: the id without one leading `$`."""
    return module_id.removeprefix("$")


def _own_name(module_id: str) -> str | None:
    """The module's name with its letters, when it is a DNS label a certificate may carry
    (ASCII letters, digits and inner hyphens, not all digits); None otherwise."""
    name = _module_name(module_id)
    lowered = name.lower()
    if not name.isascii() or not _LABEL.fullmatch(lowered) or lowered.isdigit():
        return None
    return name
