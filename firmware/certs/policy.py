"""`CertificatePolicy`: what the certificate service issues, for how long, and where it keeps it.

Built from `Config` by `policy_from_config` ([certificates], [edge_ca], `hostname`,
`trust_bundle_cert`, `manifest_trust_bundle_cert`); tests build it directly with lifetimes of
seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, overload
from urllib.parse import unquote, urlparse

from firmware.certs.errors import EdgeCaConfigError
from firmware.certs.server_names import ServerNamePolicy

if TYPE_CHECKING:
    from firmware.config.schema import Config

DAY = 86400.0


@dataclass(frozen=True)
class CertificatePolicy:
    """Lifetimes are in seconds; `renew_at` is the share of a lifetime after which to renew.
    `server_lifetime` and `identity_lifetime` are the defaults of module certificates and the
    longest they may ask for. `hostname`, `hub_module` and `module_names` (module -> extra DNS
    names) make the `server_names` policy: which names a module may claim."""

    directory: Path
    hostname: str = "edgekeeper"
    quickstart_lifetime: float = 90 * DAY
    workload_ca_lifetime: float = 90 * DAY
    server_lifetime: float = 30 * DAY
    identity_lifetime: float = 30 * DAY
    renew_at: float = 0.8
    retry_initial: float = 60.0
    retry_max: float = 3600.0
    edge_ca_cert: Path | None = None
    edge_ca_key: str | None = None
    trust_bundle: Path | None = None
    manifest_trust_bundle: Path | None = None
    hub_module: str = "edgeHub"
    module_names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def server_names(self) -> ServerNamePolicy:
        return ServerNamePolicy(self.hostname, self.hub_module, self.module_names)

    @property
    def quickstart(self) -> bool:
        """True when the service generates its own root and Edge CA."""
        return self.edge_ca_cert is None


def policy_from_config(config: Config) -> CertificatePolicy:
    """The policy the settings of `config` describe (days become seconds, percent a share)."""
    certs, edge_ca = config.certificates, config.edge_ca
    return CertificatePolicy(
        directory=Path(certs.dir),
        hostname=config.hostname,
        quickstart_lifetime=edge_ca.auto_generated_expiry_days * DAY,
        workload_ca_lifetime=certs.workload_ca_expiry_days * DAY,
        server_lifetime=certs.server_cert_expiry_days * DAY,
        identity_lifetime=certs.identity_cert_expiry_days * DAY,
        renew_at=certs.renew_at_percent / 100,
        retry_initial=float(certs.renew_retry_initial_seconds),
        retry_max=float(certs.renew_retry_max_seconds),
        edge_ca_cert=file_uri_path(edge_ca.cert, "[edge_ca] cert"),
        edge_ca_key=edge_ca.pk,
        trust_bundle=file_uri_path(config.trust_bundle_cert, "trust_bundle_cert"),
        manifest_trust_bundle=file_uri_path(
            config.manifest_trust_bundle_cert, "manifest_trust_bundle_cert"
        ),
        hub_module=certs.hub_module,
        module_names=dict(certs.module_names),
    )


@overload
def file_uri_path(uri: str, where: str) -> Path: ...
@overload
def file_uri_path(uri: None, where: str) -> None: ...
@overload
def file_uri_path(uri: str | None, where: str) -> Path | None: ...
def file_uri_path(uri: str | None, where: str) -> Path | None:
    """The path of a `file:///...` URI (a bare absolute path is accepted too)."""
    if uri is None:
        return None
    if uri.startswith("/"):
        return Path(uri)
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost") or not parsed.path:
        raise EdgeCaConfigError(
            f"{where} = {uri!r} is not a file URI",
            hint='use "file:///absolute/path.pem" (a key may also be "key:NAME" or '
            '"pkcs11:object=NAME")',
        )
    return Path(unquote(parsed.path))
