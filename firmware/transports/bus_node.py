"""The node a bus URL names, shared by I²C and SPI: a kernel character device or a bus socket.

`node_kind` says which one a path is (`BusFault` when nothing is there, `DeviceUrlError` when it is
something else); `open_device` opens a kernel node for the ioctls; `ioctl_binding` loads the cffi
extension that carries them (`ffi/linux_bus_build.py`) only when a kernel node is opened.
"""

from __future__ import annotations

import enum
import os
import stat
from typing import TYPE_CHECKING

from firmware.transports.errors import BusFault, DeviceUrlError

if TYPE_CHECKING:
    from firmware._ffi._linux_bus import FFI, Lib


class NodeKind(enum.Enum):
    """What a bus URL's path is."""

    DEVICE = "a kernel character device"
    SOCKET = "a bus socket"


def node_kind(path: str, where: str, *, missing_hint: str, other_hint: str, bus: str) -> NodeKind:
    """Whether `path` is a kernel device or a bus socket; `bus` names what it should be
    ("an I²C adapter") in the error for anything else."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise BusFault(f"{where}: {path} does not exist", hint=missing_hint) from None
    except OSError as exc:
        raise BusFault(
            f"{where}: cannot look at {path}: {exc.strerror}", hint="check the device URL's path"
        ) from None
    if stat.S_ISCHR(mode):
        return NodeKind.DEVICE
    if stat.S_ISSOCK(mode):
        return NodeKind.SOCKET
    raise DeviceUrlError(f"{where}: {path} is neither {bus} nor a bus socket", hint=other_hint)


def open_device(path: str, where: str, *, group_hint: str) -> int:
    """A read-write descriptor on the kernel node `path`; `BusFault` saying why not."""
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except PermissionError:
        raise BusFault(f"{where}: no permission to open {path}", hint=group_hint) from None
    except OSError as exc:
        raise BusFault(
            f"{where}: cannot open {path}: {exc.strerror}", hint="check the device URL's path"
        ) from None


def ioctl_binding(where: str) -> tuple[FFI, Lib]:
    """The cffi extension of the I²C and SPI ioctls; `BusFault` when it is not built."""
    # Deferred: the compiled extension, loaded only when a kernel bus node is opened.
    from firmware._ffi import load_linux_bus

    try:
        return load_linux_bus()
    except ImportError as exc:
        raise BusFault(
            f"{where}: the kernel bus binding is not available: {exc}",
            hint="build the extension with build.py (ffi/README.md)",
        ) from None
