"""The configuration schema: one frozen dataclass per TOML section, described by its field metadata.

The validator (`firmware.config.validate`) knows nothing about any section: it walks these types.
Each field's type says what TOML value it takes (`str`, `int`, `bool`, `float`, `Literal[...]` for
a fixed set of choices, `X | None` for optional, `tuple[T, ...]` for arrays, `dict[str, T]` for free
tables, `Any` for opaque TOML, or another dataclass for a sub-table). Its metadata, set through
`setting()`, adds the documentation, the TOML key when it differs from the Python name, accepted
aliases (IoT Edge spellings), secrecy for `config show`, numeric bounds and a text pattern. A
section with rules across fields (e.g. manual provisioning needs a hub and a device id) states
them in a `check()` method that yields `Violation`s; the validator calls it once the section is
built.

String values may reference `{paths.data_dir}` and `{paths.run_dir}`; the loader expands them once
every layer is merged, so `[paths]` moved by a board moves the sockets and stores with it.

Helpers that need more settings add fields to their own section here (small, additive edits).
"""

# ruff: noqa: RUF009 - `setting()` returns a `dataclasses.field`, which ruff cannot see through.

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field
from typing import Any, Literal, NamedTuple, TypeVar, overload

from firmware.config.password_hash import HINT, PasswordHash, UnusableHash
from firmware.names import MAX_MODULE_NAME, MODULE_NAME_RULE, is_module_name
from firmware.transports.address import URL_HINT, parse_device_url
from firmware.transports.errors import DeviceUrlError

T = TypeVar("T")

#: Field metadata keys the validator, the docs and `config show` read.
DOC = "doc"
TOML_KEY = "toml_key"
ALIASES = "aliases"
SECRET = "secret"
MIN = "min"
MAX = "max"
PATTERN = "pattern"
INTERNAL = "internal"
BOARD_ONLY = "board_only"

#: How `config show` and configuration problems show a secret (or the secret part of a URI).
REDACTED = "<redacted>"
#: What a problem with a secret setting says instead of the value.
NOT_SHOWN = "value not shown: secret"


@overload
def setting(
    default: T,
    *,
    doc: str,
    key: str | None = None,
    aliases: tuple[str, ...] = (),
    secret: bool = False,
    min: float | None = None,
    max: float | None = None,
    pattern: str | None = None,
    board_only: bool = False,
) -> T: ...
@overload
def setting(
    *,
    doc: str,
    factory: Callable[[], T],
    key: str | None = None,
    aliases: tuple[str, ...] = (),
    secret: bool = False,
    min: float | None = None,
    max: float | None = None,
    pattern: str | None = None,
    board_only: bool = False,
) -> T: ...
@overload
def setting(
    *,
    doc: str,
    key: str | None = None,
    aliases: tuple[str, ...] = (),
    secret: bool = False,
    min: float | None = None,
    max: float | None = None,
    pattern: str | None = None,
    board_only: bool = False,
) -> Any: ...
def setting(
    default: object = MISSING,
    *,
    doc: str,
    factory: Callable[[], object] | None = None,
    key: str | None = None,
    aliases: tuple[str, ...] = (),
    secret: bool = False,
    min: float | None = None,
    max: float | None = None,
    pattern: str | None = None,
    board_only: bool = False,
) -> Any:
    """A dataclass field carrying the schema metadata the validator and docs read.

    Typed like `dataclasses.field`: the default (or the factory's result) has the field's type;
    a required setting (no default) is `Any`, as `field()` without a default is.
    """
    metadata = {
        DOC: doc,
        TOML_KEY: key,
        ALIASES: aliases,
        SECRET: secret,
        MIN: min,
        MAX: max,
        PATTERN: pattern,
        BOARD_ONLY: board_only,
    }
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


class Violation(NamedTuple):
    """A rule across fields that a section breaks; `key` is relative to the section."""

    key: str
    message: str
    hint: str


