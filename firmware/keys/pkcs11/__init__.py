"""The PKCS#11 key backend: keys on a token through edgekeeper's own cffi binding (ffi/).

`Pkcs11Backend` is imported lazily so that the error table and DER conversions can be used (and
tested) without the compiled binding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from firmware.keys.pkcs11.backend import Pkcs11Backend

__all__ = ["Pkcs11Backend"]


def __getattr__(name: str) -> type[Pkcs11Backend]:
    if name == "Pkcs11Backend":
        # Deferred: the compiled binding (firmware._ffi._pkcs11), loaded by the backend module.
        from firmware.keys.pkcs11.backend import Pkcs11Backend

        return Pkcs11Backend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
