"""SIGKILL at random moments while the gateway provisions, against `edgekeeper run`, the DPS and
hub peers and swtpm: the next start recovers with one whole identity, old or new.

- During DPS TPM attestation (first ones, each on an empty TPM, and second ones asked for with
  `POST /device/reprovision`): the restarted gateway comes online, the key the TPM signs with
  is the key the hub holds for the device, a module's token verifies on the hub, and only the
  two auth key slots (besides the EK, the RSA SRK and the storage key) hold persistent objects.
- During module identity creation and deletion on a slowed hub: once the restarted gateway is
  online and every accepted module runs, the hub's module identities are exactly the daemon's,
  each keyed, and every module's token verifies.

Each kill happens after a random number of DPS answers (or module requests) plus a random delay,
drawn from `random.Random(seed)`; the seed is in every failure message (set KILL_SEED to replay).
The loops stop early when their time budget is spent, after a minimum of runs.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from firmware.errors import EdgekeeperError
from firmware.identity.model import AGENT_IDENTITY, HUB_IDENTITY
from firmware.keys.tpm import TpmBackend
from firmware.tpm.endorsement import EK_HANDLE, SRK_HANDLE
from firmware.tpm.srk import STORAGE_HANDLE
from tests.integration.identity.test_attestation_daemon import tpm_toml
from tests.integration.identity.test_provisioning_daemon import (
    REGISTRATION,
    module_token,
    online,
    online_gateway,
    trust,
)
from tests.integration.tpm.tpm_inspect import persistent_handles
from tests.peers.cloud import CloudPeers
from tests.peers.gateway import Gateway
from tests.peers.sim import Swtpm
from tests.peers.waiting import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.swtpm]

AUTH_KEY_INDEX = 0x100
AUTH_SLOTS = {0x81000000 + AUTH_KEY_INDEX, 0x81000000 + AUTH_KEY_INDEX + 1}
ALLOWED_PERSISTENT = {EK_HANDLE, SRK_HANDLE, STORAGE_HANDLE} | AUTH_SLOTS
PROBE = b"which key does the TPM sign with"
#: DPS answers 202 "assigning" this long after a register: the window a kill can hit.
ASSIGNING_DELAY_S = 0.5
#: A TPM attestation is three DPS answers: the challenge, "assigning", "assigned".
ATTESTATION_ANSWERS = 3
KILL_DELAY_S = 0.4
#: After DPS's last answer only a TPM commit and a cache write are left: kills come sooner.
LAST_ANSWER_DELAY_S = 0.04
FIRST_RUNS, FIRST_BUDGET_S = 6, 40.0
SECOND_RUNS, SECOND_BUDGET_S = 10, 45.0
MODULE_RUNS, MODULE_BUDGET_S = 20, 40.0
MIN_RUNS = 3
MODULES_PER_RUN = 3
HUB_STALL_S = 0.1
MODULE_KILL_WINDOW_S = 1.5
LOG_LINES = 40


def seed() -> int:
    given = os.environ.get("KILL_SEED")
    return int(given) if given else random.SystemRandom().randrange(2**32)


@contextlib.contextmanager
def run_named(where: str, gateway: Callable[[], Gateway | None]) -> Iterator[None]:
    """Failures inside name the run (seed, run number, kill moment) and end with the tail of
    the gateway's log."""
    try:
        yield
    except (AssertionError, EdgekeeperError) as failure:
        gw = gateway()
        tail = "\n".join(gw.log.splitlines()[-LOG_LINES:]) if gw is not None else ""
        raise AssertionError(f"{where}: {failure}\n--- daemon log ---\n{tail}") from failure


def runs(count: int, budget_s: float) -> Iterator[int]:
    """Run numbers until `count` or until the budget is spent (never fewer than MIN_RUNS)."""
    started = time.monotonic()
    for run in range(count):
        if run >= MIN_RUNS and time.monotonic() - started > budget_s:
            return
        yield run


def kill_delay(rng: random.Random, answers: int) -> float:
    """How long after DPS answer `answers` the kill comes."""
    return rng.uniform(0, LAST_ANSWER_DELAY_S if answers == ATTESTATION_ANSWERS else KILL_DELAY_S)


def kill(gw: Gateway) -> None:
    assert gw.process is not None
    gw.process.kill()
    gw.process.wait()