DURATION = r"[1-9][0-9]*\s*[smhdw]"
DEFAULT_TPM = "device:/dev/tpmrm0"
CONSOLE_SCHEMES = frozenset({"serial", "socket", "rfc2217"})
CONSOLE_FORMS = (
    'e.g. "/dev/ttyS0", "serial:///dev/ttyS0?baud=115200", "pty", "socket://127.0.0.1:7000", '
    '"rfc2217://host:port" or "none"'
)
LogLevel = Literal["debug", "info", "warning", "error"]
KeyBackendName = Literal["file", "pkcs11", "tpm"]


@dataclass(frozen=True)
class BoardDevices:
    """Device nodes the board's udev rules and bundle grant the daemon access to."""

    tpm: str | None = setting(None, doc="TPM resource manager device, e.g. /dev/tpmrm0")
    i2c: tuple[str, ...] = setting((), doc='I2C bus devices, e.g. ["/dev/i2c-1"]')
    spi: tuple[str, ...] = setting((), doc='SPI devices, e.g. ["/dev/spidev0.0"]')
    serial: tuple[str, ...] = setting((), doc='serial ports, e.g. ["/dev/ttyS0"]')


@dataclass(frozen=True)
class Board:
    """What the hardware is; set by board files only."""

    name: str = setting("generic", doc="board name, as given to --board", board_only=True)
    arch: Literal["x86_64", "aarch64", "armv7l", "riscv64"] = setting(
        "x86_64", doc="CPU architecture the binary is built for", board_only=True
    )
    description: str = setting("", doc="one line for people", board_only=True)
    memory_budget_mb: int = setting(
        64, doc="RAM the daemon may use (MiB)", min=8, max=65536, board_only=True
    )
    disk_budget_mb: int = setting(
        512, doc="disk the data dir may use (MiB)", min=16, max=1048576, board_only=True
    )
    devices: BoardDevices = setting(
        factory=BoardDevices, doc="device nodes for udev rules", board_only=True
    )

    def check(self) -> Iterator[Violation]:
        yield from _name_rule("name", self.name, "board")


def _name_rule(key: str, name: str, what: str) -> Iterator[Violation]:
    """The one name rule (`firmware.names`) for a name that becomes a path or a container name."""
    if not is_module_name(name):
        shown = name if len(name) <= MAX_MODULE_NAME else name[:MAX_MODULE_NAME] + "..."
        yield Violation(
            key, f"{what} name {shown!r} is not a valid name", f"use {MODULE_NAME_RULE}"
        )


@dataclass(frozen=True)
class Paths:
    """Where state and runtime files live."""

    data_dir: str = setting("/var/lib/edgekeeper", doc="persistent state (keys, certs, store)")
    run_dir: str = setting("/run/edgekeeper", doc="sockets, pid file, console pty link")

    def check(self) -> Iterator[Violation]:
        for name in ("data_dir", "run_dir"):
            if not getattr(self, name).startswith("/"):
                yield Violation(name, f"{name} must be an absolute path", "start it with /")


@dataclass(frozen=True)
class Logging:
    """Daemon log output."""

    level: LogLevel = setting("info", doc="lowest level logged; changeable at run time")
    format: Literal["text", "json"] = setting("text", doc="one line of text or one JSON object")


