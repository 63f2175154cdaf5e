"""Stage: deliver the exported JPEGs to the imgix Source, with their metadata, exactly once.

Each photo's JPEG (its keywords written in when the keywording stage ran) is uploaded at its
origin path, its metadata (categories = keywords, custom fields, description) read, merged and
written, and the `deliver` phase checkpointed with the md5 of the bytes delivered, the URL and
the srcset. A photo delivered and unchanged is never sent again. Before a first upload the
intent is recorded (phase `deliver_sent`), so that after a crash an asset found at the path is
known to be this job's: imgix is asked (GET) whether it holds these bytes (the md5 this stage
writes into its custom fields) before anything is sent again. A photo whose file or keywords
changed since its delivery is uploaded again with overwrite=true (only if its bytes changed),
its metadata updated and its URL purged.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from orchestrator.apicore.errors import ApiAmbiguous
from orchestrator.crashpoints import crash_point
from orchestrator.integrations.delivery_files import (
    CONTACT_SHEET,
    DeliveryRecord,
    delivered_folder,
    locked_folder,
    write_delivery,
)
from orchestrator.integrations.imgix_models import MAX_SIMPLE_UPLOAD_BYTES, Asset, ImgixConflict
from orchestrator.rules.delivery import PathRefused, origin_path
from orchestrator.spec import DeliverSpec, JobSpec
from orchestrator.states import JobState
from orchestrator.store.models import Job
from orchestrator.store.queries import PhaseDone, PhotoRecord, Store
from orchestrator.store.shoots import get_shoot, jobs_of_shoots
from orchestrator.words import plural
from orchestrator.workflow.context import JobContext, JobFailed, JobPaused
from orchestrator.workflow.delivered_analyses import analysis_fields, analysis_record
from orchestrator.workflow.outputs import output_file
from orchestrator.workflow.photos import PhotoFailed, PhotoRun, photo_run
from orchestrator.workflow.services import IMGIX, Delivery
from orchestrator.workflow.stage import Stage
from orchestrator.workflow.tag_details import TagDetails

if TYPE_CHECKING:
    from orchestrator.integrations.imgix import ImgixClient

PHASE = "deliver"
SENT = "deliver_sent"
"""The intent, recorded before a photo's first upload to a path: an asset found there later is
this job's, from an upload whose answer was lost."""
EXPORT_PHASE = "export"

JOB_FIELD = "orchestrator_job"
MD5_FIELD = "orchestrator_md5"
"""Custom fields marking an asset as this job's, and the md5 of the bytes it was sent."""


@dataclass(frozen=True)
class TagView:
    """What delivery reads from a photo's keywording: its keywords, and whether it is held."""

    keywords: tuple[str, ...] = ()
    held: str | None = None
    """Why the photo is not delivered (flagged by moderation, nobody approved it); None: go."""
    details: TagDetails | None = None
    """Its keywording as recorded (the analyses' results among it)."""


def tag_view(photo: PhotoRecord) -> TagView:
    """The photo's keywords (blank ones and repeats left out) and whether moderation holds it
    back, as the keywording stage and the review recorded them (none: no keywording)."""
    details = TagDetails.of(photo)
    if details is None:
        return TagView()
    words = [*details.keywords, *details.analysis_words]
    keywords = tuple(dict.fromkeys(text for word in words if (text := word.strip())))
    if details.flagged and details.approved is not True:
        score = details.moderation.score if details.moderation else None
        shown = f" (score {score:.2f})" if score is not None else ""
        return TagView(keywords, f"flagged by moderation{shown}, not approved", details)
    return TagView(keywords, details=details)


@dataclass(frozen=True)
class Parcel:
    """One photo to deliver: its exported file, where it goes, and its keywords."""

    photo: PhotoRecord
    file: Path
    origin_path: str
    keywords: tuple[str, ...]
    details: TagDetails | None = None
    """Its keywording, whose analyses go with it (delivery.json, custom fields)."""
    shoot: str = ""
    """The name of the shoot it belongs to."""


@dataclass
class DeliveryPlan:
    """What a delivery pass finds to do."""

    todo: list[Parcel] = field(default_factory=list)
    unchanged: int = 0
    held: dict[str, str] = field(default_factory=dict)
    """Photos not delivered, with why (moderation)."""
    refused: list[tuple[PhotoRecord, str]] = field(default_factory=list)
    """Photos that cannot be delivered as they stand, with why."""