def after_answers(cloud: CloudPeers, baseline: int, answers: int, delay_s: float) -> None:
    """Return once DPS has given `answers` answers since `baseline`, plus `delay_s`."""
    if answers:
        wait_until(
            lambda: len(cloud.dps.requests) >= baseline + answers,
            timeout_s=30,
            what=f"DPS answer {answers} of the attestation",
            interval_s=0.005,
        )
    time.sleep(delay_s)  # the random moment of the kill


class Background:
    """A call on its own thread whose failure (the daemon killed under it) is kept, not raised."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.failure: BaseException | None = None
        self._call = call
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._call()
        except Exception as failure:
            self.failure = failure

    def join(self) -> None:
        self._thread.join(timeout=60)


# TPM attestation


def restart(gw: Gateway, *services: str) -> None:
    """Start the killed gateway again and wait until its management API answers (the killed
    daemon's socket file is still there) and `services` say they are ready."""
    gw.start()

    def ready() -> bool:
        try:
            listed = gw.request("GET", "/daemon/status").json()["services"]
        except EdgekeeperError:
            return False
        up = {s["name"] for s in listed if s.get("detail", {}).get("ready")}
        return up >= set(services)

    wait_until(ready, timeout_s=30, what=f"the restarted daemon's {services} ready")


def device_online(gw: Gateway, cloud: CloudPeers, device: str) -> None:
    """`online` for any device id: its agent identity keyed on the hub and its container up."""
    hub = cloud.hubs[0]

    def keyed() -> bool:
        module = hub.modules(device).get(AGENT_IDENTITY) if device in hub.devices else None
        return module is not None and module.primary_key is not None

    wait_until(keyed, timeout_s=60, what=f"agent identity of {device} on the hub")
    gw.container_of(gw.agent)


def tpm_signs_with_the_hub_key(gw: Gateway, cloud: CloudPeers, tcti: str, device: str) -> str:
    """Stop the gateway, then check the TPM against the hub; the hub's device key."""
    hub = cloud.hubs[0]
    token = module_token(gw, gw.agent, hub.host, device)
    assert hub.verify_module_token(device, AGENT_IDENTITY, token), "the agent's token is refused"
    gw.stop()
    backend = TpmBackend(tcti, gw.data_dir / "tpm-keys")
    try:
        tpm_mac = backend.attestation(AUTH_KEY_INDEX).hmac(PROBE)
        handles = set(persistent_handles(backend._tpm))
    finally:
        backend.close()
    hub_key = hub.devices[device].credential.symmetric_key
    assert hub_key is not None
    expected = hmac.new(base64.b64decode(hub_key), PROBE, hashlib.sha256).digest()
    assert tpm_mac == expected, "the TPM signs with another key than the hub holds"
    extra = sorted(f"0x{h:08x}" for h in handles - ALLOWED_PERSISTENT)
    assert not extra, f"persistent objects beyond the two auth key slots: {extra}"
    return hub_key


def test_a_first_tpm_attestation_killed_anywhere_recovers(
    gateway, cloud_peers: CloudPeers, tmp_path: Path
) -> None:
    chosen = seed()
    rng = random.Random(chosen)
    cloud_peers.dps.assigning_delay_s = ASSIGNING_DELAY_S
    made: list[Gateway] = []
    for run in runs(FIRST_RUNS, FIRST_BUDGET_S):
        answers = rng.randint(0, ATTESTATION_ANSWERS)
        delay = kill_delay(rng, answers)
        where = f"seed {chosen} run {run} (killed {delay:.3f} s after DPS answer {answers})"
        device = f"gw-first-{run}"
        tpm = Swtpm(tmp_path / f"tpm-{run}")
        tpm.start()
        try:
            with run_named(where, lambda: made[-1] if made else None):
                cloud_peers.dps.enroll_tpm(device, None)
                gw = gateway(
                    tpm_toml(cloud_peers, tpm.tcti, device),
                    top_toml=trust(cloud_peers),
                    start=False,
                )
                made.append(gw)
                baseline = len(cloud_peers.dps.requests)
                gw.start()
                after_answers(cloud_peers, baseline, answers, delay)
                kill(gw)
                restart(gw, "identity", "workload")
                device_online(gw, cloud_peers, device)
                tpm_signs_with_the_hub_key(gw, cloud_peers, tpm.tcti, device)
        finally:
            tpm.stop()


def test_a_second_tpm_attestation_killed_anywhere_keeps_one_identity(
    gateway, cloud_peers: CloudPeers, fresh_swtpm
) -> None:
    chosen = seed()
    rng = random.Random(chosen)
    cloud_peers.dps.assigning_delay_s = ASSIGNING_DELAY_S
    cloud_peers.dps.enroll_tpm(REGISTRATION, None)
    gw = gateway(tpm_toml(cloud_peers, fresh_swtpm.tcti), top_toml=trust(cloud_peers))
    online(gw, cloud_peers)
    key = tpm_signs_with_the_hub_key(gw, cloud_peers, fresh_swtpm.tcti, REGISTRATION)
    outcomes = {"kept": 0, "replaced": 0}
    for run in runs(SECOND_RUNS, SECOND_BUDGET_S):
        answers = rng.randint(1, ATTESTATION_ANSWERS)
        delay = kill_delay(rng, answers)
        where = (
            f"seed {chosen} run {run} (reprovision killed {delay:.3f} s after DPS answer "
            f"{answers}; so far {outcomes})"
        )
        with run_named(where, lambda: gw):
            restart(gw, "identity")
            baseline = len(cloud_peers.dps.requests)
            asked = Background(lambda: gw.request("POST", "/device/reprovision"))
            after_answers(cloud_peers, baseline, answers, delay)
            kill(gw)
            asked.join()
            restart(gw, "identity", "workload")
            online(gw, cloud_peers)
            now = tpm_signs_with_the_hub_key(gw, cloud_peers, fresh_swtpm.tcti, REGISTRATION)
        outcomes["kept" if now == key else "replaced"] += 1
        key = now


# module identities


def module_ids(gw: Gateway) -> set[str]:
    return {entry["moduleId"] for entry in gw.request("GET", "/identities").json()["identities"]}


def hub_matches_daemon(gw: Gateway, cloud: CloudPeers, device: str, wanted: set[str]) -> None:
    """Wait until the hub's module identities of `device`, all keyed, and the daemon's are
    `wanted`."""
    hub = cloud.hubs[0]
    expected = [sorted(wanted), sorted(wanted), []]
    seen: list[object] = []

    def settled() -> bool:
        on_hub = {m: module for m, module in hub.modules(device).items() if m != HUB_IDENTITY}
        unkeyed = sorted(m for m, module in on_hub.items() if not module.primary_key)
        seen[:] = [sorted(on_hub), sorted(module_ids(gw)), unkeyed]
        return seen == expected

    try:
        wait_until(settled, timeout_s=30, what="hub ids == daemon ids, all keyed")
    except AssertionError:
        raise AssertionError(f"[hub, daemon, unkeyed] {seen} instead of {expected}") from None


def test_module_identity_changes_killed_anywhere_leave_no_orphan(
    gateway, cloud_peers: CloudPeers, client_image
) -> None:
    chosen = seed()
    rng = random.Random(chosen)
    gw, device = online_gateway(gateway, cloud_peers)
    hub = cloud_peers.hubs[0]
    previous: list[str] = []
    for run in runs(MODULE_RUNS, MODULE_BUDGET_S):
        delay = rng.uniform(0, MODULE_KILL_WINDOW_S)
        names = [f"mod{run}n{index}" for index in range(MODULES_PER_RUN)]
        where = f"seed {chosen} run {run} (killed {delay:.3f} s after deploying {names})"
        with run_named(where, lambda: gw):
            hub.stall(HUB_STALL_S)
            for name in previous:
                gw.request("DELETE", f"/modules/{name}")
            for name in names:
                gw.deploy(name, client_image)
            time.sleep(delay)  # the random moment of the kill
            kill(gw)
            hub.stall(0)
            time.sleep(HUB_STALL_S)  # a stalled answer to the killed daemon is given meanwhile
            restart(gw, "identity", "workload")
            online(gw, cloud_peers)
            for name in names:
                gw.container_of(name)

            hub_matches_daemon(gw, cloud_peers, device, {AGENT_IDENTITY, *names})
            for name in names:
                token = module_token(gw, name, hub.host, device)
                assert hub.verify_module_token(device, name, token), f"{name}'s token is refused"
        previous = names
