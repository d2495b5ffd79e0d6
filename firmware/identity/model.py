"""`ModuleIdentity`: a module's identity as IoT Edge's management API shows it.

`{"moduleId", "managedBy", "generationId", "authType": "sas"}`. The generation id is random and
new whenever the identity is created again, so a module recreated as a new identity gets a new
identity key (see `firmware.identity.modules`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from firmware.identity.errors import InvalidModuleId
from firmware.names import MODULE_NAME_RULE, is_module_id

AUTH_TYPE = "sas"
DEFAULT_MANAGER = "iotedge"


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
