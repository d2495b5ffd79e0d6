"""Image GC schedule: run times from the wall clock, durations from the config."""

from __future__ import annotations

import asyncio
import datetime
import time

import pytest

from firmware.config.durations import duration_seconds
from firmware.errors import ConfigError
from firmware.runtime.images import DOCUMENT, ImageCollector, ImageSchedule
from firmware.store.state import StateStore
from tests.peers.fake_engine import FakeEngine
from tests.peers.waiting import wait_until_async

DAY = 86400.0


def local(*parts: int) -> float:
    return datetime.datetime(*parts).astimezone().timestamp()


def test_daily_run_is_the_next_cleanup_time():
    schedule = ImageSchedule(recurrence=DAY, threshold=7 * DAY, hour=3, minute=30)
    assert schedule.next_run(local(2026, 11, 23, 10, 0)) == local(2026, 11, 24, 3, 30)
    assert schedule.next_run(local(2026, 11, 23, 1, 0)) == local(2026, 11, 23, 3, 30)


def test_shorter_recurrence_steps_from_the_cleanup_time():
    schedule = ImageSchedule(recurrence=12 * 3600, threshold=DAY, hour=3)
    assert schedule.next_run(local(2026, 11, 23, 10, 0)) == local(2026, 11, 23, 15, 0)
    assert schedule.next_run(local(2026, 11, 23, 15, 0)) == local(2026, 11, 24, 3, 0)


def test_a_recent_run_pushes_the_next_one_a_whole_recurrence():
    schedule = ImageSchedule(recurrence=2 * DAY, threshold=DAY, hour=0)
    last = local(2026, 11, 23, 0, 0)
    # restarted 30 s after a run: not again tonight, but two days after the last one
    assert schedule.next_run(last + 30, last) == local(2026, 11, 25, 0, 0)


def test_schedule_from_config_section():
    class Section:
        cleanup_recurrence = "12h"
        image_age_cleanup_threshold = "7d"
        cleanup_time = "04:15"

    schedule = ImageSchedule.from_config(Section)
    assert (schedule.recurrence, schedule.threshold) == (12 * 3600, 7 * DAY)
    assert (schedule.hour, schedule.minute) == (4, 15)


def test_durations():
    assert duration_seconds("90s", "x") == 90
    assert duration_seconds("2 w", "x") == 14 * DAY
    with pytest.raises(ConfigError, match=r"\[image_garbage_collection\] cleanup_recurrence"):
        duration_seconds("soon", "[image_garbage_collection] cleanup_recurrence")


def test_the_scheduled_run_happens_on_time_and_is_recorded(tmp_path):
    store = StateStore(tmp_path)
    store.ensure()
    engine = FakeEngine()
    engine.add_image("old:1")
    kept = engine.add_image("kept:1")
    collector = ImageCollector(
        engine,
        store,
        in_use=lambda: {"kept:1"},
        schedule=ImageSchedule(recurrence=1.0, threshold=0.0),
    )

    async def scenario():
        task = asyncio.ensure_future(collector.run())
        try:
            # the first run falls on the next whole second
            await wait_until_async(
                lambda: store.get(DOCUMENT), timeout_s=5, what="the scheduled clean-up"
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    started = time.time()
    asyncio.run(scenario())
    assert [image["RepoTags"] for image in asyncio.run(engine.list_images())] == [["kept:1"]]
    doc = store.get(DOCUMENT)
    assert started <= doc["last_run"] <= time.time()
    assert list(doc["last_used"]) == [kept]