@dataclass(frozen=True)
class DeliveryOutcome:
    """How a delivery pass ended."""

    delivered: int
    unchanged: int
    held: Mapping[str, str]
    failures: Sequence[str]


def wants_delivery(spec: JobSpec) -> bool:
    """Whether the job delivers its exports to imgix."""
    return spec.deliver is not None


async def plan_delivery(
    job: Job,
    job_spec: JobSpec,
    spec: DeliverSpec,
    photos: Sequence[PhotoRecord],
    shoot: str,
    force: Collection[str] = (),
) -> DeliveryPlan:
    """Sort the job's photos into those to deliver, unchanged, held and refused (`shoot`: the
    name of the job's shoot, which prefixes the default origin path); a photo at an origin path
    of `force` (missing at imgix) is delivered even when unchanged."""
    plan = DeliveryPlan()
    taken: dict[str, str] = {}
    for photo in photos:
        view = tag_view(photo)
        if view.held is not None:
            plan.held[photo.rel_path] = view.held
            continue
        export = photo.phase(EXPORT_PHASE)
        exported = output_file(job, job_spec, photo, EXPORT_PHASE)
        if export is None or export.output is None or exported is None:
            plan.refused.append((photo, "it has no exported JPEG"))
            continue
        try:
            path = origin_path(
                spec.path,
                shoot=shoot,
                path=place_in_shoot(photo.rel_path, export.output),
                job_name=job.name,
                job_id=job.id,
                file_name=export.output,
                stem=Path(export.output).stem,
            )
        except PathRefused as exc:
            plan.refused.append((photo, str(exc)))
            continue
        if path in taken:
            plan.refused.append((photo, f"its origin path {path} is {taken[path]}'s too"))
            continue
        taken[path] = photo.rel_path
        words = tuple(dict.fromkeys((*job_spec.keywords, *view.keywords)))
        parcel = Parcel(photo, exported, path, words, details=view.details, shoot=shoot)
        if path not in force and await asyncio.to_thread(_unchanged, parcel):
            plan.unchanged += 1
        else:
            plan.todo.append(parcel)
    return plan


def place_in_shoot(rel_path: str, exported: str) -> str:
    """The delivered photo's path in its shoot: the photo's folders and its own name, letter
    case kept (`Ceremony/Card 1/DSC_1000.JPG`); a RAW's with the export's extension."""
    photo = PurePosixPath(rel_path)
    if photo.suffix.lower() in (".jpg", ".jpeg"):
        return str(photo)
    return str(photo.with_suffix(PurePosixPath(exported).suffix or ".jpg"))


def _unchanged(parcel: Parcel) -> bool:
    """Whether the photo was delivered at this path, with these keywords and these bytes (a
    file whose size and mtime did not move is not hashed again)."""
    previous = parcel.photo.phase(PHASE)
    if previous is None or previous.done_at is None or previous.output != parcel.origin_path:
        return False
    details = previous.details or {}
    if tuple(details.get("keywords") or ()) != parcel.keywords:
        return False
    try:
        stat = parcel.file.stat()
    except OSError:
        return False
    if (stat.st_size, stat.st_mtime_ns) == (previous.size, details.get("mtime_ns")):
        return True
    return _read(parcel.file)[1] == previous.md5


def _read(path: Path) -> tuple[bytes, str, int]:
    """The file's bytes, their md5 and the file's mtime."""
    with path.open("rb") as file:
        data = file.read()
        mtime = Path(path).stat().st_mtime_ns
    return data, hashlib.md5(data).hexdigest(), mtime


async def deliver_photos(
    ctx: JobContext, delivery: Delivery, force: Collection[str] = ()
) -> DeliveryOutcome:
    """Deliver every photo of the job not delivered as it now stands (and those at the origin
    paths of `force`); write delivery.json and the contact sheet; say what was held back."""
    spec = ctx.spec.deliver
    if spec is None:
        raise JobFailed("this job was not asked to deliver (--deliver)")
    shoot = await get_shoot(ctx.store, ctx.job.shoot_id)
    photos = await ctx.store.photos(ctx.job.id)
    plan = await plan_delivery(ctx.job, ctx.spec, spec, photos, shoot.name, force)
    if plan.unchanged:
        await ctx.event(
            "resume", f"{plural(plan.unchanged, 'photo')} already delivered; {len(plan.todo)} to go"
        )
    ctx.progress.stage_started(ctx.label, PHASE, files=len(plan.todo), total_bytes=None)
    async with photo_run(
        ctx, phase=PHASE, progress_stage=PHASE, photo_id=_photo_id, describe=_describe
    ) as run:
        for photo, reason in plan.refused:
            await run.failed(Parcel(photo, Path(), "", ()), reason)
        failed = await run.run(
            plan.todo, lambda parcel: _deliver_one(ctx, delivery, spec, run, parcel)
        )
    ctx.progress.stage_finished(ctx.label, PHASE)
    failures = [f"{photo.rel_path}: {reason}" for photo, reason in plan.refused] + failed
    await write_outputs(ctx.store, ctx.job)
    if plan.held:
        names = ", ".join(sorted(plan.held))
        message = (
            f"held back, flagged by moderation: {plural(len(plan.held), 'photo')} ({names}); "
            f"once approved, `orchestrator deliver {ctx.job.id[:8]}` delivers them"
        )
        await ctx.event("note", message, held=sorted(plan.held))
        ctx.note(message, level="warn")
    return DeliveryOutcome(len(plan.todo) - len(failed), plan.unchanged, plan.held, failures)


