"""The errors of device transports: what failed on which bus, and what to do about it."""

from __future__ import annotations

from firmware.errors import DeviceError


class TransportError(DeviceError):
    """A device edgekeeper drives itself (a TPM on a bus) could not be reached or understood."""


class TransportTimeout(TransportError):
    """The device did not finish within the deadline of the command."""


class BusFault(TransportError):
    """The bus refused a transfer (NAK, bus error, lost line) and retries did not cure it."""


class TransportProtocolError(TransportError):
    """The device answered something its protocol forbids (bad checksum, status bits, frame)."""


class DeviceUrlError(TransportError):
    """A device URL that cannot be used: unknown scheme, bad parameter, missing path."""

    http_status = 400
