"""The PKCS#11 key backend: keys on a token through edgekeeper's own cffi binding (ffi/).

`Pkcs11Backend` is imported lazily so that the error table and DER conversions can be used (and
tested) without the compiled binding.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Pkcs11Backend"]


def __getattr__(name: str) -> Any:
    if name == "Pkcs11Backend":
        from firmware.keys.pkcs11.backend import Pkcs11Backend

        return Pkcs11Backend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