@dataclass(frozen=True)
class Console:
    """The technician's serial console."""

    device: str = setting(
        "none",
        doc='"none", "pty" (a pseudo-terminal, its path printed), a device path or a device URL '
        "(serial:///dev/ttyS0?baud=115200, socket://HOST:PORT, rfc2217://HOST:PORT)",
    )
    baud: int = setting(115200, doc="line speed (bit/s)", min=50, max=4000000)
    prompt: str = setting("edgekeeper> ", doc="the prompt shown before each line")
    log_level: LogLevel = setting(
        "warning",
        doc="lowest level of daemon log lines shown on the console "
        "(`log` changes it for a session)",
    )
    columns: int = setting(
        0,
        doc="terminal width for tables; 0: ask the terminal (80 if it does not answer)",
        min=0,
        max=1000,
    )
    password_hash: str | None = setting(
        None,
        doc="scrypt hash of the console password (`edgekeeper console-password`); unset: no login",
        secret=True,
    )
    login_attempts: int = setting(
        3, doc="failed logins in a row before the console locks", min=1, max=100
    )
    lockout: str = setting("5m", doc="how long the console stays locked", pattern=DURATION)
    idle_logout: str = setting("15m", doc="log out after this long without input", pattern=DURATION)
    read_only_without_login: bool = setting(
        False, doc="allow commands that change nothing without logging in"
    )

    def check(self) -> Iterator[Violation]:
        if self.password_hash is not None:
            try:
                PasswordHash.parse(self.password_hash)
            except UnusableHash as unusable:
                yield Violation("password_hash", f"not a usable hash: {unusable.reason}", HINT)
        device = self.device
        if device.startswith("loop://"):
            yield Violation(
                "device",
                "loop:// sends the console's own output back to it as input, without end",
                'use "pty" for a local console or "none" for no console',
            )
        elif "://" in device:
            try:
                scheme = parse_device_url(device).scheme
            except DeviceUrlError as bad:
                yield Violation("device", bad.message, bad.hint or CONSOLE_FORMS)
            else:
                if scheme not in CONSOLE_SCHEMES:
                    yield Violation(
                        "device",
                        f'"{device}" is a TPM\'s device URL, not a console line',
                        CONSOLE_FORMS,
                    )
        elif device not in ("none", "pty") and not device.startswith("/"):
            yield Violation(
                "device",
                f'console device "{device}" is not "none", "pty", a device path or a URL',
                CONSOLE_FORMS,
            )


@dataclass(frozen=True)
class Listen:
    """Sockets the daemon serves (IoT Edge `[listen]`)."""

    management_uri: str = setting(
        "unix://{paths.run_dir}/mgmt.sock", doc="management API socket (unix:// or fd://)"
    )
    workload_uri: str = setting(
        "unix://{paths.run_dir}/workload.sock", doc="workload API socket (unix:// or fd://)"
    )
    shared_workload_socket: bool = setting(
        False,
        doc="also serve workload_uri, shared by all modules (each module always gets its own)",
    )
    socket_group: str | None = setting(None, doc="group owning the sockets (default: root's)")
    socket_mode: int = setting(0o660, doc="socket file mode, e.g. 0o660", min=0, max=0o777)
    min_tls_version: Literal["tls1.0", "tls1.2", "tls1.3"] = setting(
        "tls1.2", doc="lowest TLS version for TLS listeners (IoT Edge key; kept for compatibility)"
    )

    def check(self) -> Iterator[Violation]:
        yield from _socket_uris(self.management_uri, self.workload_uri, ("unix://", "fd://"))


@dataclass(frozen=True)
class Connect:
    """Where the CLI and modules reach the daemon (IoT Edge `[connect]`)."""

    management_uri: str = setting("unix://{paths.run_dir}/mgmt.sock", doc="management API")
    workload_uri: str = setting("unix://{paths.run_dir}/workload.sock", doc="workload API")

    def check(self) -> Iterator[Violation]:
        yield from _socket_uris(self.management_uri, self.workload_uri, ("unix://",))


def _socket_uris(management: str, workload: str, schemes: tuple[str, ...]) -> Iterator[Violation]:
    for name, uri in (("management_uri", management), ("workload_uri", workload)):
        if not uri.startswith(schemes):
            allowed = " or ".join(schemes)
            yield Violation(name, f'"{uri}" is not a {allowed} URI', f"use {allowed}/path.sock")


@dataclass(frozen=True)
class Runtime:
    """The container engine (IoT Edge `[moby_runtime]`)."""

    uri: str = setting("unix:///var/run/docker.sock", doc="Docker Engine API socket")
    network: str = setting("azure-iot-edge", doc="network the modules join")

    def check(self) -> Iterator[Violation]:
        if not self.uri.startswith("unix://"):
            yield Violation(
                "uri", "the engine is reached over a unix socket", 'use "unix:///path/docker.sock"'
            )


@dataclass(frozen=True)
class TpmHierarchyAuthorization:
    """Hierarchy passwords when the TPM's are not empty."""

    endorsement: str | None = setting(None, doc="endorsement hierarchy password", secret=True)
    owner: str | None = setting(None, doc="owner hierarchy password", secret=True)