async def write_outputs(store: Store, job: Job) -> Path:
    """The shoot's one delivered/delivery.json and index.html (its contact sheet), from what
    the store says every job of the job's shoot delivered and holds back; the sheet's path.

    Jobs of one shoot deliver side by side: the files are written under a lock on the folder,
    each writer reading the store inside it, so the last one written holds every record."""
    shoot = await get_shoot(store, job.shoot_id)
    jobs = (await jobs_of_shoots(store, [shoot.id])).get(shoot.id, [])
    folder = delivered_folder(job.source, job.exported_dir)
    async with locked_folder(folder):
        records: list[DeliveryRecord] = []
        held: dict[str, str] = {}
        for each, _ in jobs:
            if each.options.get("deliver") is None:  # a job of the shoot that delivers not
                continue
            for photo in await store.photos(each.id):
                if (record := delivery_record(photo, shoot.name)) is not None:
                    records.append(record)
                elif (why := tag_view(photo).held) is not None:
                    held[photo.rel_path] = why
        await asyncio.to_thread(write_delivery, folder, shoot.name, records, held)
    return folder / CONTACT_SHEET


def delivery_record(photo: PhotoRecord, shoot: str = "") -> DeliveryRecord | None:
    """The photo's delivery as recorded (in the shoot named `shoot`), or None if it was never
    delivered."""
    done = photo.phase(PHASE)
    if done is None or done.done_at is None or not done.output:
        return None
    details = done.details or {}
    return DeliveryRecord(
        photo=photo.rel_path,
        origin_path=done.output,
        url=str(details.get("url", "")),
        srcset=str(details.get("srcset", "")),
        keywords=[str(k) for k in details.get("keywords") or ()],
        delivered_at=str(details.get("delivered_at", "")),
        md5=done.md5 or "",
        shoot=shoot,
        analyses=_stored_analyses(details),
    )


def _stored_analyses(details: Mapping[str, Any]) -> dict[str, Any]:
    """The analyses a delivery recorded (none before they existed)."""
    found = details.get("analyses")
    return dict(found) if isinstance(found, dict) else {}


async def _deliver_one(
    ctx: JobContext, delivery: Delivery, spec: DeliverSpec, run: PhotoRun[Parcel], parcel: Parcel
) -> PhaseDone:
    photo, path, imgix = parcel.photo, parcel.origin_path, delivery.imgix
    try:
        data, md5, mtime_ns = await asyncio.to_thread(_read, parcel.file)
    except OSError as exc:
        raise PhotoFailed(f"cannot read its export {parcel.file}: {exc.strerror or exc}") from exc
    if len(data) >= MAX_SIMPLE_UPLOAD_BYTES:
        raise PhotoFailed(
            f"its export is {len(data) / 1e6:.1f} MB; imgix's upload takes files under 30 MB "
            "(upload sessions are not supported): export it smaller and run `orchestrator "
            f"deliver {ctx.job.id[:8]}`"
        )
    previous = photo.phase(PHASE) if photo.done(PHASE) else None
    sent = photo.phase(SENT)
    ours = previous is not None or (sent is not None and sent.output == path)
    asset = await imgix.get_asset(path)
    if asset is not None and asset.custom_fields.get(JOB_FIELD) == ctx.job.id:
        ours = True
    overwrote = False
    if asset is None:
        if sent is None or sent.output != path:
            await run.checkpoints.commit(photo.id, PhaseDone(SENT, output=path, md5=md5))
        crash_point("before_deliver_upload")
        asset = await _first_upload(imgix, path, data)
    elif asset.custom_fields.get(MD5_FIELD) == md5 and asset.file_size == len(data):
        pass  # imgix already holds these very bytes: an earlier upload whose answer was lost
    elif ours:
        crash_point("before_deliver_upload")
        asset = await imgix.upload(path, data, overwrite=True)
        overwrote = True
    else:
        raise PhotoFailed(
            f"imgix already holds another file at {path}, not delivered by this job; delete "
            "it in imgix or choose another --deliver-path, then `orchestrator retry`"
        )
    crash_point("after_deliver_upload")
    await _write_metadata(ctx.job, spec, imgix, asset, parcel, md5, analysis_fields(parcel.details))
    purged = overwrote or (previous is not None and previous.md5 != md5)
    if purged:
        await imgix.purge(delivery.urls.purge_url(path))
    crash_point("after_deliver")
    return PhaseDone(
        PHASE,
        output=path,
        size=len(data),
        md5=md5,
        details={
            "url": delivery.urls.url(path),
            "srcset": delivery.urls.srcset(path),
            "keywords": list(parcel.keywords),
            "categories": list(parcel.keywords),
            "description": spec.description,
            "delivered_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "mtime_ns": mtime_ns,
            "redelivered": previous is not None,
            "purged": purged,
            "analyses": analysis_record(parcel.details, delivery.urls, path),
        },
    )


