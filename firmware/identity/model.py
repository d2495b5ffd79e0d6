"""`ModuleIdentity`: a module's identity as IoT Edge's management API shows it, and which identity
each module has.

`{"moduleId", "managedBy", "generationId", "authType": "sas"}`. The generation id is random and
new whenever the identity is created again, so a module recreated as a new identity gets a new
identity key (see `firmware.identity.modules`).

A module's identity is named after it, except IoT Edge's two system modules: the agent (whatever
`[agent] name` says) is `$edgeAgent` and the module named `edgeHub` is `$edgeHub`, as the hub
knows them and as edgeAgent and edgeHub address themselves on the workload API. System
identities belong to the device: the hub makes them with it, and the daemon never deletes them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from firmware.identity.errors import InvalidModuleId
from firmware.names import MODULE_NAME_RULE, is_module_id

AUTH_TYPE = "sas"
DEFAULT_MANAGER = "iotedge"
AGENT_IDENTITY = "$edgeAgent"
HUB_IDENTITY = "$edgeHub"
HUB_MODULE = "edgeHub"


@dataclass(frozen=True)
class ModuleIdentity:
    """One module identity; the identity key itself stays in the key service."""

    module_id: str
    generation_id: str
    managed_by: str = DEFAULT_MANAGER
    auth_type: str = AUTH_TYPE

    def document(self) -> dict[str, str]:
        return {
            "moduleId": self.module_id,
            "managedBy": self.managed_by,
            "generationId": self.generation_id,
            "authType": self.auth_type,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> ModuleIdentity:
        return cls(
            module_id=str(doc["moduleId"]),
            generation_id=str(doc["generationId"]),
            managed_by=str(doc.get("managedBy", DEFAULT_MANAGER)),
            auth_type=str(doc.get("authType", AUTH_TYPE)),
        )


def check_module_id(module_id: object, field: str = "moduleId") -> str:
    """`module_id` if it can name an identity and a socket file; `InvalidModuleId` naming
    `field` otherwise (the rule of `firmware.names.is_module_id`: a module name, optionally with
    IoT Edge's `$` prefix)."""
    if not isinstance(module_id, str) or not is_module_id(module_id):
        raise InvalidModuleId(
            f"field {field!r}: {module_id!r} is not a module id",
            hint=f"use {MODULE_NAME_RULE} (an optional leading $)",
        )
    return module_id


def new_generation_id() -> str:
    """A fresh generation id: 20 random decimal digits, like the hub's."""
    return str(secrets.randbelow(10**20)).zfill(20)


def identity_of_module(module: str, *, agent: bool) -> str:
    """The identity module `module` acts as: `$edgeAgent` for the agent, `$edgeHub` for the
    module named edgeHub, its own name otherwise."""
    if agent:
        return AGENT_IDENTITY
    return HUB_IDENTITY if module == HUB_MODULE else module


def module_of_identity(module_id: str, agent: str | None) -> str | None:
    """The module that acts as identity `module_id` (`agent` is the agent's module name), None
    for `$edgeAgent` when there is no agent."""
    if module_id == AGENT_IDENTITY:
        return agent
    return HUB_MODULE if module_id == HUB_IDENTITY else module_id


def is_system_identity(module_id: str) -> bool:
    """True for `$edgeAgent`, `$edgeHub` and any other identity the hub reserves (a `$` name)."""
    return module_id.startswith("$")
