"""How a `TpmConnection` reaches its TPM, from the device URL: tpm2-tss's own TCTI or edgekeeper's.

`device:`, `swtpm://`, `mssim://` and `tabrmd` go through tpm2-tss's TCTIs (the kernel's resource
manager, a simulator's socket); every other URL is a `Transport` edgekeeper drives itself (TIS over
I²C or SPI, TPM frames over a serial line), wrapped as a Python TCTI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from tpm2_pytss import ESAPI
from tpm2_pytss.TSS2_Exception import TSS2_Exception

from firmware.tpm.errors import TCTI_HINT, TpmUnavailable
from firmware.tpm.tcti import TctiSpec, open_tcti, quiet_tss2_log, unavailable
from firmware.transports.address import DeviceUrl, parse_device_url
from firmware.transports.errors import TransportError

if TYPE_CHECKING:
    from firmware.tpm.pytcti import TransportTcti

Opened = tuple[ESAPI, Callable[[], None]]
TCTI_SCHEMES = frozenset({"device", "swtpm", "mssim", "tabrmd"})
COMMAND_TIMEOUT_S = 120.0  # the slowest command a TPM may take: an RSA key generation


class TpmLink(Protocol):
    """The way to one TPM; `where` names it in messages, `text` is its URL or TCTI string."""

    where: str
    text: str

    def open(self) -> Opened:
        """An ESAPI context on the TPM and the function that closes both."""
        ...

    def last_error(self) -> TransportError | None:
        """Why the transport failed last, when ESAPI's return code cannot say it."""
        ...


class TctiLink:
    """A TPM behind one of tpm2-tss's TCTIs."""

    def __init__(self, spec: TctiSpec) -> None:
        self.spec = spec
        self.where = spec.where
        self.text = str(spec)

    def open(self) -> Opened:
        tcti = open_tcti(self.spec)
        try:
            esapi = ESAPI(tcti)
        except TSS2_Exception as exc:
            tcti.close()
            raise unavailable(self.spec, exc) from exc

        def close() -> None:
            esapi.close()
            tcti.close()

        return esapi, close

    def last_error(self) -> TransportError | None:
        return None


class TransportLink:
    """A TPM on a bus edgekeeper drives itself, `command_timeout` bounding each command."""

    def __init__(self, url: DeviceUrl, command_timeout: float = COMMAND_TIMEOUT_S) -> None:
        self.url = url
        self.where = self.text = url.text
        self.command_timeout = command_timeout
        self._error: TransportError | None = None
        self._tcti: TransportTcti | None = None

    def open(self) -> Opened:
        # Deferred: the bus modules and the Python TCTI load only for a TPM that needs them.
        from firmware.tpm.pytcti import TransportTcti
        from firmware.transports.registry import open_transport

        quiet_tss2_log()
        try:
            transport = open_transport(self.url)
        except TransportError as failed:
            self._error = failed
            raise TpmUnavailable(failed.message, hint=failed.hint or TCTI_HINT) from failed
        tcti = TransportTcti(transport, self.command_timeout)
        self._tcti = tcti
        try:
            esapi = ESAPI(tcti)
        except TSS2_Exception as exc:
            tcti.finalize()
            raise TpmUnavailable(
                f"the TPM at {self.where} does not answer ({exc})", hint=TCTI_HINT
            ) from exc

        def close() -> None:
            esapi.close()
            tcti.finalize()

        return esapi, close

    def last_error(self) -> TransportError | None:
        return (self._tcti.last_error if self._tcti is not None else None) or self._error


def link_for(
    device: str | DeviceUrl | TctiSpec, command_timeout: float = COMMAND_TIMEOUT_S
) -> TpmLink:
    """The link for a device URL, an IoT Edge TCTI string or a parsed TCTI; `command_timeout`
    bounds each command on edgekeeper's own transports (tpm2-tss's TCTIs keep their own)."""
    if isinstance(device, TctiSpec):
        return TctiLink(device)
    url = device if isinstance(device, DeviceUrl) else parse_device_url(device)
    if url.scheme in TCTI_SCHEMES:
        return TctiLink(TctiSpec.of_url(url))
    return TransportLink(url, command_timeout)
