"""Errors of the certificate service."""

from __future__ import annotations

from firmware.errors import BadRequest, ConfigError, EdgekeeperError, Forbidden, NotFound


class CertificateNotFound(NotFound):
    """No managed certificate by that name."""


class InvalidCertificateRequest(BadRequest):
    """A certificate request with a bad common name, SAN or lifetime (the message names it)."""


class ServerNameRefused(Forbidden):
    """A module asked for a server certificate for a name that is not its own."""


class EdgeCaConfigError(ConfigError):
    """The operator-provided Edge CA certificate or key cannot be used."""


class CertificateIssueFailed(EdgekeeperError):
    """Issuing or renewing a certificate failed (the signer refused, the result did not verify)."""

    http_status = 502
