"""Types of the compiled Linux bus binding (from ffi/linux_bus_build.py): what mypy knows of it.

cffi ships no type information, so this stub declares the part of cffi's `FFI` the bus modules
use, and `lib`: the header constants (ints), the `ek_*` functions (0 or -errno) and the binding
version. `CData` stands for every C object (structures, arrays, pointers): its fields and items
are as dynamic as the C declarations behind them, hence `Any`.
"""

from typing import Any

class CData:
    """A C object owned or pointed to by cffi."""

    def __getattr__(self, name: str) -> Any: ...
    def __setattr__(self, name: str, value: object) -> None: ...
    def __getitem__(self, index: int) -> Any: ...
    def __setitem__(self, index: int, value: object) -> None: ...
    def __len__(self) -> int: ...

class CBuffer:
    """`ffi.buffer(...)`: the raw bytes of a C object, read with `bytes(buffer)` or sliced."""

    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __getitem__(self, index: slice) -> bytes: ...
    def __setitem__(self, index: slice, value: bytes) -> None: ...

class FFI:
    NULL: CData
    def new(self, cdecl: str, init: object = ..., /) -> CData: ...
    def sizeof(self, cdecl: str | CData, /) -> int: ...
    def offsetof(self, cdecl: str, field: str, /) -> int: ...
    def buffer(self, cdata: CData, size: int = ..., /) -> CBuffer: ...
    def cast(self, cdecl: str, value: object, /) -> CData: ...
    def from_buffer(self, cdecl: str, python_buffer: bytearray | bytes, /) -> CData: ...

class Lib:
    EK_LINUX_BUS_BINDING_VERSION: int
    EK_SPI_MAX_TRANSFERS: int
    I2C_RDWR: int
    I2C_FUNCS: int
    I2C_RDWR_IOCTL_MAX_MSGS: int
    I2C_M_RD: int
    I2C_M_TEN: int
    I2C_M_NOSTART: int
    I2C_M_STOP: int
    I2C_FUNC_I2C: int
    I2C_FUNC_10BIT_ADDR: int
    I2C_FUNC_NOSTART: int
    SPI_IOC_WR_MODE: int
    SPI_IOC_WR_BITS_PER_WORD: int
    SPI_IOC_WR_MAX_SPEED_HZ: int
    SPI_MODE_0: int
    SPI_MODE_1: int
    SPI_MODE_2: int
    SPI_MODE_3: int
    SPI_CPHA: int
    SPI_CPOL: int
    SPI_CS_HIGH: int
    SPI_LSB_FIRST: int
    SPI_NO_CS: int
    def ek_i2c_funcs(self, fd: int, funcs: CData, /) -> int: ...
    def ek_i2c_rdwr(self, fd: int, msgs: CData, count: int, /) -> int: ...
    def ek_spi_setup(self, fd: int, mode: int, bits: int, hz: int, /) -> int: ...
    def ek_spi_message(self, fd: int, xfers: CData, count: int, /) -> int: ...
    def ek_spi_ioc_message(self, count: int, /) -> int: ...

ffi: FFI
lib: Lib
