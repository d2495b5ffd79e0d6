"""Compiled cffi extensions (built from `ffi/` by build.py, never at run time) and their loaders.

Each loader imports one extension and refuses one built from another version of its build script:
the version below is compiled into the extension, so a stale `.so` left in the tree or shipped in
an old bundle fails with a clear message instead of calling C with the wrong layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from firmware._ffi._linux_bus import FFI as LinuxBusFFI
    from firmware._ffi._linux_bus import Lib as LinuxBusLib
    from firmware._ffi._openssl import FFI as OpenSslFFI
    from firmware._ffi._openssl import Lib as OpenSslLib
    from firmware._ffi._pkcs11 import FFI, Lib

# Bump whenever ffi/pkcs11_build.py changes a declaration; the build script reads it from here.
PKCS11_BINDING_VERSION = 1

# Bump whenever ffi/openssl_build.py changes a declaration; the build script reads it from here.
OPENSSL_BINDING_VERSION = 1

# Bump whenever ffi/linux_bus_build.py changes a declaration; the build script reads it from here.
LINUX_BUS_BINDING_VERSION = 1

# The OpenSSL major version the TLS binding is written for (its EC_KEY_METHOD and libssl calls).
_OPENSSL_MAJOR = 3


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


def load_openssl() -> tuple[OpenSslFFI, OpenSslLib]:
    """`(ffi, lib)` of the OpenSSL 3 TLS binding, checked against this source tree's version and
    against the libssl it runs with."""
    try:
        # Deferred: the compiled extension, so this package (and its version) imports without it.
        from firmware._ffi import _openssl
    except ImportError as err:
        raise ImportError(
            f"the OpenSSL binding firmware._ffi._openssl is not built ({err}); "
            "build it with `python ffi/openssl_build.py` (build.py does this; needs libssl-dev)"
        ) from err
    built = _openssl.lib.EK_OPENSSL_BINDING_VERSION
    if built != OPENSSL_BINDING_VERSION:
        raise BindingMismatch(
            f"the OpenSSL binding firmware._ffi._openssl is version {built}, this source needs "
            f"version {OPENSSL_BINDING_VERSION}; rebuild it with `python ffi/openssl_build.py`"
        )
    running = _openssl.lib.OpenSSL_version_num()
    if running >> 28 != _OPENSSL_MAJOR:
        raise BindingMismatch(
            f"the OpenSSL binding needs libssl {_OPENSSL_MAJOR}.x, this system has version "
            f"{running:#x}; install libssl3"
        )
    return _openssl.ffi, _openssl.lib


def load_linux_bus() -> tuple[LinuxBusFFI, LinuxBusLib]:
    """`(ffi, lib)` of the Linux I²C/SPI ioctl binding, checked against this tree's version."""
    try:
        # Deferred: the compiled extension, so this package (and its version) imports without it.
        from firmware._ffi import _linux_bus
    except ImportError as err:
        raise ImportError(
            f"the Linux bus binding firmware._ffi._linux_bus is not built ({err}); "
            "build it with `python ffi/linux_bus_build.py` (build.py does this)"
        ) from err
    built = _linux_bus.lib.EK_LINUX_BUS_BINDING_VERSION
    if built != LINUX_BUS_BINDING_VERSION:
        raise BindingMismatch(
            f"the Linux bus binding firmware._ffi._linux_bus is version {built}, this source needs "
            f"version {LINUX_BUS_BINDING_VERSION}; rebuild it with `python ffi/linux_bus_build.py`"
        )
    return _linux_bus.ffi, _linux_bus.lib
