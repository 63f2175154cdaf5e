"""A shoot's deliveries, for the CLI and the web page: what is on imgix, what was held back,
and the operator's actions: deliver again what changed, reconcile with imgix, purge URLs from
imgix's caches. Each takes a reference to a shoot (every job of it that delivers) or to one of
its jobs (that job alone; see `store.shoots.jobs_named`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, TypeVar

from orchestrator.config import ConfigError, Settings
from orchestrator.integrations.delivery_files import DeliveryRecord
from orchestrator.progress import ProgressSink
from orchestrator.service.database import open_store
from orchestrator.service.delivery_verify import Reconciliation, reconcile
from orchestrator.service.wiring import delivery_only, engine_config
from orchestrator.spec import JobSpec
from orchestrator.states import JobState
from orchestrator.store.models import Job
from orchestrator.store.queries import StateConflict, Store
from orchestrator.store.shoots import jobs_named
from orchestrator.words import plural
from orchestrator.workflow.context import JobContext, Services
from orchestrator.workflow.deliver import (
    PHASE,
    DeliveryOutcome,
    deliver_photos,
    delivery_record,
    tag_view,
)
from orchestrator.workflow.lease import run_alone
from orchestrator.workflow.services import IMGIX, Delivery

T = TypeVar("T")


@dataclass(frozen=True)
class PhotoDelivery:
    """One photo of a job as `deliveries` lists it."""

    photo: str
    status: str
    """delivered, held (moderation), failed, or pending."""
    origin_path: str | None = None
    url: str | None = None
    srcset: str | None = None
    keywords: tuple[str, ...] = ()
    delivered_at: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The photo as `deliveries --json` prints it."""
        return {
            "photo": self.photo,
            "status": self.status,
            "origin_path": self.origin_path,
            "url": self.url,
            "srcset": self.srcset,
            "keywords": list(self.keywords),
            "delivered_at": self.delivered_at,
            "reason": self.reason,
        }


async def deliveries(store: Store, ref: str) -> list[tuple[Job, list[PhotoDelivery]]]:
    """Each job `ref` names, with the delivery of each of its photos."""
    _shoot, jobs = await jobs_named(store, ref)
    return [(job, await _photo_deliveries(store, job)) for job in jobs]


async def _photo_deliveries(store: Store, job: Job) -> list[PhotoDelivery]:
    listed: list[PhotoDelivery] = []
    for photo in await store.photos(job.id):
        record = delivery_record(photo)
        held = tag_view(photo).held
        failed = photo.phase(PHASE)
        if record is not None:
            listed.append(
                PhotoDelivery(
                    photo.rel_path,
                    "delivered",
                    origin_path=record.origin_path,
                    url=record.url,
                    srcset=record.srcset,
                    keywords=tuple(record.keywords),
                    delivered_at=record.delivered_at,
                    reason=held,
                )
            )
        elif held is not None:
            listed.append(PhotoDelivery(photo.rel_path, "held", reason=held))
        elif failed is not None and failed.failed_reason:
            listed.append(PhotoDelivery(photo.rel_path, "failed", reason=failed.failed_reason))
        else:
            listed.append(PhotoDelivery(photo.rel_path, "pending"))
    return listed


@dataclass(frozen=True)
class Redelivery:
    """What `deliver` did over the jobs it was given, and the jobs it left (and why)."""

    jobs: list[tuple[Job, DeliveryOutcome]]
    skipped: list[str]

    @property
    def delivered(self) -> int:
        return sum(outcome.delivered for _, outcome in self.jobs)

    @property
    def unchanged(self) -> int:
        return sum(outcome.unchanged for _, outcome in self.jobs)

    @property
    def held(self) -> dict[str, str]:
        return {photo: why for _, outcome in self.jobs for photo, why in outcome.held.items()}

    @property
    def failures(self) -> list[str]:
        return [failure for _, outcome in self.jobs for failure in outcome.failures]


@dataclass(frozen=True)
class Verification:
    """What `deliver --verify` found in each job it was given, and the jobs it left."""

    jobs: list[tuple[Job, Reconciliation]]
    skipped: list[str]

    @property
    def failures(self) -> list[str]:
        return [f for _, found in self.jobs if found.repair for f in found.repair.failures]

    def to_json(self) -> dict[str, Any]:
        """As `deliver --verify --json` prints it: the totals, each job's findings, and the
        jobs left. `listed` is given for one job only: jobs of a shoot may share a folder at
        imgix, so their listings overlap."""
        each = [{**found.to_json(), "job": job.id} for job, found in self.jobs]
        totals = {key: sum(entry[key] for entry in each) for key in ("checked", "repaired")}
        lists = {
            key: [item for entry in each for item in entry[key]]
            for key in ("missing", "extra", "different", "failed")
        }
        listed = {"listed": each[0]["listed"]} if len(each) == 1 else {}
        return {**totals, **listed, **lists, "jobs": each, "skipped": self.skipped}


async def redeliver(ref: str, settings: Settings, progress: ProgressSink) -> Redelivery:
    """Deliver again every photo of the completed jobs `ref` names whose file or keywords
    changed, and those held back that a person has approved since."""
    return Redelivery(*await _each_completed(ref, settings, progress, _deliver_again, "deliver"))


