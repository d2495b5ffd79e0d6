"""The restart back-off schedule: 10 s doubling to 5 min, reset after 10 min healthy."""

from firmware.runtime.backoff import BackoffPolicy, RestartRecord


def test_schedule_doubles_up_to_the_cap():
    policy = BackoffPolicy()
    assert [policy.delay(n) for n in range(0, 8)] == [0, 10, 20, 40, 80, 160, 300, 300]


def test_consecutive_crashes_push_the_next_start_out():
    policy = BackoffPolicy()
    record = RestartRecord()
    now = 1000.0
    waits = []
    for _ in range(4):
        record.started(now)
        now += 1
        waits.append(record.stopped(now, policy) - now)
        now = record.not_before
    assert waits == [10, 20, 40, 80]


def test_a_long_healthy_run_resets_the_count():
    policy = BackoffPolicy(reset_after=600)
    record = RestartRecord()
    record.started(0)
    record.stopped(1, policy)
    record.started(11)
    record.stopped(12, policy)
    assert record.failures == 2
    record.started(100)
    assert record.stopped(100 + 600, policy) == 700 + 10
    assert record.failures == 1
