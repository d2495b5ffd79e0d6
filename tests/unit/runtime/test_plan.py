"""Reconcile planning: adopt, recreate, restart with back-off, remove strays and duplicates."""

from firmware.runtime.backoff import BackoffPolicy, RestartRecord
from firmware.runtime.plan import (
    CreateContainer,
    ObservedContainer,
    RemoveContainer,
    RestartContainer,
    StartContainer,
    StopContainer,
    WaitUntil,
    plan,
)
from firmware.runtime.spec import DesiredStatus, ModuleSpec, RestartPolicy

SPEC = ModuleSpec(name="sensor", image="sensor:1")


def seen(cid, state="running", spec=SPEC, **kw):
    return ObservedContainer(cid, spec.name, spec.spec_hash(), state, **kw)


def test_missing_container_is_created_and_started():
    assert plan({"sensor": SPEC}, [], {}, 0) == [CreateContainer(SPEC, start=True)]


def test_matching_running_container_is_adopted_untouched():
    assert plan({"sensor": SPEC}, [seen("a")], {}, 0) == []


def test_spec_change_recreates_once():
    old = seen("a", spec=ModuleSpec(name="sensor", image="sensor:0"))
    assert plan({"sensor": SPEC}, [old], {}, 0) == [
        RemoveContainer("sensor", "a"),
        CreateContainer(SPEC, start=True),
    ]


def test_dead_container_is_replaced():
    assert plan({"sensor": SPEC}, [seen("a", state="dead")], {}, 0) == [
        RemoveContainer("sensor", "a"),
        CreateContainer(SPEC, start=True),
    ]


def test_duplicates_keep_the_running_one():
    actions = plan({"sensor": SPEC}, [seen("b", state="exited"), seen("a")], {}, 0)
    assert actions == [RemoveContainer("sensor", "b")]


def test_stray_module_container_is_removed():
    stray = seen("z", spec=ModuleSpec(name="gone", image="x"))
    assert plan({}, [stray], {}, 0) == [RemoveContainer("gone", "z")]


def test_exited_container_waits_for_backoff_then_starts():
    record = RestartRecord()
    record.started(0)
    record.stopped(5, BackoffPolicy())
    exited = [seen("a", state="exited", exit_code=1)]
    assert plan({"sensor": SPEC}, exited, {"sensor": record}, 6) == [WaitUntil("sensor", 15)]
    assert plan({"sensor": SPEC}, exited, {"sensor": record}, 15) == [StartContainer("sensor", "a")]


def test_restart_policies_decide_on_exit_codes():
    def start_for(policy, code):
        spec = ModuleSpec(name="sensor", image="sensor:1", restart_policy=policy)
        return plan({"sensor": spec}, [seen("a", "exited", spec, exit_code=code)], {}, 0) != []

    assert start_for(RestartPolicy.ALWAYS, 0)
    assert start_for(RestartPolicy.ON_FAILURE, 2)
    assert not start_for(RestartPolicy.ON_FAILURE, 0)
    assert not start_for(RestartPolicy.NEVER, 2)
    assert not start_for(RestartPolicy.ON_UNHEALTHY, 2)


def test_never_started_container_is_started_whatever_the_policy():
    spec = ModuleSpec(name="sensor", image="sensor:1", restart_policy=RestartPolicy.NEVER)
    created = seen("a", "created", spec, ever_started=False)
    assert plan({"sensor": spec}, [created], {}, 0) == [StartContainer("sensor", "a")]


def test_a_start_asked_for_starts_a_stopped_container_whatever_the_policy():
    # edgeAgent stops a module, then starts it: aziot-edged starts the container again
    spec = ModuleSpec(name="sensor", image="sensor:1", restart_policy=RestartPolicy.NEVER)
    stopped = seen("a", "exited", spec, exit_code=0)
    assert plan({"sensor": spec}, [stopped], {}, 0) == []
    assert plan({"sensor": spec}, [stopped], {}, 0, {"sensor"}) == [StartContainer("sensor", "a")]
    assert plan({"sensor": spec}, [seen("a", "running", spec)], {}, 0, {"sensor"}) == []


def test_unhealthy_running_container_is_restarted():
    spec = ModuleSpec(name="sensor", image="sensor:1", restart_policy=RestartPolicy.ON_UNHEALTHY)
    assert plan({"sensor": spec}, [seen("a", spec=spec, healthy=False)], {}, 0) == [
        RestartContainer("sensor", "a")
    ]


def test_desired_stopped_stops_a_running_container():
    spec = ModuleSpec(name="sensor", image="sensor:1", status=DesiredStatus.STOPPED)
    assert plan({"sensor": spec}, [seen("a", spec=spec)], {}, 0) == [StopContainer("sensor", "a")]
    assert plan({"sensor": spec}, [], {}, 0) == [CreateContainer(spec, start=False)]
