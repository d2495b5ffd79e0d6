"""The supervisor: back-off restarts, giving up on a service that keeps failing, sparing others."""

from __future__ import annotations

import asyncio
import logging

import pytest

from firmware.daemon.service import Service
from firmware.daemon.supervisor import RestartPolicy, Supervisor
from firmware.errors import DeviceError
from tests.peers.waiting import wait_until_async

FAST = RestartPolicy(
    initial_delay=0.02, max_delay=0.08, healthy_after=10.0, max_failures=5, failure_window=10.0
)


class Double:
    """The rest of the service contract for the doubles below: nothing to prepare or describe."""

    name = "double"

    async def prepare(self) -> None:
        pass

    async def run(self) -> None:
        await asyncio.Event().wait()

    def describe(self) -> dict[str, object]:
        return {}


class Crashing(Double):
    """Fails on each of its first `failures` runs, then serves until cancelled."""

    def __init__(self, name: str, failures: int) -> None:
        self.name = name
        self.failures = failures
        self.starts: list[float] = []
        self.serving = asyncio.Event()
        self.cleaned_up = False

    async def run(self) -> None:
        self.starts.append(asyncio.get_running_loop().time())
        if len(self.starts) <= self.failures:
            raise DeviceError(f"{self.name} lost its device", hint="plug it back")
        self.serving.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.cleaned_up = True


class Steady(Double):
    name = "steady"

    def __init__(self) -> None:
        self.running = asyncio.Event()

    async def run(self) -> None:
        self.running.set()
        await asyncio.Event().wait()


async def test_crash_restarts_with_doubling_backoff(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor(FAST)
    service = Crashing("flaky", failures=3)
    with caplog.at_level(logging.INFO):
        supervisor.start(service)
        await asyncio.wait_for(service.serving.wait(), 2)
    gaps = [b - a for a, b in zip(service.starts, service.starts[1:], strict=False)]
    assert len(gaps) == 3
    assert gaps[0] >= 0.02 and gaps[1] >= 0.04 and gaps[2] >= 0.08
    assert gaps[2] < 0.08 * 3, "delay should be capped at max_delay"
    (state,) = supervisor.snapshot()
    assert (state.name, state.state, state.restarts) == ("flaky", "running", 3)
    assert state.last_error == "flaky lost its device (plug it back)"
    assert not supervisor.degraded
    failures = [r for r in caplog.records if r.getMessage() == "service failed"]
    assert len(failures) == 3
    assert all(r.exc_info and r.exc_info[0] is DeviceError for r in failures)
    assert await supervisor.stop_all(1.0) == []
    assert service.cleaned_up
    assert supervisor.snapshot()[0].state == "stopped"


async def test_keeps_failing_marks_degraded_and_others_go_on() -> None:
    supervisor = Supervisor(FAST)
    broken = Crashing("broken", failures=1000)
    steady = Steady()
    supervisor.start(steady)
    supervisor.start(broken)
    await asyncio.wait_for(steady.running.wait(), 1)
    await wait_until_async(
        lambda: supervisor.degraded, timeout_s=2, what="the broken service to be given up"
    )
    states = {s.name: s for s in supervisor.snapshot()}
    assert states["broken"].state == "failed"
    assert len(broken.starts) == FAST.max_failures
    assert states["steady"].state == "running"
    # A restart would come within max_delay; twice that and none came: it stays stopped.
    await asyncio.sleep(2 * FAST.max_delay)
    assert len(broken.starts) == FAST.max_failures, "a failed service must stay stopped"
    assert await supervisor.stop_all(1.0) == []


async def test_healthy_run_resets_the_delay() -> None:
    policy = RestartPolicy(
        initial_delay=0.02, max_delay=1.0, healthy_after=0.05, max_failures=99, failure_window=9
    )

    class SlowThenCrash(Double):
        name = "slow"

        def __init__(self) -> None:
            self.starts: list[float] = []
            self.done = asyncio.Event()

        async def run(self) -> None:
            self.starts.append(asyncio.get_running_loop().time())
            if len(self.starts) == 5:
                self.done.set()
                await asyncio.Event().wait()
            if len(self.starts) >= 3:
                await asyncio.sleep(0.06)
            raise RuntimeError("boom")

    supervisor = Supervisor(policy)
    service = SlowThenCrash()
    supervisor.start(service)
    await asyncio.wait_for(service.done.wait(), 3)
    gap_after_healthy = service.starts[4] - service.starts[3]
    assert gap_after_healthy < 0.06 + 0.04, "delay should be back at initial after a healthy run"
    await supervisor.stop_all(1.0)


async def test_stop_overrun_is_reported() -> None:
    class Stubborn(Double):
        name = "stubborn"

        def __init__(self) -> None:
            self.running = asyncio.Event()
            self.finished = False

        async def run(self) -> None:
            self.running.set()
            try:
                await asyncio.Event().wait()
            finally:
                await asyncio.shield(asyncio.sleep(0.3))
                self.finished = True

    supervisor = Supervisor(FAST)
    service = Stubborn()
    supervisor.start(service)
    await asyncio.wait_for(service.running.wait(), 1)
    assert await supervisor.stop_all(0.05) == ["stubborn"]
    assert supervisor.snapshot()[0].state == "stopping"
    await wait_until_async(
        lambda: service.finished, timeout_s=2, what="the stubborn service to finish cleaning up"
    )


async def test_prepare_failure_on_restart_counts_as_failure() -> None:
    class NoDevice(Double):
        name = "nodev"
        prepares = 0

        async def prepare(self) -> None:
            self.prepares += 1
            raise DeviceError("console device /dev/ttyX missing")

        async def run(self) -> None:
            raise AssertionError("run must not start without prepare")

    supervisor = Supervisor(FAST)
    service = NoDevice()
    supervisor.start(service)
    await wait_until_async(
        lambda: supervisor.degraded, timeout_s=2, what="the device-less service to be given up"
    )
    assert service.prepares == FAST.max_failures
    assert supervisor.snapshot()[0].last_error == "console device /dev/ttyX missing"


async def test_an_added_service_shows_at_once_and_prepared_skips_its_first_prepare() -> None:
    class Counted(Double):
        name = "counted"

        def __init__(self) -> None:
            self.prepares = 0
            self.running = asyncio.Event()

        async def prepare(self) -> None:
            self.prepares += 1

        async def run(self) -> None:
            self.running.set()
            await asyncio.Event().wait()

    supervisor = Supervisor(FAST)
    counted = Counted()
    service: Service = counted  # the doubles fulfil the service contract
    supervisor.add(service)
    assert [(s.name, s.state) for s in supervisor.snapshot()] == [("counted", "starting")]
    assert supervisor.service("counted") is counted
    await service.prepare()
    supervisor.start(service, prepared=True)
    await asyncio.wait_for(counted.running.wait(), 1)
    assert counted.prepares == 1
    assert supervisor.snapshot()[0].state == "running"
    with pytest.raises(RuntimeError, match="already supervised and running"):
        supervisor.add(Counted())
    assert await supervisor.stop_all(1.0) == []
    supervisor.forget("counted")
    assert supervisor.snapshot() == [] and supervisor.service("counted") is None
