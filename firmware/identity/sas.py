"""Shared access signature (SAS) tokens for DPS and IoT Hub, and group-enrollment device keys.

Pure: audiences, the bytes to sign and the token text; the signature itself is made by whoever
holds the key (the key service, or the TPM after a DPS challenge).

A token is `SharedAccessSignature sr={audience}&sig={signature}&se={expiry}[&skn={key name}]`
where the audience is the resource URI, lower case, URL-encoded, with its percent escapes in
lower case too (docs: azure-docs iot-dps/concepts-symmetric-key-attestation.md and
iot-hub/authenticate-authorize-sas.md, "lower case URL-encoding of the lower case resource
URI", example `myhub.azure-devices.net%2fdevices%2fdevice1`), and the signature is
HMAC-SHA256 over `{audience}\\n{expiry}` (the audience exactly as it stands in `sr=`).

On '/' the documentation and the Azure IoT C SDK encode it (`%2f`); Azure's identity service
(aziot-identityd) leaves it as is. We follow the documented form: it is what the services
specify, a device SDK in wide use sends it, and both ends sign the same `sr` text either way.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

#: How long a token we make stays valid, in seconds. Each cloud call gets a fresh token; an hour
#: outlives a call's retries and a DPS registration's polling, and tolerates a device clock up to
#: an hour behind the cloud's. Tokens only ever travel inside TLS.
TOKEN_LIFETIME_S = 3600

#: The key name DPS expects in registration tokens (symmetric key and TPM attestation).
DPS_KEY_NAME = "registration"


def _encoded(resource: str) -> str:
    """`resource` in lower case, URL-encoded (every byte but the unreserved ones), escapes in
    lower case."""
    return quote(resource.lower(), safe="").lower()


def audience_dps(id_scope: str, registration_id: str) -> str:
    """The audience of a DPS registration: `{idScope}/registrations/{registrationId}`."""
    return _encoded(f"{id_scope}/registrations/{registration_id}")


def audience_device(hub: str, device_id: str) -> str:
    """The audience of a device on a hub: `{hub}/devices/{deviceId}`."""
    return _encoded(f"{hub}/devices/{device_id}")


def string_to_sign(audience: str, expiry: int) -> bytes:
    """What the key signs (HMAC-SHA256): the audience, a newline, the expiry in epoch seconds."""
    return f"{audience}\n{expiry}".encode()


def token(audience: str, signature: bytes, expiry: int, key_name: str | None = None) -> str:
    """The token, its pairs in the order sr, sig, se[, skn], the signature in base64 and
    URL-encoded."""
    sig = quote(base64.b64encode(signature).decode("ascii"), safe="")
    text = f"SharedAccessSignature sr={audience}&sig={sig}&se={expiry}"
    if key_name is not None:
        text += f"&skn={quote(key_name, safe='')}"
    return text