async def _deliver_again(ctx: JobContext) -> DeliveryOutcome:
    """The delivery stage's pass over a completed job, under its borrowed lease."""
    _completed(ctx.job)
    outcome = await deliver_photos(ctx, _delivery(ctx.services))
    await ctx.event(
        "deliver",
        f"delivered again: {plural(outcome.delivered, 'photo')}, {outcome.unchanged} unchanged, "
        f"{len(outcome.failures)} failed",
    )
    return outcome


async def verify(ref: str, settings: Settings, progress: ProgressSink) -> Verification:
    """`deliver --verify`: reconcile the delivery of each completed job `ref` names with
    imgix's listing and deliver again what is missing or of another size."""
    return Verification(*await _each_completed(ref, settings, progress, _verify, "verify"))


async def _each_completed(
    ref: str,
    settings: Settings,
    progress: ProgressSink,
    action: Callable[[JobContext], Awaitable[T]],
    purpose: str,
) -> tuple[list[tuple[Job, T]], list[str]]:
    """`action` on each completed job `ref` names that delivers, one after another, each
    under its borrowed lease; with a line for each job it names and left."""
    store = await open_store(settings)
    try:
        jobs, skipped = await completed_deliveries(store, ref, settings)
        done: list[tuple[Job, T]] = []
        async with delivery_only(settings) as services:
            for job in jobs:
                found = await run_alone(
                    store,
                    job.id,
                    action,
                    purpose=purpose,
                    services=services,
                    progress=progress,
                    config=engine_config(settings),
                )
                done.append((job, found))
        return done, skipped
    finally:
        await store.close()


async def _verify(ctx: JobContext) -> Reconciliation:
    _completed(ctx.job)
    return await reconcile(ctx, _delivery(ctx.services))


async def purge(ref: str, settings: Settings, photo: str | None = None) -> list[str]:
    """Purge from imgix's caches the URL of each delivered photo of the jobs `ref` names (or
    of the one photo named, by its path in the shoot or its file name); the URLs purged."""
    store = await open_store(settings)
    try:
        jobs, _skipped = await _delivering_jobs(store, ref, settings)
        chosen: list[tuple[Job, list[DeliveryRecord]]] = []
        for job in jobs:
            records = [
                r for p in await store.photos(job.id) if (r := delivery_record(p)) is not None
            ]
            if photo is not None:
                records = [
                    r for r in records if photo in (r.photo, PurePath(r.photo).name, r.origin_path)
                ]
            chosen.append((job, records))
        if photo is not None and not any(records for _, records in chosen):
            which = ", ".join(job.id[:8] for job in jobs)
            whose = f"job {which} has" if len(jobs) == 1 else f"jobs {which} have"
            raise StateConflict(f"{whose} no delivered photo {photo!r}")
        purged: list[str] = []
        async with delivery_only(settings) as services:
            delivery = _delivery(services)
            for job, records in chosen:
                urls = [delivery.urls.purge_url(r.origin_path) for r in records]
                for url in urls:
                    await delivery.imgix.purge(url)
                if urls:
                    await store.add_event(
                        job.id, "deliver", f"purged {plural(len(urls), 'URL')} from imgix's caches"
                    )
                purged.extend(urls)
        return purged
    finally:
        await store.close()


def _completed(job: Job) -> None:
    if job.state != JobState.COMPLETED:
        raise StateConflict(
            f"job {job.id[:8]} is {job.state}: its photos are delivered as it completes "
            "(a failed one: `orchestrator retry`)"
        )


async def _delivering_jobs(
    store: Store, ref: str, settings: Settings
) -> tuple[list[Job], list[str]]:
    """The jobs `ref` names that deliver to imgix, and a line for each other one it names."""
    shoot, jobs = await jobs_named(store, ref)
    delivering = [job for job in jobs if JobSpec.from_stored(job.options).deliver is not None]
    if not delivering:
        which = f"job {jobs[0].id[:8]} was not" if len(jobs) == 1 else f"no job of {shoot.name} was"
        raise StateConflict(f"{which} asked to deliver to imgix (run with --deliver)")
    if missing := settings.imgix.missing():
        raise ConfigError(
            f"delivering needs {', '.join(missing)} (the imgix API key, Source id and delivery "
            "domain): set them as they were for the run that delivered"
        )
    skipped = [
        f"job {job.id[:8]} ({job.name}) was not asked to deliver (--deliver)"
        for job in jobs
        if job not in delivering
    ]
    return delivering, skipped


async def completed_deliveries(
    store: Store, ref: str, settings: Settings
) -> tuple[list[Job], list[str]]:
    """The completed jobs `ref` names that deliver, and a line for each other one it names;
    refused (an OperatorRefusal) when none of them can be delivered again now."""
    delivering, skipped = await _delivering_jobs(store, ref, settings)
    completed = [job for job in delivering if job.state == JobState.COMPLETED]
    if not completed:
        _completed(delivering[0])
    skipped += [
        f"job {job.id[:8]} ({job.name}) is {job.state}: its photos are delivered as it completes"
        for job in delivering
        if job not in completed
    ]
    return completed, skipped


def _delivery(services: Services) -> Delivery:
    delivery = services.find(IMGIX)
    if delivery is None:
        raise ConfigError("imgix is not configured (IMGIX_API_KEY, IMGIX_SOURCE_ID, IMGIX_DOMAIN)")
    return delivery
