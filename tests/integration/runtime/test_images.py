"""Image garbage collection against a real dockerd: only images no module uses are removed,
and no container is touched (IoT Edge #6769)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from firmware.runtime.engine import DockerEngine
from firmware.runtime.images import DOCUMENT, ImageCollector, ImageSchedule
from firmware.store.state import StateStore
from tests.peers.sim import busybox_rootfs

pytestmark = pytest.mark.docker


def tags_of(dockerd):
    out = dockerd.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    return set(out.split())


def test_gc_removes_only_unused_images_and_touches_no_container(
    sim_dockerd, busybox_image, tmp_path
):
    run = uuid.uuid4().hex[:6]
    before = tags_of(sim_dockerd)
    rootfs = busybox_rootfs(tmp_path / "rootfs")
    used, held = f"gc-used:{run}", f"gc-held:{run}"
    wanted, idle_a, idle_b = f"gc-wanted:{run}", f"gc-idle-a:{run}", f"gc-idle-b:{run}"
    for index, tag in enumerate((used, held, wanted, idle_a, idle_b)):
        (rootfs / "marker").write_text(f"{tag} {index}")  # a distinct image for each tag
        sim_dockerd.import_image(rootfs, tag)
    module = sim_dockerd.docker(
        "run", "-d", "--network", "none", "--name", f"gc-module-{run}", used, "sleep", "300"
    ).stdout.strip()
    other = sim_dockerd.docker("create", "--name", f"gc-other-{run}", held, "true").stdout.strip()
    started = sim_dockerd.docker("inspect", "-f", "{{.State.StartedAt}}", module).stdout
    store = StateStore(tmp_path / "state")
    store.ensure()
    engine = DockerEngine(str(sim_dockerd.socket))
    # `used` is a running module's image, `wanted` a module's whose container does not exist
    # yet; what the session had before this test counts as used by other tests' modules.
    collector = ImageCollector(
        engine,
        store,
        in_use=lambda: {used, wanted, *before},
        schedule=ImageSchedule(recurrence=86400, threshold=7 * 86400),
    )
    try:
        first = asyncio.run(collector.collect())
        assert first.removed == ()  # unused since just now: far below the 7-day threshold
        stamped = store.get(DOCUMENT)["last_used"]
        assert len(stamped) >= 5

        forced = asyncio.run(collector.collect(threshold=0))
        assert sorted(forced.removed) == sorted([idle_a, idle_b])
        left = tags_of(sim_dockerd)
        assert {used, held, wanted, busybox_image} <= left
        assert not {idle_a, idle_b} & left
        state = sim_dockerd.docker(
            "inspect", "-f", "{{.State.Running}} {{.State.StartedAt}}", module
        )
        assert state.stdout.split()[0] == "true"
        assert state.stdout.split()[1] == started.strip()  # never restarted
        assert sim_dockerd.docker("inspect", "-f", "{{.State.Status}}", other).stdout.strip() == (
            "created"
        )
        assert len(store.get(DOCUMENT)["last_used"]) == len(stamped) - 2
    finally:
        sim_dockerd.docker("rm", "-f", module, other, check=False)
        sim_dockerd.docker("rmi", used, held, wanted, idle_a, idle_b, check=False)
