"""cffi build script (API mode) for Linux's I²C and SPI user-space interfaces: `_linux_bus`.

The extension is `firmware._ffi._linux_bus`.

What it binds: the `ioctl`s of i2c-dev (`I2C_FUNCS`, `I2C_RDWR`) and spidev (`SPI_IOC_WR_MODE`,
`SPI_IOC_WR_BITS_PER_WORD`, `SPI_IOC_WR_MAX_SPEED_HZ`, `SPI_IOC_MESSAGE(n)`), each wrapped in a
small C function that returns 0 or -errno, so Python never computes an ioctl number or lays out a
kernel structure itself. The structures (`i2c_msg`, `i2c_rdwr_ioctl_data`, `spi_ioc_transfer`) and
constants come from the kernel's uapi headers (`linux/i2c.h`, `linux/i2c-dev.h`,
`linux/spi/spidev.h`, `linux/spi/spi.h`): these are libc headers (linux-libc-dev), not a vendor's.
The structures are declared to cffi with `...;`, so their sizes and offsets are the compiler's;
tests/unit/transports/test_linux_bus_structs.py compares them with a gcc-built probe.

Layout as pyca/cryptography's bindings: INCLUDES (C only), TYPES (declared to cffi; the headers
define them for C), FUNCTIONS (declared to cffi and compiled), CUSTOMIZATIONS (C only).
`EK_LINUX_BUS_BINDING_VERSION` is compiled in from `firmware/_ffi/__init__.py`, which refuses an
extension built from another version.

Run `python ffi/linux_bus_build.py` to put the extension in `firmware/_ffi/`; build.py imports this
module and calls `ffibuilder.compile(tmpdir=..., verbose=False)`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cffi

sys.path.insert(0, str(Path(__file__).resolve().parent))  # ffi/: the scripts' shared module
from extension import binding_version

BINDING_VERSION = binding_version("LINUX_BUS_BINDING_VERSION")

INCLUDES = """
#include <errno.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <linux/i2c.h>
#include <linux/i2c-dev.h>
#include <linux/spi/spi.h>
#include <linux/spi/spidev.h>
"""

TYPES = """
struct i2c_msg {
    uint16_t addr;
    uint16_t flags;
    uint16_t len;
    uint8_t *buf;
    ...;
};

struct i2c_rdwr_ioctl_data {
    struct i2c_msg *msgs;
    uint32_t nmsgs;
    ...;
};

struct spi_ioc_transfer {
    uint64_t tx_buf;
    uint64_t rx_buf;
    uint32_t len;
    uint32_t speed_hz;
    uint16_t delay_usecs;
    uint8_t bits_per_word;
    uint8_t cs_change;
    uint8_t tx_nbits;
    uint8_t rx_nbits;
    uint8_t word_delay_usecs;
    ...;
};
"""

# Constants of the headers, declared to cffi, which reads each value from the compiled C.
CONSTANTS: tuple[str, ...] = (
    # i2c-dev ioctls and what they take
    "I2C_RDWR",
    "I2C_FUNCS",
    "I2C_RDWR_IOCTL_MAX_MSGS",
    # i2c_msg.flags
    "I2C_M_RD",
    "I2C_M_TEN",
    "I2C_M_NOSTART",
    "I2C_M_STOP",
    # I2C_FUNCS bits
    "I2C_FUNC_I2C",
    "I2C_FUNC_10BIT_ADDR",
    "I2C_FUNC_NOSTART",
    # spidev
    "SPI_IOC_WR_MODE",
    "SPI_IOC_WR_BITS_PER_WORD",
    "SPI_IOC_WR_MAX_SPEED_HZ",
    "SPI_MODE_0",
    "SPI_MODE_1",
    "SPI_MODE_2",
    "SPI_MODE_3",
    "SPI_CPHA",
    "SPI_CPOL",
    "SPI_CS_HIGH",
    "SPI_LSB_FIRST",
    "SPI_NO_CS",
)

FUNCTIONS = """
int ek_i2c_funcs(int fd, unsigned long *funcs);
int ek_i2c_rdwr(int fd, struct i2c_msg *msgs, unsigned int count);
int ek_spi_setup(int fd, uint8_t mode, uint8_t bits, uint32_t hz);
int ek_spi_message(int fd, struct spi_ioc_transfer *xfers, unsigned int count);
unsigned long ek_spi_ioc_message(unsigned int count);
static const unsigned int EK_SPI_MAX_TRANSFERS;
static const int EK_LINUX_BUS_BINDING_VERSION;
"""

CUSTOMIZATIONS = """
/* SPI_IOC_MESSAGE(n) needs n structures' size in the ioctl's 14-bit size field. */
#define EK_SPI_MAX_TRANSFERS ((1u << _IOC_SIZEBITS) / sizeof(struct spi_ioc_transfer) - 1u)

/* The adapter's functionality mask (I2C_FUNC_*). */
int ek_i2c_funcs(int fd, unsigned long *funcs)
{
    return ioctl(fd, I2C_FUNCS, funcs) < 0 ? -errno : 0;
}

/* One combined transfer: `count` messages, repeated starts between them, one STOP at the end. */
int ek_i2c_rdwr(int fd, struct i2c_msg *msgs, unsigned int count)
{
    struct i2c_rdwr_ioctl_data data;

    if (count == 0 || count > I2C_RDWR_IOCTL_MAX_MSGS) {
        return -EINVAL;
    }
    data.msgs = msgs;
    data.nmsgs = count;
    return ioctl(fd, I2C_RDWR, &data) < 0 ? -errno : 0;
}

/* The ioctl number of SPI_IOC_MESSAGE(count), computed at run time (the macro wants a constant). */
unsigned long ek_spi_ioc_message(unsigned int count)
{
    return _IOC(_IOC_WRITE, SPI_IOC_MAGIC, 0, count * sizeof(struct spi_ioc_transfer));
}

/* Mode (SPI_MODE_*), word size and the clock limit of the spidev device. */
int ek_spi_setup(int fd, uint8_t mode, uint8_t bits, uint32_t hz)
{
    if (ioctl(fd, SPI_IOC_WR_MODE, &mode) < 0) {
        return -errno;
    }
    if (ioctl(fd, SPI_IOC_WR_BITS_PER_WORD, &bits) < 0) {
        return -errno;
    }
    if (ioctl(fd, SPI_IOC_WR_MAX_SPEED_HZ, &hz) < 0) {
        return -errno;
    }
    return 0;
}

/* One spidev message: `count` transfers; chip select as their cs_change fields say. */
int ek_spi_message(int fd, struct spi_ioc_transfer *xfers, unsigned int count)
{
    if (count == 0 || count > EK_SPI_MAX_TRANSFERS) {
        return -EINVAL;
    }
    return ioctl(fd, ek_spi_ioc_message(count), xfers) < 0 ? -errno : 0;
}
"""


def _constant_declarations() -> str:
    return "".join(f"static const unsigned long {name};\n" for name in CONSTANTS)


C_SOURCE = INCLUDES + f"#define EK_LINUX_BUS_BINDING_VERSION {BINDING_VERSION}\n" + CUSTOMIZATIONS

ffibuilder = cffi.FFI()
ffibuilder.set_source("firmware._ffi._linux_bus", C_SOURCE)
ffibuilder.cdef(TYPES + _constant_declarations() + FUNCTIONS)


def main() -> None:
    """Build by hand (see ffi/extension.py)."""
    from extension import compile_into_package

    print(compile_into_package(ffibuilder, "linux_bus"))


if __name__ == "__main__":
    main()
