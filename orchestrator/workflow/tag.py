"""Stage: keywords for every photo from Imagga, written into the files themselves.

Each photo's exported JPEG (or, without export, its edited JPEG) is sent to Imagga as a small
upright copy; the answer is kept by that copy's md5 before anything else happens, so a crash,
a rerun or `retry` never pays for an image twice. The chosen keywords go into the exported and
edited files (see integrations/keywords.py); the photo's `tag` phase records them with the whole
suggestion list, the optional categories and moderation, and the tagged file's md5.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

from orchestrator.crashpoints import crash_point
from orchestrator.imagen.models import ImageType
from orchestrator.integrations.downscale import NotAnImage, downscale
from orchestrator.integrations.imagga_models import (
    MODERATION_CATEGORIZER,
    Category,
    ImaggaNotConfigured,
    Suggestion,
    quota_spent,
)
from orchestrator.integrations.keywords import (
    KeywordWriteFailed,
    writable,
)
from orchestrator.integrations.previews import cache_folder
from orchestrator.integrations.tagging import Tagging
from orchestrator.spec import JobSpec, TagSpec
from orchestrator.states import JobState
from orchestrator.store.models import Job
from orchestrator.store.queries import PhaseDone, PhotoRecord, Store
from orchestrator.words import plural
from orchestrator.workflow.analyses import analyse, kept_answer
from orchestrator.workflow.context import JobContext, JobFailed, JobPaused
from orchestrator.workflow.keywording import write_keywords
from orchestrator.workflow.outputs import output_file
from orchestrator.workflow.people import group_people
from orchestrator.workflow.people_index import recognise_people
from orchestrator.workflow.photos import PhotoFailed, photo_run
from orchestrator.workflow.review_previews import ReviewPreviews
from orchestrator.workflow.services import EXIFTOOL, TAGGING, TAGGING_NOT_CONFIGURED
from orchestrator.workflow.stage import Stage
from orchestrator.workflow.tag_details import TAG_PHASE, FileRef, Moderation, TagDetails

PHASE = TAG_PHASE


def wants_tags(spec: JobSpec) -> bool:
    """Whether the job asked for keywords."""
    return spec.tag is not None


def kind_refusal(spec: JobSpec, kind: ImageType) -> str | None:
    """Why a job of this image type cannot be tagged as asked, if it cannot."""
    if spec.tag is not None and kind is ImageType.RAW and not spec.export:
        return (
            "--tag on RAW photos needs --export: Imagga reads JPEGs, and a RAW job's edits "
            "are develop settings; add --export"
        )
    return None


async def tag_photos(ctx: JobContext) -> None:
    """Tag every photo not yet tagged, within the month's quota, then finish the stage."""
    tagging = ctx.services.find(TAGGING)
    if tagging is None:
        raise ImaggaNotConfigured(TAGGING_NOT_CONFIGURED)
    spec = ctx.spec.tag
    assert spec is not None  # the stage applies only to jobs that asked for tags
    photos = await ctx.store.photos(ctx.job.id)
    todo = [p for p in photos if not p.done(PHASE)]
    if len(todo) < len(photos):
        await ctx.event("resume", f"{plural(len(photos) - len(todo), 'photo')} already tagged")
    todo_now = await _within_quota(ctx, tagging, spec, todo)
    # A job to review gets its grid's thumbnails and capture times as each photo is tagged.
    previews = ReviewPreviews(cache_folder(ctx.store.engine.url)) if ctx.spec.review else None
    ctx.progress.stage_started(ctx.label, PHASE, files=len(todo_now), total_bytes=None)
    async with photo_run(
        ctx, phase=PHASE, progress_stage=PHASE, photo_id=_photo_id, describe=_describe
    ) as run:
        failures = await run.run(
            todo_now, lambda photo: _tag_one(ctx, tagging, spec, photo, previews)
        )
    ctx.progress.stage_finished(ctx.label, PHASE)
    await _report_flagged(ctx)
    if failures:
        raise JobFailed(
            f"{plural(len(failures), 'photo')} could not be tagged (first: {failures[0]}); "
            "`orchestrator retry` tags only those"
        )
    if len(todo_now) < len(todo):
        usage = await tagging.imagga.usage()
        raise JobPaused(
            f"tagged {plural(len(todo_now), 'photo')}; "
            f"{len(todo) - len(todo_now)} wait for Imagga's "
            f"quota: {quota_spent(usage)}. Run again then"
        )
    if spec.people:
        await group_people(ctx, tagging)
        await recognise_people(ctx, tagging)
    await ctx.finish_stage("keywords written")