@dataclass(frozen=True)
class Tpm:
    """The TPM 2.0 (IoT Edge `[tpm]`)."""

    device: str = setting(
        DEFAULT_TPM,
        aliases=("tcti",),
        doc="device URL of the TPM: device:/dev/tpmrm0, swtpm://HOST:PORT, "
        "tis-i2c:///dev/i2c-1?addr=0x2e, tis-spi:///dev/spidev0.1, "
        "mssim+serial:///dev/ttyUSB0?baud=115200 (docs/transports.md); IoT Edge's `tcti` "
        "(a tpm2-tss TCTI string such as swtpm:host=H,port=P) is read as the URL it means",
    )
    auth_key_index: int = setting(
        0x00_01_00, doc="persistent handle offset for the DPS auth key", min=0, max=0x7F_FF_FF
    )
    hierarchy_authorization: TpmHierarchyAuthorization = setting(
        factory=TpmHierarchyAuthorization, doc="hierarchy passwords"
    )

    def check(self) -> Iterator[Violation]:
        try:
            parse_device_url(self.device)
        except DeviceUrlError as bad:
            yield Violation("device", bad.message, bad.hint or URL_HINT)


@dataclass(frozen=True)
class FileKeys:
    """The software key store."""

    dir: str = setting("{paths.data_dir}/keys", doc="directory of 0600 key files")


@dataclass(frozen=True)
class Pkcs11Keys:
    """A PKCS#11 token (SoftHSM2, a secure element's module, an HSM)."""

    module: str | None = setting(None, doc="path of the token's PKCS#11 library")
    token_label: str | None = setting(None, doc="label of the token to use")
    slot: int | None = setting(None, doc="slot id, when the label is not enough", min=0)
    pin: str | None = setting(None, doc="user PIN (prefer pin_file)", secret=True)
    pin_file: str | None = setting(None, doc="0600 file holding the user PIN")

    def check(self) -> Iterator[Violation]:
        if self.pin is not None and self.pin_file is not None:
            yield Violation("pin", "pin and pin_file are both set", "keep only one of them")
        if self.module is not None and self.token_label is None and self.slot is None:
            yield Violation(
                "token_label", "the PKCS#11 token is not named", "set token_label or slot"
            )


@dataclass(frozen=True)
class Keys:
    """Which key store holds which key."""

    default_backend: KeyBackendName = setting("file", doc="backend for keys not listed below")
    backends: dict[str, KeyBackendName] = setting(
        factory=dict, doc="per-key overrides: key name -> backend"
    )
    file: FileKeys = setting(factory=FileKeys, doc="software key store")
    pkcs11: Pkcs11Keys = setting(factory=Pkcs11Keys, doc="PKCS#11 token")

    def check(self) -> Iterator[Violation]:
        used = {self.default_backend, *self.backends.values()}
        if "pkcs11" in used and self.pkcs11.module is None:
            yield Violation(
                "pkcs11.module",
                "the pkcs11 backend is used but no PKCS#11 module is configured",
                "set [keys.pkcs11] module to the token library's path",
            )


@dataclass(frozen=True)
class Certificates:
    """Issued certificates and their renewal."""

    dir: str = setting("{paths.data_dir}/certs", doc="directory of issued certificates")
    renew_at_percent: int = setting(
        80, doc="renew a certificate when this share of its lifetime has passed", min=1, max=99
    )
    renew_retry_initial_seconds: int = setting(
        60, doc="first retry after a failed renewal (doubles per failure)", min=1, max=86400
    )
    renew_retry_max_seconds: int = setting(
        3600, doc="longest wait between renewal retries", min=1, max=604800
    )
    workload_ca_expiry_days: int = setting(
        90, doc="lifetime of the workload CA (capped by the Edge CA)", min=1, max=3650
    )
    server_cert_expiry_days: int = setting(
        30,
        doc="module server certificate lifetime: the default and the longest a module may ask for",
        min=1,
        max=3650,
    )
    module_names: dict[str, tuple[str, ...]] = setting(
        factory=dict,
        doc="extra DNS names a module may put in its server certificate: module -> names",
    )
    hub_module: str = setting(
        "edgeHub", doc="the module that may claim the gateway's host name (hostname)"
    )
    identity_cert_expiry_days: int = setting(
        30, doc="module identity certificate lifetime", min=1, max=3650
    )

    def check(self) -> Iterator[Violation]:
        yield from _name_rule("hub_module", self.hub_module, "module")
        for module in self.module_names:
            yield from _name_rule(f"module_names.{module}", module, "module")


