"""Compiled cffi extensions (built from `ffi/` by build.py, never at run time) and their loaders.

Each loader imports one extension and refuses one built from another version of its build script:
the version below is compiled into the extension, so a stale `.so` left in the tree or shipped in
an old bundle fails with a clear message instead of calling C with the wrong layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from firmware._ffi._pkcs11 import FFI, Lib

# Bump whenever ffi/pkcs11_build.py changes a declaration; the build script reads it from here.
PKCS11_BINDING_VERSION = 1


class BindingMismatch(ImportError):
    """An extension built from another version of its build script."""


def load_pkcs11() -> tuple[FFI, Lib]:
    """`(ffi, lib)` of the PKCS#11 binding, checked against this source tree's version."""
    try:
        # Deferred: the compiled extension, so this package (and its version) imports without it.
        from firmware._ffi import _pkcs11
    except ImportError as err:
        raise ImportError(
            f"the PKCS#11 binding firmware._ffi._pkcs11 is not built ({err}); "
            "build it with `python ffi/pkcs11_build.py` (build.py does this)"
        ) from err
    built = _pkcs11.lib.EK_PKCS11_BINDING_VERSION
    if built != PKCS11_BINDING_VERSION:
        raise BindingMismatch(
            f"the PKCS#11 binding firmware._ffi._pkcs11 is version {built}, this source needs "
            f"version {PKCS11_BINDING_VERSION}; rebuild it with `python ffi/pkcs11_build.py`"
        )
    return _pkcs11.ffi, _pkcs11.lib