async def _first_upload(imgix: ImgixClient, path: str, data: bytes) -> Asset:
    """Upload to a path imgix had nothing at a moment ago.

    If the answer is lost, repeating with overwrite=true is safe: the only thing that can be
    at the path is this very upload. A conflict means someone else put a file there since.
    """
    try:
        return await imgix.upload(path, data, overwrite=False)
    except ApiAmbiguous:
        return await imgix.upload(path, data, overwrite=True)
    except ImgixConflict:
        raise PhotoFailed(
            f"another file appeared at {path} in imgix while delivering; delete it in imgix "
            "or choose another --deliver-path, then `orchestrator retry`"
        ) from None


async def _write_metadata(
    job: Job,
    spec: DeliverSpec,
    imgix: ImgixClient,
    asset: Asset,
    parcel: Parcel,
    md5: str,
    analyses: Mapping[str, str],
) -> None:
    """Categories, custom fields (merged into what the asset has: imgix replaces the whole
    object) and description, written only when they differ from what imgix holds."""
    fields = {
        **asset.custom_fields,
        JOB_FIELD: job.id,
        "shoot": parcel.shoot or job.name,
        "imagen_project": job.project_uuid or "",
        "imagen_profile": job.profile_name,
        MD5_FIELD: md5,
        **analyses,
    }
    wanted: dict[str, Any] = {"categories": list(parcel.keywords), "custom_fields": fields}
    if spec.description is not None:
        wanted["description"] = spec.description
    if (
        list(asset.categories) != wanted["categories"]
        or dict(asset.custom_fields) != fields
        or (spec.description is not None and asset.description != spec.description)
    ):
        await imgix.update_asset(parcel.origin_path, wanted)


def _photo_id(parcel: Parcel) -> int:
    return parcel.photo.id


def _describe(parcel: Parcel) -> str:
    return parcel.photo.rel_path


async def deliver_stage(ctx: JobContext) -> None:
    """Deliver the job's photos, then finish the stage."""
    delivery = ctx.services.find(IMGIX)
    if delivery is None:
        raise JobPaused(
            "this job delivers to imgix, but IMGIX_API_KEY, IMGIX_SOURCE_ID and IMGIX_DOMAIN "
            "are not all set for this process: set them, then run again"
        )
    outcome = await deliver_photos(ctx, delivery)
    if outcome.failures:
        raise JobFailed(
            f"{plural(len(outcome.failures), 'photo')} not delivered "
            f"(first: {outcome.failures[0]}); "
            "`orchestrator retry` delivers only those"
        )
    await ctx.finish_stage(
        f"{plural(outcome.delivered, 'photo')} delivered"
        + (f", {outcome.unchanged} already there" if outcome.unchanged else "")
        + (f", {len(outcome.held)} held back" if outcome.held else "")
    )


STAGE = Stage(
    name=PHASE,
    states=(JobState.DELIVERING,),
    step=deliver_stage,
    phase=PHASE,
    applies=wants_delivery,
    requires=(IMGIX,),
    crash_points=("before_deliver_upload", "after_deliver_upload", "after_deliver"),
)
