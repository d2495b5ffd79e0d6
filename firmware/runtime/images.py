"""Image garbage collection: remove images no module has used for a while, at a time of day.

`[image_garbage_collection]`: every `cleanup_recurrence`, starting at `cleanup_time` (local time),
images unused for `image_age_cleanup_threshold` are removed. The wake-ups are computed from the
wall clock (one timer to the next run, no polling). An image counts as used while a wanted module
names it (even before its container exists), while any container was made from it, and when a
module's container is created from it (the collector is also a `ModuleHook`). Last-use times live
in the state store (document `images`), so a restart does not reset anybody's clock. The collector
never touches a container: it only asks the engine to untag/remove images, without force, so an
image some container still needs is refused by the engine and left alone (IoT Edge #6769).
"""

from __future__ import annotations

import asyncio
import datetime
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from firmware.config.durations import duration_seconds
from firmware.errors import EdgekeeperError
from firmware.logs import fields, get_logger
from firmware.runtime.container import ContainerRuntime, RuntimeUnavailable
from firmware.runtime.spec import ModuleSpec

log = get_logger("runtime.images")

DOCUMENT = "images"


@dataclass(frozen=True)
class ImageSchedule:
    """When the collector runs and how old "unused" must be."""

    recurrence: float
    threshold: float
    hour: int = 0
    minute: int = 0

    @classmethod
    def from_config(cls, section: Any) -> ImageSchedule:
        hour, _, minute = section.cleanup_time.partition(":")
        return cls(
            recurrence=duration_seconds(
                section.cleanup_recurrence, "[image_garbage_collection] cleanup_recurrence"
            ),
            threshold=duration_seconds(
                section.image_age_cleanup_threshold,
                "[image_garbage_collection] image_age_cleanup_threshold",
            ),
            hour=int(hour),
            minute=int(minute),
        )

    def next_run(self, now: float, last_run: float | None = None) -> float:
        """The first run time after `now` (and at least one recurrence after `last_run`).

        Runs fall on `cleanup_time` today plus whole multiples of the recurrence.
        """
        local = datetime.datetime.fromtimestamp(now).astimezone()
        anchor = local.replace(hour=self.hour, minute=self.minute, second=0, microsecond=0)
        base = anchor.timestamp()
        earliest = now if last_run is None else max(now, last_run + self.recurrence)
        steps = math.ceil((earliest - base) / self.recurrence)
        when = base + steps * self.recurrence
        return when if when > now else when + self.recurrence


@dataclass(frozen=True)
class CollectionResult:
    removed: tuple[str, ...]
    kept: tuple[str, ...]
    refused: tuple[str, ...]


class ImageCollector:
    """Removes images unused for longer than the threshold; a `ModuleHook` for last-use times."""

    def __init__(
        self,
        engine: ContainerRuntime,
        store: Any,
        *,
        in_use: Callable[[], Iterable[str]],
        schedule: ImageSchedule,
        run_blocking: Callable[..., Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self._store = store
        self._in_use = in_use
        self.schedule = schedule
        self._run_blocking = run_blocking
        self._clock = clock
        self._created_from: set[str] = set()
        self.last_result: CollectionResult | None = None

    # -- ModuleHook -----------------------------------------------------------------------------

    async def before_create(self, spec: ModuleSpec, body: dict[str, Any]) -> None:
        self._created_from.add(spec.image)

    async def after_remove(self, module_name: str) -> None:
        return None

    # -- the service ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Sleep until each scheduled run and collect; engine outages skip a run, not the loop."""
        while True:
            doc = await self._load()
            when = self.schedule.next_run(self._clock(), doc.get("last_run"))
            log.debug("next image clean-up", extra=fields(at=_iso(when)))
            await asyncio.sleep(max(0.0, when - self._clock()))
            if self._clock() < when:
                continue  # the wall clock was set back meanwhile: compute the run again
            try:
                await self.collect()
            except EdgekeeperError as exc:
                log.warning("image clean-up skipped", extra=fields(error=exc.render()))
                await self._save({**doc, "last_run": self._clock()})

    async def collect(self, threshold: float | None = None) -> CollectionResult:
        """One pass: stamp used images, remove those unused for `threshold` (default: config)."""
        limit = self.schedule.threshold if threshold is None else threshold
        now = self._clock()
        doc = await self._load()
        last_used: dict[str, float] = dict(doc.get("last_used", {}))
        images = await self.engine.list_images()
        wanted = set(self._in_use()) | self._created_from
        containers = await self.engine.list_containers()
        used_ids = {c.image_id for c in containers if c.image_id}
        wanted |= {c.image for c in containers}
        removed: list[str] = []
        kept: list[str] = []
        refused: list[str] = []
        present: set[str] = set()
        for image in images:
            image_id = image.get("Id", "")
            tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
            present.add(image_id)
            name = tags[0] if tags else image_id
            if image_id in used_ids or _referenced(image_id, tags, wanted):
                last_used[image_id] = now
                kept.append(name)
                continue
            since = last_used.setdefault(image_id, now)
            if now - since < limit:
                kept.append(name)
                continue
            try:
                for reference in tags or [image_id]:
                    await self.engine.remove_image(reference)
            except RuntimeUnavailable:
                raise
            except EdgekeeperError as exc:
                refused.append(name)
                log.info(
                    "image kept: engine refused removal",
                    extra=fields(image=name, error=exc.message),
                )
                continue
            removed.append(name)
            last_used.pop(image_id, None)
            log.info("unused image removed", extra=fields(image=name, unused_s=round(now - since)))
        self._created_from.clear()
        last_used = {k: v for k, v in last_used.items() if k in present}
        await self._save({"last_used": last_used, "last_run": now})
        self.last_result = CollectionResult(tuple(removed), tuple(kept), tuple(refused))
        return self.last_result

    async def _load(self) -> dict[str, Any]:
        return (await self._blocking(self._store.get, DOCUMENT)) or {}

    async def _save(self, doc: dict[str, Any]) -> None:
        await self._blocking(self._store.put, DOCUMENT, doc)

    async def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._run_blocking is None:
            return fn(*args)
        return await self._run_blocking(fn, *args)


def _referenced(image_id: str, tags: list[str], references: set[str]) -> bool:
    for reference in references:
        if reference in tags or reference == image_id:
            return True
        if reference.startswith("sha256:") and image_id.startswith(reference):
            return True
        if not _tagged(reference) and f"{reference}:latest" in tags:
            return True
        if (
            image_id.startswith("sha256:")
            and image_id[7:].startswith(reference)
            and len(reference) >= 12
        ):
            return True
    return False


def _tagged(reference: str) -> bool:
    return "@" in reference or ":" in reference.rsplit("/", 1)[-1]


def _iso(when: float) -> str:
    return datetime.datetime.fromtimestamp(when).astimezone().isoformat(timespec="seconds")
