"""Stage: with `--review`, the job waits for a person to approve its keywords before delivery.

Waiting costs nothing, as an edit does: no task, no lease, only a wake-up in the database. The
decisions are recorded per photo in the `"tag"` phase's details (`TagDetails.approved`: true
to deliver it, false to hold it back) by `service/review.py`, for the web page and `orchestrator
approve`; the stage only looks whether every tagged photo has one, and moves on once it does.

Under `run` (the job is driven by the command) the job does not block the command: it stops in
`reviewing`, the command says how to approve it, and running the command again continues it.
"""

from __future__ import annotations

from orchestrator.spec import JobSpec
from orchestrator.states import JobState
from orchestrator.store.queries import PhaseDone, PhotoRecord
from orchestrator.words import plural
from orchestrator.workflow.context import JobContext, JobFailed, JobPaused, JobWaiting
from orchestrator.workflow.keywording import write_keywords
from orchestrator.workflow.photos import photo_run
from orchestrator.workflow.services import TAGGING
from orchestrator.workflow.stage import Stage
from orchestrator.workflow.tag_details import TAG_PHASE, TagDetails

RECHECK_SECONDS = 3600.0
"""How often a daemon looks at a job under review on its own: approval wakes it at once, this
only covers a wake-up that was lost."""


def undecided(photos: list[PhotoRecord]) -> list[PhotoRecord]:
    """The tagged photos still waiting for a decision."""
    return [
        photo
        for photo in photos
        if (details := TagDetails.of(photo)) is not None and details.approved is None
    ]


def wants_review(spec: JobSpec) -> bool:
    """Whether the job asked to be reviewed before delivery."""
    return spec.review


async def wait_for_review(ctx: JobContext) -> None:
    """Move on once every tagged photo is decided; until then sleep in the database."""
    photos = await ctx.store.photos(ctx.job.id)
    waiting = undecided(photos)
    if not waiting:
        await _write_reviewed_keywords(ctx, photos)
        decisions = [d for p in photos if (d := TagDetails.of(p)) is not None]
        approved = sum(d.approved is True for d in decisions)
        held = len(decisions) - approved
        message = f"review done: {plural(approved, 'photo')} approved" + (
            f", {held} held back" if held else ""
        )
        await ctx.finish_stage(message if decisions else "review: no photo was tagged")
        return
    ctx.note(
        f"waiting for review of {plural(len(waiting), 'photo')}: open the web page "
        "(`orchestrator ui`) "
        f"or run `orchestrator approve {ctx.job.id[:8]}`"
    )
    raise JobWaiting(0.0 if ctx.config.wait_inline else RECHECK_SECONDS)


async def _write_reviewed_keywords(ctx: JobContext, photos: list[PhotoRecord]) -> None:
    """Put the keywords a reviewer changed into the photos' files, then record that they are.

    Delivery sends the files as they are on disk, so the review must be in them first.
    """
    changed = [
        (p, d)
        for p in photos
        if (d := TagDetails.of(p)) is not None and d.written_keywords is not None and d.files
    ]
    if not changed:
        return
    tagging = ctx.services.find(TAGGING)
    if tagging is None:
        raise JobPaused(
            "the reviewed keywords cannot be written into the files: the keyword "
            "writer is not set up (IMAGGA_API_KEY and exiftool); set it up and "
            "run again"
        )
    ctx.progress.stage_started(ctx.label, "review", files=len(changed), total_bytes=None)
    async with photo_run(
        ctx, phase=TAG_PHASE, progress_stage="review", photo_id=_photo_id, describe=_describe
    ) as run:

        async def write(item: tuple[PhotoRecord, TagDetails]) -> PhaseDone:
            photo, details = item
            on_disk = details.model_copy(
                update={"keywords": details.written_keywords, "written_keywords": None}
            )
            written = await write_keywords(tagging.files, ctx.job, on_disk, details.keywords)
            record = photo.phase(TAG_PHASE)
            return PhaseDone(
                TAG_PHASE,
                output=record.output if record else None,
                md5=written.content_md5,
                details=written.stored(),
            )

        failures = await run.run(changed, write)
    ctx.progress.stage_finished(ctx.label, "review")
    if failures:
        raise JobFailed(
            f"{len(failures)} photos' reviewed keywords could not be written "
            f"(first: {failures[0]}); fix the cause, then `orchestrator retry`"
        )
    await ctx.event(
        "review", f"reviewed keywords written into the files of {plural(len(changed), 'photo')}"
    )


def _photo_id(item: tuple[PhotoRecord, TagDetails]) -> int:
    return item[0].id


def _describe(item: tuple[PhotoRecord, TagDetails]) -> str:
    return item[0].rel_path


STAGE = Stage(
    name="review",
    states=(JobState.REVIEWING,),
    step=wait_for_review,
    applies=wants_review,
    waiting=frozenset({JobState.REVIEWING}),
)
