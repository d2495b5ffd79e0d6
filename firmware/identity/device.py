"""`DeviceIdentity`: which hub the device belongs to and under which id, and its power-safe cache.

The identity comes from `[provisioning]` (manual), from DPS, or is local (`source = "none"`:
the host name, no hub). It is cached in the state store ("device-identity") together with a
digest of the provisioning settings it was obtained with, so a start with the same settings uses
the cache without asking the cloud, and a start with other settings (another id scope, another
key, another source) provisions again. Pure apart from the store calls, which the caller runs
off the loop.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from firmware.store.state import StateStore

STATE_NAME = "device-identity"


@dataclass(frozen=True)
class DeviceIdentity:
    """The device's place in the cloud: `hub` ("" when local) and `device_id`."""

    source: str
    hub: str
    device_id: str
    provisioned_at: float
    substatus: str | None = None

    def same_place(self, other: DeviceIdentity | None) -> bool:
        """True if `other` names the same hub and device (the modules need not change)."""
        return other is not None and (self.hub, self.device_id) == (other.hub, other.device_id)

    def document(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> DeviceIdentity:
        substatus = doc.get("substatus")
        return cls(
            source=str(doc["source"]),
            hub=str(doc["hub"]),
            device_id=str(doc["device_id"]),
            provisioned_at=float(doc["provisioned_at"]),
            substatus=None if substatus is None else str(substatus),
        )


def local_identity(hostname: str) -> DeviceIdentity:
    """The identity of a device with no cloud: its host name, no hub."""
    return DeviceIdentity(source="none", hub="", device_id=hostname, provisioned_at=time.time())


def settings_digest(settings: object) -> str:
    """A digest of the provisioning settings an identity was obtained with (keys included, so a
    new enrollment key provisions again; only the digest is stored)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(b"edgekeeper provisioning settings\x00" + text.encode()).hexdigest()


class DeviceIdentityCache:
    """The cached identity in the state store; blocking calls (run them in the executor)."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    def load(self, digest: str) -> DeviceIdentity | None:
        """The cached identity if it was obtained with settings of `digest`; None otherwise
        (nothing cached, other settings, or an entry this version cannot read)."""
        doc = self._store.get(STATE_NAME)
        if not doc or doc.get("settings") != digest:
            return None
        try:
            return DeviceIdentity.from_document(doc["identity"])
        except (KeyError, TypeError, ValueError):
            return None

    def any(self) -> DeviceIdentity | None:
        """The cached identity whatever settings it came from (to tell a move to another hub)."""
        doc = self._store.get(STATE_NAME)
        try:
            return None if not doc else DeviceIdentity.from_document(doc["identity"])
        except (KeyError, TypeError, ValueError):
            return None

    def save(self, identity: DeviceIdentity, digest: str) -> None:
        self._store.put(STATE_NAME, {"identity": identity.document(), "settings": digest})
