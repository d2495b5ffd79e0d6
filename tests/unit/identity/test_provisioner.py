"""`DeviceProvisioner` (cache first, AlwaysOnStartup's fallback, reprovisions spaced, the state
`status` shows), `ProvisioningBackoff` (bounds, jitter, Retry-After) and `DeviceIdentityCache`
(another settings digest finds nothing), against a scripted source and a real state store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from firmware.errors import EdgekeeperError
from firmware.identity.device import STATE_NAME, DeviceIdentity, DeviceIdentityCache
from firmware.identity.errors import (
    CloudAnswerMalformed,
    CloudUnauthorized,
    CloudUnreachable,
    ProvisioningRejected,
)
from firmware.identity.provisioning import DeviceProvisioner, Mode, ProvisioningBackoff
from firmware.store.state import StateStore

DIGEST = "a" * 64
HUB_A, HUB_B = "hub-a.azure-devices.net", "hub-b.azure-devices.net"


def identity(hub: str = HUB_A, device: str = "gw-1") -> DeviceIdentity:
    return DeviceIdentity("dps", hub, device, 1_700_000_000.0, "initialAssignment")


class ScriptedSource:
    """A provisioning source answering from a script: an identity, or an error to raise."""

    kind = "dps"

    def __init__(self, *answers: DeviceIdentity | EdgekeeperError, trusted: bool = True) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.trusted = trusted

    async def cache_trusted(self) -> bool:
        return self.trusted

    async def obtain(self) -> DeviceIdentity:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, EdgekeeperError):
            raise answer
        return answer


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def run_blocking(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


@pytest.fixture
def cache(tmp_path: Path) -> DeviceIdentityCache:
    store = StateStore(tmp_path / "state")
    store.ensure()
    return DeviceIdentityCache(store)


def provisioner(
    source: ScriptedSource,
    cache: DeviceIdentityCache,
    mode: Mode = "Dynamic",
    clock: Clock | None = None,
    digest: str = DIGEST,
) -> DeviceProvisioner:
    return DeviceProvisioner(
        source,
        cache,
        digest,
        run_blocking,
        mode=mode,
        reprovision_interval_s=300.0,
        retry_first_s=5.0,
        clock=clock or Clock(),
    )


# the cache at start


@pytest.mark.parametrize("mode", ["Dynamic", "OnErrorOnly"])
async def test_a_cache_hit_asks_the_source_nothing(cache, mode) -> None:
    cache.save(identity(), DIGEST)
    source = ScriptedSource()
    device = provisioner(source, cache, mode)
    assert await device.start() == identity()
    assert source.calls == 0
    assert (device.state.state, device.state.hub, device.state.device_id) == (
        "from cache",
        HUB_A,
        "gw-1",
    )


async def test_a_cache_the_source_distrusts_is_checked_with_dps_first(cache) -> None:
    cache.save(identity(HUB_A), DIGEST)
    source = ScriptedSource(identity(HUB_B), trusted=False)  # an attestation was cut short
    device = provisioner(source, cache)
    assert await device.start() == identity(HUB_B)
    assert source.calls == 1 and cache.load(DIGEST) == identity(HUB_B)


async def test_a_distrusted_cache_is_still_used_when_dps_cannot_be_reached(cache) -> None:
    cache.save(identity(HUB_A), DIGEST)
    source = ScriptedSource(CloudUnreachable("dps down"), trusted=False)
    assert await provisioner(source, cache).start() == identity(HUB_A)


async def test_without_a_cache_the_source_is_asked_and_the_answer_cached(cache) -> None:
    source = ScriptedSource(identity(HUB_B))
    device = provisioner(source, cache)
    assert await device.start() == identity(HUB_B)
    assert source.calls == 1
    assert device.state.state == "provisioned"
    assert cache.load(DIGEST) == identity(HUB_B)


async def test_a_cache_of_other_settings_is_not_used(cache) -> None:
    cache.save(identity(HUB_A), "b" * 64)
    source = ScriptedSource(identity(HUB_B))
    assert await provisioner(source, cache).start() == identity(HUB_B)
    assert source.calls == 1


async def test_no_cache_and_no_cloud_raises_and_caches_nothing(cache) -> None:
    source = ScriptedSource(CloudUnreachable("dps.example unreachable"))
    device = provisioner(source, cache)
    with pytest.raises(CloudUnreachable):
        await device.start()
    assert device.identity is None
    assert cache.any() is None


async def test_always_on_startup_asks_even_with_a_cache(cache) -> None:
    cache.save(identity(HUB_A), DIGEST)
    source = ScriptedSource(identity(HUB_B))
    device = provisioner(source, cache, "AlwaysOnStartup")
    assert await device.start() == identity(HUB_B)
    assert source.calls == 1
    assert device.state.state == "provisioned"
    assert cache.load(DIGEST) == identity(HUB_B)


@pytest.mark.parametrize(
    "failure",
    [CloudUnreachable("DPS unreachable"), CloudAnswerMalformed("DPS's answer is not JSON")],
    ids=["unreachable", "malformed"],
)
async def test_always_on_startup_falls_back_to_the_cache_when_dps_cannot_answer(
    cache, failure
) -> None:
    cache.save(identity(HUB_A), DIGEST)
    source = ScriptedSource(failure)
    device = provisioner(source, cache, "AlwaysOnStartup")
    assert await device.start() == identity(HUB_A)
    assert source.calls == 1
    assert device.state.state == "from cache"
    assert device.state.last_result == failure.render()
    assert cache.load(DIGEST) == identity(HUB_A)


@pytest.mark.parametrize(
    "failure",
    [
        CloudUnauthorized("DPS refused registration 'gw-1' with 401"),
        ProvisioningRejected("DPS did not assign registration 'gw-1': status disabled"),
    ],
    ids=["unauthorized", "rejected"],
)
async def test_always_on_startup_does_not_fall_back_when_dps_refuses(cache, failure) -> None:
    cache.save(identity(HUB_A), DIGEST)
    device = provisioner(ScriptedSource(failure), cache, "AlwaysOnStartup")
    with pytest.raises(type(failure)):
        await device.start()
    assert device.identity is None
    assert cache.load(DIGEST) == identity(HUB_A)  # kept for a later start


# reprovisioning


async def test_reprovision_reports_a_move_and_caches_it(cache) -> None:
    source = ScriptedSource(identity(HUB_A), identity(HUB_A), identity(HUB_B))
    clock = Clock()
    device = provisioner(source, cache, clock=clock)
    await device.start()
    assert await device.reprovision("asked") == (identity(HUB_A), False)
    clock.now += 300
    assert await device.reprovision("asked") == (identity(HUB_B), True)
    assert device.state.reprovisions == 2
    assert cache.load(DIGEST) == identity(HUB_B)


async def test_reprovisions_are_spaced_five_minutes_after_a_success(cache) -> None:
    source = ScriptedSource(identity(), identity(), identity())
    clock = Clock()
    device = provisioner(source, cache, clock=clock)
    await device.start()
    await device.reprovision("first")
    clock.now += 299
    with pytest.raises(CloudUnreachable) as refused:
        await device.reprovision("too soon")
    assert source.calls == 2  # the cloud was not asked
    assert refused.value.retry_after_s == pytest.approx(1)
    assert "not provisioning again" in refused.value.message
    assert "enrollment" in (refused.value.hint or "")
    clock.now += 1
    await device.reprovision("in time")
    assert source.calls == 3


async def test_failed_reprovisions_back_off_and_keep_the_identity(cache) -> None:
    failure = CloudUnauthorized("DPS refused registration 'gw-1' with 401")
    source = ScriptedSource(identity(), failure, failure, failure, identity(HUB_B))
    clock = Clock()
    device = provisioner(source, cache, clock=clock)
    await device.start()
    spacings = []
    for _ in range(3):
        with pytest.raises(CloudUnauthorized):
            await device.reprovision("refused")
        assert device.identity == identity()
        assert cache.load(DIGEST) == identity()
        start = clock.now
        with pytest.raises(CloudUnreachable) as spaced:
            await device.reprovision("again")
        assert spaced.value.retry_after_s is not None
        spacings.append(spaced.value.retry_after_s)
        clock.now = start + spaced.value.retry_after_s
    assert spacings == [5.0, 10.0, 20.0]
    assert source.calls == 4
    assert await device.reprovision("finally") == (identity(HUB_B), True)


async def test_the_back_off_after_failures_never_exceeds_the_interval(cache) -> None:
    failures = [CloudUnreachable("DPS unreachable") for _ in range(10)]
    clock = Clock()
    device = provisioner(ScriptedSource(identity(), *failures), cache, clock=clock)
    await device.start()
    for _ in range(10):
        with pytest.raises(CloudUnreachable, match="unreachable"):
            await device.reprovision("failing")
        with pytest.raises(CloudUnreachable) as spaced:
            await device.reprovision("again")
        assert spaced.value.retry_after_s is not None
        assert spaced.value.retry_after_s <= 300.0
        clock.now += spaced.value.retry_after_s
    assert spaced.value.retry_after_s == 300.0


# what status shows


async def test_failed_before_any_identity_says_waiting(cache) -> None:
    clock = Clock()
    device = provisioner(ScriptedSource(), cache, clock=clock)
    error = CloudUnauthorized("DPS refused registration 'gw-1'", hint="check the key")
    device.failed(error, clock.now + 7)
    document = device.state.document()
    assert document["state"] == "waiting for provisioning"
    assert document["lastResult"] == error.render()
    assert (document["lastAt"], document["nextRetryAt"]) == (clock.now, clock.now + 7)
    assert document["hub"] is None


async def test_failed_with_an_identity_keeps_its_state_and_place(cache) -> None:
    cache.save(identity(), DIGEST)
    device = provisioner(ScriptedSource(), cache)
    await device.start()
    device.failed(CloudUnreachable("DPS unreachable"), None)
    assert (device.state.state, device.state.hub, device.state.device_id) == (
        "from cache",
        HUB_A,
        "gw-1",
    )
    assert device.state.last_result == "DPS unreachable"


# ProvisioningBackoff


def test_backoff_doubles_within_its_bounds_with_jitter_in_the_upper_half() -> None:
    low = ProvisioningBackoff(first_s=5, most_s=60, rng=lambda: 0.0)
    high = ProvisioningBackoff(first_s=5, most_s=60, rng=lambda: 0.999999)
    lows = [low.next_delay() for _ in range(6)]
    highs = [high.next_delay() for _ in range(6)]
    assert lows == [2.5, 5.0, 10.0, 20.0, 30.0, 30.0]
    assert highs == pytest.approx([5.0, 10.0, 20.0, 40.0, 60.0, 60.0], rel=1e-5)


def test_backoff_honours_a_longer_retry_after_but_not_beyond_its_ceiling() -> None:
    backoff = ProvisioningBackoff(first_s=5, most_s=60, rng=lambda: 0.0)
    assert backoff.next_delay(retry_after_s=45) == 45
    assert backoff.next_delay(retry_after_s=1) == 5.0  # the back-off is longer
    assert backoff.next_delay(retry_after_s=600) == 60


def test_backoff_reset_starts_again() -> None:
    backoff = ProvisioningBackoff(first_s=5, most_s=60, rng=lambda: 0.5)
    for _ in range(4):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 3.75


# DeviceIdentityCache


def test_cache_finds_only_the_settings_it_was_saved_with(cache) -> None:
    cache.save(identity(), DIGEST)
    assert cache.load(DIGEST) == identity()
    assert cache.load("b" * 64) is None
    assert cache.any() == identity()


def test_cache_ignores_an_entry_it_cannot_read(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    store.ensure()
    store.put(STATE_NAME, {"identity": {"hub": HUB_A}, "settings": DIGEST})
    cache = DeviceIdentityCache(store)
    assert cache.load(DIGEST) is None
    assert cache.any() is None
