"""DPS registration as a sans-IO state machine: it makes the requests, you send them, you feed
it the answers and it says what comes next.

    registration = DpsRegistration(id_scope, registration_id)
    request = registration.register(authorization)      # PUT .../register
    event = registration.receive(status, headers, body)  # Poll, Challenge, Assigned, SendRegister

- `Poll(after_s, operation_id)`: wait `after_s` (the server's Retry-After, else 5 s like
  Azure's identity service, kept within [1, 30] s), then send `poll(operation_id, fresh
  authorization)`.
- `Challenge(authentication_key)`: TPM attestation only. DPS answered the unauthorized first
  register with 401 and a key blob for keyName "registration"; import it into the TPM, then
  `register` again with a token the imported key signs.
- `Assigned(...)`: done. A TPM registration may carry the authentication key once more
  (Azure's identity service imports it again).
- `SendRegister(reason)`: DPS no longer knows the operation being polled (404); register again.

Failures are raised where the answer is read, as the identity errors: `CloudUnauthorized` (401,
403 that is not a challenge), `ProvisioningRejected` (status failed, disabled, unassigned,
blacklisted; other 4xx), `CloudUnreachable` (408, 429, 5xx, with Retry-After advice within
[1, 300] s), `CloudAnswerMalformed` (anything that is not the protocol). Nothing else escapes
`receive`, whatever it is fed. Protocol facts: the DPS device REST reference on Learn
(api-version 2021-06-01), Azure/iot-identity-service (aziot-cloud-client-async/src/dps/) and
Azure/azure-iot-sdk-c (provisioning_client/).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

from firmware.identity import rest, sas
from firmware.identity.errors import CloudUnauthorized, ProvisioningRejected
from firmware.identity.rest import CloudRequest as CloudRequest

API_VERSION = "2021-06-01"
#: Wait before a poll when DPS gives no Retry-After (Azure's identity service waits 5 s).
POLL_DELAY_S = 5.0
#: A poll waits at least and at most this long, whatever DPS advises.
POLL_DELAY_BOUNDS_S = (1.0, 30.0)
REJECTED_STATUSES = ("failed", "disabled", "unassigned", "blacklisted")
# A host name or address, with an optional port (test peers stand for a hub at 127.0.0.1:PORT).
_HUB = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::[0-9]{1,5})?")
_OPERATION_ID_CHARS = 256


@dataclass(frozen=True)
class SendRegister:
    """Register again (the operation being polled is gone); `reason` says why."""

    reason: str


@dataclass(frozen=True)
class Poll:
    """Ask about the operation after `after_s` seconds: a `poll` of `operation_id` with a fresh
    authorization."""

    after_s: float
    operation_id: str


@dataclass(frozen=True)
class Challenge:
    """TPM attestation: import this blob into the TPM, then register with a token it signs."""

    authentication_key: bytes = field(repr=False)


@dataclass(frozen=True)
class Assigned:
    """DPS assigned the device to `hub` as `device_id`."""

    hub: str
    device_id: str
    substatus: str | None
    payload: object | None
    authentication_key: bytes | None = field(repr=False)


DpsEvent = SendRegister | Poll | Challenge | Assigned


class DpsRegistration:
    """One device's registration with DPS under `id_scope`.

    `tpm` is `(endorsement key, storage root key)`, each a marshalled TPM2B_PUBLIC, for TPM
    attestation; `payload` any JSON value sent along for custom allocation.
    """

    def __init__(
        self,
        id_scope: str,
        registration_id: str,
        *,
        tpm: tuple[bytes, bytes] | None = None,
        payload: object | None = None,
        api_version: str = API_VERSION,
    ) -> None:
        self.id_scope = id_scope
        self.registration_id = registration_id
        self.tpm = tpm
        self.payload = payload
        self.api_version = api_version
        self._base = f"/{quote(id_scope, safe='')}/registrations/{quote(registration_id, safe='')}"
        self._sent: Literal["register", "poll"] | None = None
        self._authorization: str | None = None

    @property
    def audience(self) -> str:
        """What a registration token is for (`sas.audience_dps`)."""
        return sas.audience_dps(self.id_scope, self.registration_id)

    def register(self, authorization: str | None) -> CloudRequest:
        """The register request (PUT), with `authorization` when given."""
        document: dict[str, object] = {"registrationId": self.registration_id}
        if self.tpm is not None:
            endorsement, storage_root = self.tpm
            document["tpm"] = {
                "endorsementKey": base64.b64encode(endorsement).decode("ascii"),
                "storageRootKey": base64.b64encode(storage_root).decode("ascii"),
            }
        if self.payload is not None:
            document["payload"] = self.payload
        self._sent, self._authorization = "register", authorization
        target = f"{self._base}/register?api-version={quote(self.api_version, safe='')}"
        return rest.json_request("PUT", target, document, authorization)

    def poll(self, operation_id: str, authorization: str | None) -> CloudRequest:
        """The operation status request (GET) for `operation_id`."""
        self._sent, self._authorization = "poll", authorization
        target = (
            f"{self._base}/operations/{quote(operation_id, safe='')}"
            f"?api-version={quote(self.api_version, safe='')}"
        )
        return rest.json_request("GET", target, None, authorization)

    def receive(self, status: int, headers: Mapping[str, str], body: bytes) -> DpsEvent:
        """What DPS's answer to the last request means; raises the identity errors above."""
        if self._sent is None:
            raise RuntimeError("DpsRegistration.receive before register or poll")
        if status in (200, 202):
            return self._operation(rest.read_document(body, "DPS's answer"), headers)
        if status == 401 and self._challenge_expected():
            challenge = self._challenge(body)
            if challenge is not None:
                return challenge
        if status in (401, 403):
            raise self._unauthorized(status, headers, body)
        if status == 404 and self._sent == "poll":
            return SendRegister(f"DPS answered 404 to a poll of registration {self._name}")
        if rest.is_transient(status):
            raise rest.unreachable("DPS", status, headers, body)
        if 400 <= status <= 499:
            said = rest.server_says(headers, body)
            raise ProvisioningRejected(
                f"DPS refused registration {self._name} in ID scope {self.id_scope!r} with "
                f"{status}" + (f" ({said})" if said else ""),
                hint="check the ID scope, the registration id and the payload against the "
                "enrollment in DPS",
            )
        raise rest.malformed(f"DPS answered an unexpected status {status} to {self._what}")

    @property
    def _name(self) -> str:
        return repr(self.registration_id)

    @property
    def _what(self) -> str:
        return f"the {self._sent} of registration {self._name}"

    def _challenge_expected(self) -> bool:
        return self.tpm is not None and self._sent == "register" and self._authorization is None

    def _challenge(self, body: bytes) -> Challenge | None:
        """The TPM challenge in a 401's body; None when the body holds none (a plain refusal)."""
        document = rest.read_document(body, "DPS's TPM challenge") if body else None
        if not isinstance(document, dict) or "authenticationKey" not in document:
            return None
        if document.get("keyName") != sas.DPS_KEY_NAME:
            raise rest.malformed(
                f"DPS's TPM challenge for registration {self._name} has keyName "
                f"{rest.shown(document.get('keyName'))}, not {sas.DPS_KEY_NAME!r}"
            )
        key = _base64(document["authenticationKey"], "the TPM challenge's authenticationKey")
        return Challenge(key)

    def _unauthorized(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> CloudUnauthorized:
        said = rest.server_says(headers, body)
        how = "with its token" if self._authorization is not None else "without a token"
        return CloudUnauthorized(
            f"DPS refused registration {self._name} in ID scope {self.id_scope!r} ({how}) "
            f"with {status}" + (f" ({said})" if said else ""),
            hint="check that an enabled enrollment matches this registration id, the key or "
            "certificate it uses (a group enrollment's device key is derived from the group "
            "key), the ID scope, and the device clock (tokens look expired when it is wrong)",
        )

    def _operation(self, document: object, headers: Mapping[str, str]) -> DpsEvent:
        if not isinstance(document, dict):
            raise rest.malformed(f"DPS's answer to {self._what} is not a JSON object")
        status = document.get("status")
        state = document.get("registrationState")
        if state is not None and not isinstance(state, dict):
            raise rest.malformed(f"DPS's registrationState for {self._what} is not an object")
        if status == "assigning":
            operation_id = document.get("operationId")
            if not isinstance(operation_id, str) or not operation_id.strip():
                raise rest.malformed(f"DPS's answer to {self._what} has no operationId")
            if len(operation_id) > _OPERATION_ID_CHARS:
                raise rest.malformed(
                    f"DPS's operationId for {self._what} is over {_OPERATION_ID_CHARS} characters"
                )
            self._sent = "poll"
            return Poll(_poll_delay(headers), operation_id)
        if status == "assigned":
            return self._assigned(state or {})
        if status in REJECTED_STATUSES:
            raise self._rejected(str(status), state or {})
        if status is None:
            raise rest.malformed(f"DPS's answer to {self._what} has no status")
        raise rest.malformed(
            f"DPS's answer to {self._what} has an unknown status {rest.shown(status)}"
        )

    def _assigned(self, state: dict[str, object]) -> Assigned:
        hub = state.get("assignedHub")
        if not isinstance(hub, str) or not _HUB.fullmatch(hub):
            problem = "no assignedHub" if hub is None else f"assignedHub {rest.shown(hub)}"
            raise rest.malformed(f"DPS assigned registration {self._name} with {problem}")
        device_id = state.get("deviceId")
        if not isinstance(device_id, str) or not device_id or not device_id.isprintable():
            problem = "no deviceId" if device_id is None else f"deviceId {rest.shown(device_id)}"
            raise rest.malformed(f"DPS assigned registration {self._name} with {problem}")
        substatus = state.get("substatus")
        if substatus is not None and not isinstance(substatus, str):
            raise rest.malformed(f"DPS's substatus for registration {self._name} is not text")
        key = None
        tpm = state.get("tpm")
        if tpm is not None:
            if not isinstance(tpm, dict):
                raise rest.malformed(f"DPS's tpm for registration {self._name} is not an object")
            if tpm.get("authenticationKey") is not None:
                key = _base64(tpm["authenticationKey"], "the assignment's tpm.authenticationKey")
        return Assigned(hub, device_id, substatus, state.get("payload"), key)

    def _rejected(self, status: str, state: dict[str, object]) -> ProvisioningRejected:
        said = "; ".join(
            f"{name} {rest.shown(state[name])}"
            for name in ("errorCode", "errorMessage")
            if state.get(name) is not None
        )
        hint = {
            "disabled": "enable the enrollment (or the device's registration) in DPS",
            "unassigned": "check the enrollment's linked hubs and allocation policy (a custom "
            "allocation webhook may have declined the device)",
        }.get(status, "check the enrollment and its linked hubs in DPS")
        return ProvisioningRejected(
            f"DPS did not assign registration {self._name} in ID scope {self.id_scope!r}: "
            f"status {status}" + (f" ({said})" if said else ""),
            hint=hint,
        )


def _poll_delay(headers: Mapping[str, str]) -> float:
    advice = rest.retry_after_s(headers)
    low, high = POLL_DELAY_BOUNDS_S
    return min(max(POLL_DELAY_S if advice is None else advice, low), high)


def _base64(value: object, what: str) -> bytes:
    if isinstance(value, str) and value:
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            pass
    raise rest.malformed(f"{what} from DPS is not base64")
