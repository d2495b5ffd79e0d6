"""The Linux bus binding's structures and ioctl numbers are the kernel headers' own.

A tiny C probe, compiled with gcc from the uapi headers at test time, prints the sizes and offsets
of i2c_msg, i2c_rdwr_ioctl_data and spi_ioc_transfer and the ioctl numbers; the extension's
`ffi.sizeof`/`ffi.offsetof` and constants must say the same. The ioctl numbers are also checked
against their published values (SPI_IOC_MESSAGE(1) = 0x40206B00).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from firmware._ffi import load_linux_bus

FIELDS = {
    "struct i2c_msg": ("addr", "flags", "len", "buf"),
    "struct i2c_rdwr_ioctl_data": ("msgs", "nmsgs"),
    "struct spi_ioc_transfer": (
        "tx_buf",
        "rx_buf",
        "len",
        "speed_hz",
        "delay_usecs",
        "bits_per_word",
        "cs_change",
        "tx_nbits",
        "rx_nbits",
        "word_delay_usecs",
    ),
}
CONSTANTS = ("I2C_RDWR", "I2C_FUNCS", "I2C_M_RD", "I2C_FUNC_I2C", "SPI_IOC_WR_MODE")


def probe_source() -> str:
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        "#include <sys/ioctl.h>",
        "#include <linux/i2c.h>",
        "#include <linux/i2c-dev.h>",
        "#include <linux/spi/spi.h>",
        "#include <linux/spi/spidev.h>",
        "int main(void) {",
    ]
    for struct, fields in FIELDS.items():
        lines.append(f'printf("{struct} sizeof %zu\\n", sizeof({struct}));')
        lines += [f'printf("{struct} {f} %zu\\n", offsetof({struct}, {f}));' for f in fields]
    lines += [f'printf("{name} value %lu\\n", (unsigned long){name});' for name in CONSTANTS]
    for count in (1, 2, 3):
        name = f"SPI_IOC_MESSAGE({count})"
        lines.append(f'printf("{name} value %lu\\n", (unsigned long){name});')
    lines += ["return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: no probe of the kernel headers")
    work: Path = tmp_path_factory.mktemp("linux-bus-probe")
    (work / "probe.c").write_text(probe_source())
    subprocess.run(
        [gcc, "-o", str(work / "probe"), str(work / "probe.c")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    out = subprocess.run(
        [str(work / "probe")], check=True, capture_output=True, text=True, timeout=10
    ).stdout
    values: dict[str, int] = {}
    for line in out.splitlines():
        key, _, number = line.rpartition(" ")
        values[key] = int(number)
    return values


def test_structures_have_the_kernel_headers_layout(probe: dict[str, int]) -> None:
    ffi, _ = load_linux_bus()
    for struct, fields in FIELDS.items():
        assert ffi.sizeof(struct) == probe[f"{struct} sizeof"], struct
        for name in fields:
            assert ffi.offsetof(struct, name) == probe[f"{struct} {name}"], f"{struct}.{name}"


def test_constants_and_ioctl_numbers_are_the_headers(probe: dict[str, int]) -> None:
    _, lib = load_linux_bus()
    for name in CONSTANTS:
        assert getattr(lib, name) == probe[f"{name} value"], name
    for count in (1, 2, 3):
        assert lib.ek_spi_ioc_message(count) == probe[f"SPI_IOC_MESSAGE({count}) value"]


def test_published_values() -> None:
    ffi, lib = load_linux_bus()
    assert lib.I2C_RDWR == 0x0707
    assert lib.I2C_FUNCS == 0x0705
    assert lib.I2C_M_RD == 0x0001
    assert lib.I2C_FUNC_I2C == 0x1
    assert lib.I2C_RDWR_IOCTL_MAX_MSGS == 42
    assert lib.ek_spi_ioc_message(1) == 0x40206B00
    assert lib.ek_spi_ioc_message(2) == 0x40406B00
    assert (lib.SPI_MODE_0, lib.SPI_CPHA, lib.SPI_CPOL) == (0, 1, 2)
    assert ffi.sizeof("struct spi_ioc_transfer") == 32  # the same on 32- and 64-bit user space
    assert lib.EK_SPI_MAX_TRANSFERS == 511


def test_the_wrappers_return_minus_errno() -> None:
    ffi, lib = load_linux_bus()
    fd = os.open("/dev/null", os.O_RDWR)
    try:
        funcs = ffi.new("unsigned long *")
        assert lib.ek_i2c_funcs(fd, funcs) == -25  # ENOTTY: not an I²C adapter
        msgs = ffi.new("struct i2c_msg[1]")
        assert lib.ek_i2c_rdwr(fd, msgs, 0) == -22  # EINVAL before any ioctl
        assert lib.ek_i2c_rdwr(fd, msgs, 43) == -22
        assert lib.ek_i2c_rdwr(fd, msgs, 1) == -25
        assert lib.ek_spi_setup(fd, 0, 8, 1_000_000) == -25
        xfers = ffi.new("struct spi_ioc_transfer[1]")
        assert lib.ek_spi_message(fd, xfers, 0) == -22
        assert lib.ek_spi_message(fd, xfers, 1) == -25
    finally:
        os.close(fd)