async def _within_quota(
    ctx: JobContext, tagging: Tagging, spec: TagSpec, todo: list[PhotoRecord]
) -> list[PhotoRecord]:
    """The photos this pass may tag: all, if the quota allows; else pause (or, with
    `--tag-anyway`, those it allows). Also learns the account's concurrency cap."""
    if not todo:
        return todo
    usage = await tagging.imagga.usage()
    tagging.imagga.use_account_cap(usage)
    per_photo = spec.analyses_per_photo
    needed = len(todo) * per_photo
    if needed <= usage.left:
        await ctx.event(
            "tag",
            f"tagging {plural(len(todo), 'photo')}: {needed} Imagga requests of {usage.left} "
            "left this "
            f"month, {tagging.imagga.concurrency} at once",
        )
        return todo
    allowed = usage.left // per_photo
    if not tagging.anyway or allowed == 0:
        hint = f", or add --tag-anyway to tag the {allowed} it allows now" if allowed else ""
        raise JobPaused(
            f"{quota_spent(usage, needed)} for {plural(len(todo), 'photo')}. Run again once it has "
            f"reset{hint}"
        )
    await ctx.event(
        "tag", f"quota allows {allowed} of {len(todo)} photos; tagging those now (--tag-anyway)"
    )
    return todo[:allowed]


def tag_files(job: Job, spec: JobSpec, photo: PhotoRecord) -> tuple[Path, list[Path]]:
    """The file sent to Imagga, and every file the photo's keywords go into (it first)."""
    edited = output_file(job, spec, photo, "edit")
    if spec.export:
        exported = output_file(job, spec, photo, "export")
        if exported is None:
            raise PhotoFailed("it has no exported JPEG to tag")
        source = exported
    elif edited is not None and edited.suffix.lower() in (".jpg", ".jpeg"):
        source = edited
    else:
        raise PhotoFailed("it has no edited JPEG to tag")
    targets = [source]
    if edited is not None and edited != source and writable(edited):
        targets.append(edited)
    return source, targets


async def _tag_one(
    ctx: JobContext,
    tagging: Tagging,
    spec: TagSpec,
    photo: PhotoRecord,
    previews: ReviewPreviews | None,
) -> PhaseDone:
    source, targets = tag_files(ctx.job, ctx.spec, photo)
    try:
        image = await asyncio.to_thread(downscale, source, spec.long_side)
    except NotAnImage as exc:
        raise PhotoFailed(str(exc)) from None
    except OSError as exc:
        raise PhotoFailed(f"{source.name} cannot be read: {exc.strerror or exc}") from None
    # Before the keywords go in: the file was just read, its pixels are what the page shows.
    capture = await previews.make(ctx.job, ctx.spec, photo) if previews else None
    image_md5 = hashlib.md5(image).hexdigest()
    imagga = tagging.imagga
    suggestions = [
        Suggestion(str(item["tag"]), float(item["confidence"]))
        for item in await kept_answer(
            ctx.store,
            tagging,
            image_md5,
            "tags:" + ",".join(spec.languages),
            lambda: _as_json(imagga.tags(image, languages=spec.languages)),
        )
    ]
    categories = (
        await _categories(ctx.store, tagging, image, image_md5, spec.categorizer)
        if spec.categorizer
        else None
    )
    moderation = (
        tagging.rules.moderation(
            await _categories(ctx.store, tagging, image, image_md5, MODERATION_CATEGORIZER)
        )
        if spec.moderate
        else None
    )
    analysed = await analyse(ctx.store, tagging, image, image_md5, spec)
    crash_point("after_imagga_answer")
    keywords = tagging.rules.choose(suggestions, spec)
    details = TagDetails(
        keywords=tuple(keywords),
        suggestions=tuple(suggestions),
        categories=tuple(categories) if categories is not None else None,
        moderation=Moderation.model_validate(moderation) if moderation is not None else None,
        image_md5=image_md5,
        files=tuple(_file_ref(ctx.job, path) for path in targets),
        capture=capture,
        **analysed,
    )
    ours = [*keywords, *details.analysis_words]
    details = details.model_copy(
        update={"file_keywords": tuple(await _keywords_already_in(tagging, targets, ours))}
    )
    details = await write_keywords(tagging.files, ctx.job, details, keywords)
    crash_point("after_keywords_written")
    return PhaseDone(PHASE, output=source.name, md5=details.content_md5, details=details.stored())


