"""Registry credentials of a deployment manifest (`runtime.settings.registryCredentials`), and which
one a module's image is pulled with, as edgeAgent picks it.

Each entry is `{"address", "username", "password"}`. An image's registry is its first path
component when that holds a `.` or a `:` (`myacr.azurecr.io/sensor:1`); any other image with a
path is Docker Hub's (`https://index.docker.io/v1/`); a one-component image (`busybox`) names no
registry. The first entry whose address equals the image's registry (letters in any case) is
used. Errors name the field, never a value: these are secrets. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from firmware.errors import BadRequest

DOCKER_HUB = "https://index.docker.io/v1/"
_FIELDS = ("address", "username", "password")
_MAX_TEXT = 8192


@dataclass(frozen=True)
class RegistryCredential:
    address: str
    username: str
    password: str

    def auth(self) -> dict[str, str]:
        """Docker's `AuthConfig` for the pull (what a module spec's `settings.auth` holds)."""
        return {"serveraddress": self.address, "username": self.username, "password": self.password}


def read_registry_credentials(
    desired: Mapping[str, object], where: str
) -> list[RegistryCredential]:
    """The credentials of a manifest's `properties.desired` (`where` is its field path prefix),
    in the order written; `BadRequest` naming the entry or field that is wrong."""
    runtime = desired.get("runtime")
    settings = runtime.get("settings") if isinstance(runtime, dict) else None
    entries = settings.get("registryCredentials") if isinstance(settings, dict) else None
    if entries is None:
        return []
    field = f"{where}runtime.settings.registryCredentials"
    if not isinstance(entries, dict):
        raise BadRequest(f"field '{field}' must be an object of credentials by name")
    found = []
    for name, entry in entries.items():
        if not isinstance(entry, dict):
            raise BadRequest(f"field '{field}.{name}' must be an object")
        for key in _FIELDS:
            value = entry.get(key)
            if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
                raise BadRequest(
                    f"field '{field}.{name}.{key}' must be a string of 1-{_MAX_TEXT} characters",
                    hint='each entry is {"address", "username", "password"}',
                )
        found.append(RegistryCredential(entry["address"], entry["username"], entry["password"]))
    return found


def registry_of(image: str) -> str | None:
    """The registry an image is pulled from, as edgeAgent reads it; None for a one-component
    name (Docker Hub's library, which needs no credentials)."""
    first, slash, _ = image.partition("/")
    if not slash:
        return None
    return first if "." in first or ":" in first else DOCKER_HUB


def credential_for(image: str, credentials: list[RegistryCredential]) -> RegistryCredential | None:
    """The first credential whose address is the image's registry, or None."""
    registry = registry_of(image)
    if registry is None:
        return None
    return next((c for c in credentials if c.address.lower() == registry.lower()), None)
