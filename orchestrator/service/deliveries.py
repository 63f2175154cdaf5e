"""A job's deliveries, for the CLI and the web page: what is on imgix, what was held back,
and the operator's actions: deliver again what changed, purge URLs from imgix's caches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from orchestrator.config import ConfigError, Settings
from orchestrator.progress import ProgressSink
from orchestrator.service.database import open_store
from orchestrator.service.delivery_verify import Reconciliation, reconcile
from orchestrator.service.wiring import delivery_only, engine_config
from orchestrator.spec import JobSpec
from orchestrator.states import JobState
from orchestrator.store.models import Job
from orchestrator.store.queries import StateConflict, Store
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


async def deliveries(store: Store, ref: str) -> tuple[Job, list[PhotoDelivery]]:
    """The job named by `ref` and the delivery of each of its photos."""
    job = await store.resolve_job(ref)
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
    return job, listed


async def redeliver(ref: str, settings: Settings, progress: ProgressSink) -> DeliveryOutcome:
    """Deliver again every photo of a completed job whose file or keywords changed, and those
    held back that a person has approved since."""
    store = await open_store(settings)
    try:
        job = await _delivering_job(store, ref, settings)
        _completed(job)
        async with delivery_only(settings) as services:
            return await run_alone(
                store,
                job.id,
                _deliver_again,
                purpose="deliver",
                services=services,
                progress=progress,
                config=engine_config(settings),
            )
    finally:
        await store.close()


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


async def verify(ref: str, settings: Settings, progress: ProgressSink) -> Reconciliation:
    """`deliver --verify`: reconcile a completed job's delivery with imgix's listing and
    deliver again what is missing or of another size."""
    store = await open_store(settings)
    try:
        job = await _delivering_job(store, ref, settings)
        _completed(job)
        async with delivery_only(settings) as services:
            return await run_alone(
                store,
                job.id,
                _verify,
                purpose="verify",
                services=services,
                progress=progress,
                config=engine_config(settings),
            )
    finally:
        await store.close()


async def _verify(ctx: JobContext) -> Reconciliation:
    _completed(ctx.job)
    return await reconcile(ctx, _delivery(ctx.services))


async def purge(ref: str, settings: Settings, photo: str | None = None) -> list[str]:
    """Purge from imgix's caches the URL of each delivered photo of the job (or of the one
    named, by its path in the shoot or its file name); the URLs purged."""
    store = await open_store(settings)
    try:
        job = await _delivering_job(store, ref, settings)
        records = [r for p in await store.photos(job.id) if (r := delivery_record(p)) is not None]
        if photo is not None:
            records = [
                r for r in records if photo in (r.photo, PurePath(r.photo).name, r.origin_path)
            ]
            if not records:
                raise StateConflict(f"job {job.id[:8]} has no delivered photo {photo!r}")
        async with delivery_only(settings) as services:
            delivery = _delivery(services)
            urls = [delivery.urls.purge_url(r.origin_path) for r in records]
            for url in urls:
                await delivery.imgix.purge(url)
        await store.add_event(
            job.id, "deliver", f"purged {plural(len(urls), 'URL')} from imgix's caches"
        )
        return urls
    finally:
        await store.close()


def _completed(job: Job) -> None:
    if job.state != JobState.COMPLETED:
        raise StateConflict(
            f"job {job.id[:8]} is {job.state}: its photos are delivered as it completes "
            "(a failed one: `orchestrator retry`)"
        )


async def _delivering_job(store: Store, ref: str, settings: Settings) -> Job:
    job = await store.resolve_job(ref)
    spec = JobSpec.from_stored(job.options)
    if spec.deliver is None:
        raise StateConflict(f"job {job.id[:8]} was not asked to deliver (--deliver)")
    if refusal := IMGIX.refusal(settings):
        raise ConfigError(refusal)
    return job


def _delivery(services: Services) -> Delivery:
    delivery = services.find(IMGIX)
    if delivery is None:
        raise ConfigError("imgix is not configured (IMGIX_API_KEY, IMGIX_SOURCE_ID, IMGIX_DOMAIN)")
    return delivery
