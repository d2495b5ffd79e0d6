"""tpm2-tss's own TCTIs (the TSS transports to a TPM), for the device URLs they serve.

`device:/dev/tpmrm0` is a TPM behind the kernel's resource manager, `swtpm:host=H,port=P` and
`mssim:host=H,port=P` are simulators on TCP, `tabrmd` is the user-space resource manager.
Opening one that is not there raises `TpmUnavailable` naming the TCTI and the fix.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass

from tpm2_pytss import TCTILdr
from tpm2_pytss.TSS2_Exception import TSS2_Exception

from firmware.errors import ConfigError
from firmware.tpm.errors import TCTI_HINT, TpmUnavailable
from firmware.transports.address import DeviceUrl, parse_device_url
from firmware.transports.errors import DeviceUrlError

DEFAULT_SIMULATOR_HOST = "localhost"
DEFAULT_SIMULATOR_PORT = 2321
SOCKET_TCTIS = ("swtpm", "mssim")
KNOWN_TCTIS = ("device", "tabrmd", *SOCKET_TCTIS)
_FORMS = "device:/dev/tpmrm0, swtpm:host=H,port=P, mssim:host=H,port=P or tabrmd"
_NOT_SUPPORTED = 0x15  # TSS2_BASE_RC_NOT_SUPPORTED: the loader found no such TCTI library
_PROBE_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class TctiSpec:
    """A parsed TCTI string: the TCTI `name` and its `conf` as tpm2-tss reads them."""

    name: str
    conf: str

    @classmethod
    def parse(cls, text: str) -> TctiSpec:
        """A TCTI string (`name[:conf]`) or its device URL; `ConfigError` for anything else."""
        try:
            url = parse_device_url(text)
        except DeviceUrlError as bad:
            raise ConfigError(f"[tpm] tcti {text!r}: {bad.message}", hint=f"use {_FORMS}") from None
        if url.scheme not in KNOWN_TCTIS:
            raise ConfigError(
                f"[tpm] tcti {text!r}: unknown TCTI {url.scheme!r}", hint=f"use {_FORMS}"
            )
        return cls.of_url(url)

    @classmethod
    def of_url(cls, url: DeviceUrl) -> TctiSpec:
        """The TCTI that reaches a `device:`, `swtpm://`, `mssim://` or `tabrmd` URL."""
        if url.host is not None:
            return cls(url.scheme, f"host={url.host},port={url.port}")
        return cls(url.scheme, url.path)

    @property
    def device_path(self) -> str | None:
        """The character device of a `device` TCTI, else None."""
        return self.conf if self.name == "device" else None

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) of a simulator TCTI, else None."""
        if self.name not in SOCKET_TCTIS:
            return None
        url = parse_device_url(str(self))
        return url.host or DEFAULT_SIMULATOR_HOST, url.port or DEFAULT_SIMULATOR_PORT

    @property
    def where(self) -> str:
        """The TPM this TCTI reaches, for messages: `/dev/tpmrm0`, `swtpm at 127.0.0.1:2321`."""
        if self.device_path is not None:
            return self.device_path
        if self.address is not None:
            host, port = self.address
            return f"{self.name} at {host}:{port}"
        return self.name

    def __str__(self) -> str:
        return f"{self.name}:{self.conf}" if self.conf else self.name


def quiet_tss2_log() -> None:
    """Keep tpm2-tss's own error lines off stderr (ours are raised instead), unless the operator
    set TSS2_LOG to debug a TPM."""
    os.environ.setdefault("TSS2_LOG", "all+none")


def open_tcti(spec: TctiSpec) -> TCTILdr:
    """Load and connect the TCTI; raise `TpmUnavailable` saying why there is no TPM there."""
    quiet_tss2_log()
    if spec.device_path is not None:
        _check_device(spec.device_path)
    try:
        return TCTILdr(spec.name, spec.conf or None)
    except TSS2_Exception as exc:
        raise unavailable(spec, exc) from exc


def unavailable(spec: TctiSpec, exc: TSS2_Exception) -> TpmUnavailable:
    """The error for a TCTI that cannot reach its TPM, with the most precise reason we can find."""
    if exc.rc & 0xFFFF == _NOT_SUPPORTED:
        return TpmUnavailable(
            f"the {spec.name} TCTI library (libtss2-tcti-{spec.name}.so.0) is not installed",
            hint=f"install the tpm2-tss TCTI package for {spec.name}, or {TCTI_HINT}",
        )
    if spec.device_path is not None:
        return TpmUnavailable(
            f"the TPM at {spec.device_path} does not answer ({exc})",
            hint=f"check the TPM driver in dmesg, or {TCTI_HINT}",
        )
    if spec.address is not None:
        host, port = spec.address
        return TpmUnavailable(
            f"no TPM simulator at {host}:{port} ({spec.name} TCTI): {_socket_reason(host, port)}",
            hint=f"is {spec.name} running and listening there? {TCTI_HINT}",
        )
    return TpmUnavailable(f"the {spec.name} TCTI cannot reach a TPM ({exc})", hint=TCTI_HINT)


def _check_device(path: str) -> None:
    if not os.path.exists(path):
        raise TpmUnavailable(
            f"no TPM at {path}",
            hint=f"is the tpm_tis driver loaded (ls /dev/tpm*)? {TCTI_HINT}",
        )
    if not os.access(path, os.R_OK | os.W_OK):
        raise TpmUnavailable(
            f"cannot open the TPM at {path}: permission denied",
            hint="run the daemon in the tss group (udev gives /dev/tpmrm0 to tss, mode 0660)",
        )


def _socket_reason(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S):
            return "it accepted a connection but the TCTI failed to talk to it"
    except socket.gaierror as exc:
        return f"cannot resolve {host!r} ({exc.strerror})"
    except TimeoutError:
        return "connection timed out"
    except OSError as exc:
        if exc.errno == errno.ECONNREFUSED:
            return "connection refused"
        return exc.strerror or str(exc)