async def _keywords_already_in(
    tagging: Tagging, targets: Sequence[Path], ours: Sequence[str]
) -> list[str]:
    """The words the files held before this photo was tagged (never taken out later).

    A file written before a crash already holds ours: those are not counted as theirs.
    """
    mine = {w.casefold() for w in ours}
    found: list[str] = []
    try:
        for path in targets:
            for word in await tagging.files.read(path):
                if word.casefold() not in mine and word not in found:
                    found.append(word)
    except KeywordWriteFailed as exc:
        raise PhotoFailed(str(exc)) from None
    return found


async def _categories(
    store: Store, tagging: Tagging, image: bytes, image_md5: str, categorizer: str
) -> list[Category]:
    kept = await kept_answer(
        store,
        tagging,
        image_md5,
        f"categories:{categorizer}",
        lambda: _as_json(tagging.imagga.categories(image, categorizer)),
    )
    return [Category(str(item["name"]), float(item["confidence"])) for item in kept]


async def _as_json(found: Awaitable[Sequence[Suggestion] | Sequence[Category]]) -> list[Any]:
    return [item.to_json() for item in await found]


async def _report_flagged(ctx: JobContext) -> None:
    """List the photos moderation flagged: they are never delivered without a person."""
    flagged = [
        photo.file_name
        for photo in await ctx.store.photos(ctx.job.id)
        if (details := TagDetails.of(photo)) is not None and details.flagged
    ]
    if flagged:
        shown = ", ".join(flagged[:10]) + (" …" if len(flagged) > 10 else "")
        message = (
            f"moderation flagged {plural(len(flagged), 'photo')} (never delivered unseen): {shown}"
        )
        await ctx.event("moderation", message, flagged=flagged)
        ctx.note(message, level="warn")


def _file_ref(job: Job, path: Path) -> FileRef:
    """How a file that carries keywords is recorded (see FileRef)."""
    for kind, folder in (("export", Path(job.exported_dir)), ("edit", Path(job.edited_dir))):
        if path.is_relative_to(folder):
            return FileRef(kind=kind, name=str(path.relative_to(folder)))
    return FileRef(kind="edit", name=str(path))


def _photo_id(photo: PhotoRecord) -> int:
    return photo.id


def _describe(photo: PhotoRecord) -> str:
    return photo.rel_path


STAGE = Stage(
    name=PHASE,
    states=(JobState.TAGGING,),
    step=tag_photos,
    phase=PHASE,
    applies=wants_tags,
    requires=(TAGGING, EXIFTOOL),
    crash_points=(
        "after_imagga_answer",
        "after_keywords_written",
        "after_grouping_requested",
        "after_index_training_requested",  # naming a person (`orchestrator people`)
    ),
    details=TagDetails,
)