@dataclass(frozen=True)
class EdgeCa:
    """The Edge CA that issues module certificates (IoT Edge `[edge_ca]`)."""

    cert: str | None = setting(None, doc="file URI of your own Edge CA certificate")
    pk: str | None = setting(None, doc="file or PKCS#11 URI of its private key")
    auto_generated_expiry_days: int = setting(
        90,
        doc="lifetime of the self-signed quickstart Edge CA (not for production)",
        aliases=("auto_generated_edge_ca_expiry_days",),
        min=1,
        max=3650,
    )

    def check(self) -> Iterator[Violation]:
        if (self.cert is None) != (self.pk is None):
            missing = "pk" if self.pk is None else "cert"
            yield Violation(missing, "edge_ca needs both cert and pk", f"set {missing} too")


@dataclass(frozen=True)
class KeyMaterial:
    """A secret given inline (`{ value = "base64" }`), by URI (`{ uri = "file://..." }`, or
    `{ uri = "pkcs11:...;object=NAME" }` for a key on the token) or as a key of the key service
    (`{ key = "NAME" }`, stored where `[keys.backends]` puts NAME)."""

    value: str | None = setting(None, doc="the key, base64", secret=True)
    uri: str | None = setting(None, doc="file:// URI of a file holding the key, or a pkcs11: URI")
    key: str | None = setting(None, doc="name of a key in the key service")

    def check(self) -> Iterator[Violation]:
        given = [name for name in ("value", "uri", "key") if getattr(self, name) is not None]
        if len(given) != 1:
            yield Violation(
                "value", "give exactly one of value, uri or key", "remove all but one, or add one"
            )
        elif self.value is not None and not _is_base64(self.value):
            yield Violation(
                "value",
                f"the key is empty or not base64 ({NOT_SHOWN})",
                "give the key as standard base64 (RFC 4648), as the hub or DPS shows it",
            )
        elif self.uri is not None and not self.uri.startswith(("file://", "pkcs11:")):
            yield Violation(
                "uri",
                f"{self.uri!r} is neither a file:// nor a pkcs11: URI",
                'use uri = "file:///path/to/key" or { key = "NAME" } for a key of the key service',
            )


