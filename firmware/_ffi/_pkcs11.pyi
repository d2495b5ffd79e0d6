"""Types of the compiled PKCS#11 binding (built from ffi/pkcs11_build.py): what mypy knows of it.

cffi ships no type information, so this stub declares the part of cffi's `FFI` the binding uses,
and `lib`: the `CK*_`/`EK_*` constants (ints) and `ek_pkcs11_load`. `CData` stands for every C
object (pointers, arrays, structures, the CK_FUNCTION_LIST and its function pointers): its fields,
items and calls are as dynamic as the C declarations behind them, hence `Any`.
"""

from typing import Any

class CData:
    """A C object owned or pointed to by cffi."""

    def __getattr__(self, name: str) -> Any: ...
    def __setattr__(self, name: str, value: object) -> None: ...
    def __getitem__(self, index: int) -> Any: ...
    def __setitem__(self, index: int, value: object) -> None: ...
    def __call__(self, *args: object) -> Any: ...

class CBuffer:
    """`ffi.buffer(...)`: the raw bytes of a C object, read with `bytes(buffer)`."""

    def __buffer__(self, flags: int, /) -> memoryview: ...

class FFI:
    NULL: CData
    def new(self, cdecl: str, init: object = ..., /) -> CData: ...
    def sizeof(self, cdecl: str | CData, /) -> int: ...
    def buffer(self, cdata: CData, size: int = ..., /) -> CBuffer: ...
    def from_buffer(self, cdecl: str, python_buffer: bytes, /) -> CData: ...
    def string(self, cdata: CData, maxlen: int = ..., /) -> bytes: ...  # char arrays only here

class Lib:
    EK_PKCS11_BINDING_VERSION: int
    def ek_pkcs11_load(
        self, path: bytes, function_list: CData, rv: CData, error: CData, error_len: int, /
    ) -> int: ...
    def __getattr__(self, name: str) -> int: ...  # the constants table of the build script

ffi: FFI
lib: Lib
