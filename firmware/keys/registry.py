"""Which backend holds which key, and how each backend is built: the one place that knows names.

`BackendRegistry` maps a backend name to a zero-argument factory and opens backends lazily, on first
use, so a board without a token or TPM never imports their libraries. A backend that fails to open
raises `KeyBackendUnavailable` naming the device and the fix; it is tried again on the next use and
never affects the other backends. `registry_from_config` builds the factories from `Config`.

The registry says where a *new* key goes (`backend_for`); where an existing key lives is the key
service's location record (`firmware.keys.locations`), which configuration never overrides.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from firmware.errors import EdgekeeperError
from firmware.keys.backend import KeyBackend
from firmware.keys.errors import KeyBackendUnavailable
from firmware.keys.names import validate_key_name

if TYPE_CHECKING:
    from firmware.config.schema import Config, FileKeys, Pkcs11Keys, Tpm

BackendFactory = Callable[[], KeyBackend]


class BackendRegistry:
    """Backends by name, opened on first use; the per-key choice of backend."""

    def __init__(
        self,
        default: str,
        factories: Mapping[str, BackendFactory],
        overrides: Mapping[str, str] | None = None,
        may_hold_keys: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        """`may_hold_keys` names (blocking) the backends that may hold keys of an earlier
        configuration; None: every backend this registry can build."""
        self._factories = dict(factories)
        self._may_hold_keys = may_hold_keys or (lambda: self._factories)
        self.default = self._known(default, "[keys] default_backend")
        self._overrides = {
            validate_key_name(key): self._known(backend, f"[keys.backends] {key}")
            for key, backend in (overrides or {}).items()
        }
        self._open: dict[str, KeyBackend] = {}
        self._lock = threading.Lock()

    def backend_for(self, key_id: str) -> str:
        """The backend a new key of this name is made in: its override, else the default."""
        return self._overrides.get(key_id, self.default)

    def known(self) -> list[str]:
        """Every backend this registry can build, by name."""
        return sorted(self._factories)

    def may_hold_keys(self) -> list[str]:
        """The backends that may hold keys, configured now or not (blocking: it may look at the
        disk; call through the executor). Adoption searches them."""
        return sorted(set(self._may_hold_keys()) & set(self._factories))

    def configured(self) -> list[str]:
        """The default backend and every backend named by an override, default first."""
        names = [self.default]
        names += sorted(set(self._overrides.values()) - {self.default})
        return names

    def in_use(self) -> list[str]:
        """The configured backends, then any other backend a handle has opened."""
        names = self.configured()
        return names + sorted(set(self._open) - set(names))

    def opened(self, name: str) -> KeyBackend | None:
        """The backend if it is already open; never blocks."""
        return self._open.get(name)

    def open(self, name: str) -> KeyBackend:
        """The backend `name`, built on first use (blocking: call through the executor)."""
        backend = self._open.get(name)
        if backend is not None:
            return backend
        factory = self._factories.get(name)
        if factory is None:
            raise KeyBackendUnavailable(
                f"key backend {name!r} is not known",
                hint=f"use one of {', '.join(sorted(self._factories))}",
            )
        with self._lock:
            backend = self._open.get(name)
            if backend is None:
                backend = _build(name, factory)
                self._open[name] = backend
        return backend

    def close(self) -> None:
        with self._lock:
            backends, self._open = list(self._open.values()), {}
        for backend in backends:
            backend.close()

    def _known(self, name: str, where: str) -> str:
        if name not in self._factories:
            raise KeyBackendUnavailable(
                f"{where} names key backend {name!r}, which does not exist",
                hint=f"use one of {', '.join(sorted(self._factories))}",
            )
        return name


def _build(name: str, factory: BackendFactory) -> KeyBackend:
    try:
        return factory()
    except EdgekeeperError:
        raise
    except ImportError as err:
        raise KeyBackendUnavailable(
            f"key backend {name!r} cannot load its library: {err}",
            hint="install the backend's library or choose another backend in [keys]",
        ) from err
    except OSError as err:
        raise KeyBackendUnavailable(
            f"key backend {name!r} cannot open its device: {err}",
            hint="check the device path and permissions in [keys] / [tpm]",
        ) from err


def registry_from_config(config: Config) -> BackendRegistry:
    """The registry for `Config`: [keys], [keys.backends], [keys.file], [keys.pkcs11], [tpm]."""
    keys = config.keys
    data_dir = Path(config.paths.data_dir)
    factories: dict[str, BackendFactory] = {
        "file": lambda: _file_backend(keys.file, data_dir),
        "pkcs11": lambda: _pkcs11_backend(keys.pkcs11),
        "tpm": lambda: _tpm_backend(config.tpm, data_dir),
    }

    def may_hold_keys() -> list[str]:
        # A token is only searched when a module is configured; a TPM only once keys were made
        # in it (its key blobs exist), so a TPM never used for keys gets no storage root key.
        holders = ["file"] + (["pkcs11"] if keys.pkcs11.module else [])
        return holders + (["tpm"] if _has_entries(data_dir / "tpm-keys") else [])

    return BackendRegistry(
        default=keys.default_backend,
        factories=factories,
        overrides=dict(keys.backends),
        may_hold_keys=may_hold_keys,
    )


def _has_entries(directory: Path) -> bool:
    try:
        with os.scandir(directory) as entries:
            return any(True for _ in entries)
    except OSError:
        return False


def _file_backend(settings: FileKeys, data_dir: Path) -> KeyBackend:
    from firmware.keys.file import FileBackend  # deferred: cryptography

    return FileBackend(Path(settings.dir or data_dir / "keys"))


def _pkcs11_backend(settings: Pkcs11Keys) -> KeyBackend:
    if not settings.module:
        raise KeyBackendUnavailable(
            "the pkcs11 key backend has no module configured",
            hint="set [keys.pkcs11] module to the token's PKCS#11 library path",
        )
    from firmware.keys.pkcs11 import Pkcs11Backend  # deferred: the compiled PKCS#11 binding

    pin_file = Path(settings.pin_file) if settings.pin_file else None
    return Pkcs11Backend(
        settings.module,
        token_label=settings.token_label,
        slot=settings.slot,
        pin=settings.pin,
        pin_file=pin_file,
    )


def _tpm_backend(settings: Tpm, data_dir: Path) -> KeyBackend:
    from firmware.keys.tpm import TpmBackend  # deferred: tpm2-pytss and tpm2-tss

    passwords = settings.hierarchy_authorization
    return TpmBackend(
        settings.device,
        data_dir / "tpm-keys",
        owner_auth=passwords.owner,
        endorsement_auth=passwords.endorsement,
    )