def _is_base64(text: str) -> bool:
    try:
        return bool(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return False


@dataclass(frozen=True)
class ProvisioningAuthentication:
    """How a manually provisioned device authenticates to its hub."""

    method: Literal["sas", "x509"] = setting("sas", doc="shared access key or X.509 certificate")
    device_id_pk: KeyMaterial | None = setting(None, doc="the device's symmetric key (sas)")
    identity_cert: str | None = setting(None, doc="file URI of the identity certificate (x509)")
    identity_pk: str | None = setting(
        None, doc="its key (x509): a file:// URI, a pkcs11: URI or a key name of the key service"
    )

    def check(self) -> Iterator[Violation]:
        if self.method == "sas" and self.device_id_pk is None:
            yield Violation(
                "device_id_pk",
                'method = "sas" needs device_id_pk',
                'set device_id_pk = { value = "<base64 key>" } or { uri = "file://..." }',
            )
        if self.method == "x509":
            yield from _x509_needs(self.identity_cert, self.identity_pk)


@dataclass(frozen=True)
class Attestation:
    """How a DPS-provisioned device proves who it is."""

    method: Literal["symmetric_key", "x509", "tpm"] = setting(
        "symmetric_key", doc="symmetric key, X.509 certificate or TPM endorsement key"
    )
    registration_id: str | None = setting(
        None, doc="DPS registration id (tpm: default the one the C SDK derives from the EK)"
    )
    symmetric_key: KeyMaterial | None = setting(None, doc="enrollment key (symmetric_key)")
    identity_cert: str | None = setting(None, doc="file URI of the identity certificate (x509)")
    identity_pk: str | None = setting(
        None, doc="its key (x509): a file:// URI, a pkcs11: URI or a key name of the key service"
    )

    def check(self) -> Iterator[Violation]:
        if self.method == "symmetric_key" and self.registration_id is None:
            yield Violation(
                "registration_id",
                f'method = "{self.method}" needs registration_id',
                "set registration_id to the enrollment's registration id",
            )
        if self.method == "symmetric_key" and self.symmetric_key is None:
            yield Violation(
                "symmetric_key",
                'method = "symmetric_key" needs symmetric_key',
                'set symmetric_key = { value = "<base64 key>" } or { uri = "file://..." }',
            )
        if self.method == "x509":
            yield from _x509_needs(self.identity_cert, self.identity_pk)


def _x509_needs(cert: str | None, pk: str | None) -> Iterator[Violation]:
    for name, value in (("identity_cert", cert), ("identity_pk", pk)):
        if value is None:
            yield Violation(name, f'method = "x509" needs {name}', f'set {name} = "file:///..."')


@dataclass(frozen=True)
class PayloadFile:
    """The custom payload DPS passes to its allocation function."""

    uri: str = setting(doc="file:// URI of a JSON file", pattern=r"file://.+")


@dataclass(frozen=True)
class Provisioning:
    """How the device gets its identity (IoT Edge `[provisioning]`)."""

    source: Literal["none", "manual", "dps"] = setting(
        "none", doc='"none" (no cloud identity), "manual" or "dps"'
    )
    connection_string: str | None = setting(
        None, doc="manual: the device connection string", secret=True
    )
    iothub_hostname: str | None = setting(None, doc="manual: the IoT hub's host name")
    device_id: str | None = setting(None, doc="manual: the device id on the hub")
    authentication: ProvisioningAuthentication | None = setting(
        None, doc="manual: how the device authenticates"
    )
    global_endpoint: str = setting(
        "https://global.azure-devices-provisioning.net", doc="dps: the DPS endpoint"
    )
    id_scope: str | None = setting(None, doc="dps: the DPS instance's id scope")
    attestation: Attestation | None = setting(None, doc="dps: how the device attests")
    payload: PayloadFile | None = setting(
        None, doc='dps: JSON sent with the registration (`{ uri = "file://..." }`)'
    )
    always_reprovision_on_startup: bool | None = setting(
        None, doc="IoT Edge 1.1 key: true maps to auto_reprovisioning_mode = AlwaysOnStartup"
    )
    dynamic_reprovisioning: bool | None = setting(
        None, doc="IoT Edge 1.1 key: true maps to auto_reprovisioning_mode = Dynamic"
    )

    def check(self) -> Iterator[Violation]:
        if self.source == "manual":
            yield from self._check_manual()
        elif self.source == "dps":
            if self.id_scope is None:
                yield Violation("id_scope", 'source = "dps" needs id_scope', "set id_scope")
            if self.attestation is None:
                yield Violation(
                    "attestation",
                    'source = "dps" needs [provisioning.attestation]',
                    'add [provisioning.attestation] with method = "symmetric_key", "x509" or "tpm"',
                )

    def _check_manual(self) -> Iterator[Violation]:
        if self.connection_string is not None:
            parts = _connection_string_parts(self.connection_string)
            if not all(parts.get(k) for k in ("HostName", "DeviceId", "SharedAccessKey")):
                yield Violation(
                    "connection_string",
                    "connection_string lacks HostName, DeviceId or SharedAccessKey",
                    'use "HostName=<hub>;DeviceId=<id>;SharedAccessKey=<base64>"',
                )
            elif not _is_base64(parts["SharedAccessKey"]):
                yield Violation(
                    "connection_string",
                    f"the SharedAccessKey of connection_string is not base64 ({NOT_SHOWN})",
                    "copy the connection string again from the hub",
                )
            return
        needed = (("iothub_hostname", self.iothub_hostname), ("device_id", self.device_id))
        for name, value in needed:
            if value is None:
                yield Violation(
                    name,
                    f'source = "manual" needs {name} (or connection_string)',
                    f"set {name}, or give connection_string instead",
                )
        if self.authentication is None:
            yield Violation(
                "authentication",
                'source = "manual" needs [provisioning.authentication] (or connection_string)',
                'add [provisioning.authentication] with method = "sas" and device_id_pk',
            )


def _connection_string_parts(text: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in text.split(";") if "=" in p)


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials to pull the agent image (IoT Edge `[agent.config.auth]`)."""

    serveraddress: str = setting(doc="registry host, e.g. example.azurecr.io")
    username: str = setting(doc="registry user")
    password: str = setting(doc="registry password", secret=True)


@dataclass(frozen=True)
class AgentConfig:
    """The agent container's image and create options."""

    image: str = setting("mcr.microsoft.com/azureiotedge-agent:1.5", doc="agent image")
    create_options: dict[str, Any] = setting(
        factory=dict, key="createOptions", doc="Docker container create options, as a TOML table"
    )
    auth: RegistryAuth | None = setting(None, doc="registry credentials for the image")


@dataclass(frozen=True)
class Agent:
    """The first module the daemon starts and keeps running (IoT Edge `[agent]`)."""

    name: str = setting("edgeAgent", doc="module name")
    type: Literal["docker"] = setting("docker", doc="module type")
    image_pull_policy: Literal["on-create", "never"] = setting(
        "on-create",
        key="imagePullPolicy",
        doc="pull the image when creating the container, or never",
    )
    config: AgentConfig = setting(factory=AgentConfig, doc="image and create options")
    env: dict[str, str | int | float | bool] = setting(
        factory=dict, doc="environment variables for the agent"
    )

    def check(self) -> Iterator[Violation]:
        yield from _name_rule("name", self.name, "agent")


@dataclass(frozen=True)
class WorkloadBudgets:
    """How much expensive work modules may ask of the workload API (429, Retry-After, past it)."""

    certificates_per_module: int = setting(
        10, doc="certificates one module may be issued per minute", min=1, max=100000
    )
    certificates: int = setting(
        60, doc="certificates all modules together may be issued per minute", min=1, max=100000
    )
    key_operations_per_module: int = setting(
        100, doc="sign/encrypt/decrypt calls one module may make per second", min=1, max=100000
    )
    key_operations: int = setting(
        500,
        doc="sign/encrypt/decrypt calls all modules together may make per second",
        min=1,
        max=100000,
    )


@dataclass(frozen=True)
class Workload:
    """The workload API modules call."""

    requests_per_socket: int = setting(
        1000,
        doc="requests per second one workload socket may make (429 past it)",
        min=1,
        max=1_000_000,
    )
    budgets: WorkloadBudgets = setting(factory=WorkloadBudgets, doc="per-module and global budgets")


@dataclass(frozen=True)
class Watchdog:
    """The agent watchdog (IoT Edge `[watchdog]`)."""

    max_retries: int | Literal["infinite"] = setting(
        "infinite", doc='restarts before giving up: a positive integer or "infinite"', min=1
    )


@dataclass(frozen=True)
class ImageGarbageCollection:
    """Removal of unused images (IoT Edge `[image_garbage_collection]`)."""

    enabled: bool = setting(True, doc="remove unused images")
    cleanup_recurrence: str = setting("1d", doc="how often, e.g. 1d, 12h", pattern=DURATION)
    image_age_cleanup_threshold: str = setting(
        "7d", doc="remove images unused for this long", pattern=DURATION
    )
    cleanup_time: str = setting(
        "00:00", doc="time of day (HH:MM, local) to start", pattern=r"([01][0-9]|2[0-3]):[0-5][0-9]"
    )


def _machine_hostname() -> str:
    return os.uname().nodename


@dataclass(frozen=True)
class Config:
    """The whole configuration: defaults, board file, config.toml and config.d merged."""

    hostname: str = setting(
        factory=_machine_hostname, doc="device host name (default: the machine's)"
    )
    parent_hostname: str | None = setting(None, doc="parent device in a nested Edge setup")
    trust_bundle_cert: str | None = setting(None, doc="file URI of extra trusted CA certificates")
    manifest_trust_bundle_cert: str | None = setting(
        None, doc="file URI of the CA certificates that sign deployment manifests"
    )
    auto_reprovisioning_mode: Literal["Dynamic", "AlwaysOnStartup", "OnErrorOnly"] = setting(
        "Dynamic", doc="when to provision again"
    )
    cloud_timeout_sec: int = setting(
        70, doc="seconds one request to DPS or the hub may take", min=5, max=600
    )
    cloud_retries: int = setting(
        1, doc="retries of a failed request to DPS or the hub before waiting longer", min=0, max=10
    )
    allow_elevated_docker_permissions: bool = setting(
        True,
        doc="let modules ask for elevated create options (privileged, capabilities, host "
        "namespaces, devices, binds of host system paths); false refuses them at admission",
    )
    board: Board = setting(factory=Board, doc="the hardware (board files only)", board_only=True)
    paths: Paths = setting(factory=Paths, doc="state and runtime directories")
    logging: Logging = setting(factory=Logging, doc="log output")
    console: Console = setting(factory=Console, doc="serial console")
    listen: Listen = setting(factory=Listen, doc="sockets served")
    connect: Connect = setting(factory=Connect, doc="sockets the CLI and modules use")
    runtime: Runtime = setting(factory=Runtime, aliases=("moby_runtime",), doc="container engine")
    tpm: Tpm = setting(factory=Tpm, doc="TPM 2.0")
    keys: Keys = setting(factory=Keys, doc="key stores")
    certificates: Certificates = setting(factory=Certificates, doc="issued certificates")
    edge_ca: EdgeCa = setting(factory=EdgeCa, doc="Edge CA")
    provisioning: Provisioning = setting(factory=Provisioning, doc="device identity")
    agent: Agent = setting(factory=Agent, doc="the agent module")
    workload: Workload = setting(factory=Workload, doc="workload API")
    watchdog: Watchdog = setting(factory=Watchdog, doc="agent watchdog")
    image_garbage_collection: ImageGarbageCollection = setting(
        factory=ImageGarbageCollection, doc="image clean-up"
    )
    origins: dict[str, str] = field(
        default_factory=dict, compare=False, repr=False, metadata={INTERNAL: True}
    )
    """Where each set key came from ("FILE:LINE"), for `config show --sources`; not a TOML key."""

    def reprovisioning_mode(self) -> Literal["Dynamic", "AlwaysOnStartup", "OnErrorOnly"]:
        """`auto_reprovisioning_mode`, or what IoT Edge's importer makes of the 1.1 keys when
        `[provisioning]` gives one: dynamic -> Dynamic, else always -> AlwaysOnStartup, else
        OnErrorOnly."""
        old = self.provisioning
        if old.dynamic_reprovisioning is None and old.always_reprovision_on_startup is None:
            return self.auto_reprovisioning_mode
        if old.dynamic_reprovisioning:
            return "Dynamic"
        return "AlwaysOnStartup" if old.always_reprovision_on_startup else "OnErrorOnly"


#: IoT Edge keys edgekeeper reads under another name: IoT Edge dotted key -> edgekeeper dotted key.
IOTEDGE_RENAMED: dict[str, str] = {
    "homedir": "paths.data_dir",
    "aziot_keys.pkcs11_lib_path": "keys.pkcs11.module",
}

#: IoT Edge keys edgekeeper does not offer, with what to do instead.
IOTEDGE_UNSUPPORTED: dict[str, str] = {
    "cert_issuance": "EST and local-CA issuance are not supported; give file URIs instead",
    "preloaded_keys": "preloaded keys are not supported; name keys in [keys.backends]",
    "aziot_keys.pkcs11_base_slot": "set [keys.pkcs11] token_label or slot, and pin_file",
    "edge_ca.auto_renew": "edgekeeper renews at [certificates] renew_at_percent",
    "moby_runtime.content_trust": "content trust is not supported; remove this table",
    "agent.config.auth.identitytoken": "use username and password",
    "prefer_module_identity_cache": "edgekeeper always uses its identity cache; remove this key",
    "local_gateway_hostname": "set hostname instead",
}
