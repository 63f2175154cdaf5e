"""Stages: download the edits or the exports, each verified, renamed atomically, checkpointed."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path, PurePath

from orchestrator.crashpoints import crash_point
from orchestrator.imagen.files import UnsafeFileName
from orchestrator.imagen.models import DownloadLink
from orchestrator.retry import RetriesExhausted
from orchestrator.spec import JobSpec
from orchestrator.states import JobState
from orchestrator.store.queries import PhaseDone, PhotoRecord
from orchestrator.transfer.errors import OutputInTheWay, OutputUnwritable, TransferError
from orchestrator.transfer.localfiles import written_before
from orchestrator.workflow.context import JobContext, JobFailed, JobPaused
from orchestrator.workflow.outputs import EDITS, EXPORTS, Outputs, Places, wants_export
from orchestrator.workflow.photos import PhotoFailed, PhotoRun, photo_run
from orchestrator.workflow.retries import RetryTally
from orchestrator.workflow.shoot_record import read_record
from orchestrator.workflow.stage import Labels, Stage

NAMES_NOTED = 5
"""Names quoted in one note about an odd answer before the rest are only counted."""

Work = tuple[PhotoRecord, str]
"""A photo and the name of its output to fetch."""


class LinkList:
    """The project's download links, fetched again (once per burst) when they expire."""

    def __init__(self, ctx: JobContext, outputs: Outputs) -> None:
        self._ctx = ctx
        self._outputs = outputs
        self._links: dict[str, str] = {}
        self._generation = 0
        self._lock = asyncio.Lock()

    async def fetch(self) -> list[DownloadLink]:
        """Ask Imagen for the links of every output."""
        links = await self._outputs.links(self._ctx.services.imagen, self._ctx.project_uuid)
        self._links = {link.file_name: link.download_link for link in links}
        self._generation += 1
        return links

    async def link(self, file_name: str, refresh: bool, seen: list[int]) -> str:
        """The link of one output; `seen` holds the generation the caller last used."""
        if refresh:
            async with self._lock:
                if seen[0] == self._generation:
                    await self.fetch()
        seen[0] = self._generation
        return self._links[file_name]


async def download_outputs(ctx: JobContext, outputs: Outputs) -> None:
    """Download every output not yet checkpointed, then finish the stage."""
    if ctx.state == ctx.stage.states[0]:
        await ctx.advance(ctx.stage.states[1])
    phase = outputs.phase
    places = Places(Path(outputs.folder(ctx.job)), Path(ctx.job.source), ctx.spec.outputs, phase)
    links = LinkList(ctx, outputs)
    available = await links.fetch()
    photos = await ctx.store.photos(ctx.job.id)
    work, unmatched = _match(photos, available)
    todo = [(p, name) for p, name in work if not _already_there(places, p, name)]
    guard = None if await _follows_earlier_jobs(ctx) else ctx.job.created_at.timestamp()
    retries = RetryTally()
    if len(todo) < len(work):
        await ctx.event(
            "resume",
            f"{len(work) - len(todo)} {phase} outputs already downloaded; {len(todo)} to go",
        )
    ctx.progress.stage_started(ctx.label, outputs.stage, files=len(todo), total_bytes=None)
    async with photo_run(
        ctx, phase=phase, progress_stage=outputs.stage, photo_id=_photo_id, describe=_describe
    ) as run:
        matched = {p.id for p, _ in work}
        # A photo whose output Imagen does not list is lost unless someone acts: it fails the
        # stage (so the job is not completed without it), and `retry` asks for the links again.
        missing = [p for p in photos if p.id not in matched and not p.done(phase)]
        reason = f"Imagen returned no {phase} output"
        for photo in missing:
            await run.failed((photo, photo.file_name), reason)
        if unmatched:
            shown = ", ".join(unmatched[:NAMES_NOTED]) + (
                " …" if len(unmatched) > NAMES_NOTED else ""
            )
            await ctx.event(
                "note",
                f"Imagen returned {len(unmatched)} {phase} outputs that match no photo (or a "
                f"photo twice); skipped: {shown}",
                count=len(unmatched),
            )
        failures = [f"{p.rel_path}: {reason}" for p in missing] + await run.run(
            todo,
            lambda item: _download_one(ctx, links, run, places, outputs, item, guard, retries),
        )
    ctx.progress.stage_finished(ctx.label, outputs.stage)
    await retries.record(ctx, outputs.stage)
    if failures:
        raise JobFailed(
            f"{len(failures)} {phase} downloads failed (first: "
            f"{failures[0]}); `orchestrator retry` fetches only those"
        )
    await ctx.finish_stage(f"{phase} outputs downloaded")


def _photo_id(item: Work) -> int:
    return item[0].id


def _describe(item: Work) -> str:
    return item[0].rel_path


def _match(
    photos: Sequence[PhotoRecord], links: Sequence[DownloadLink]
) -> tuple[list[Work], list[str]]:
    """Pair each output with its photo by file stem (IMG_1.CR2 -> IMG_1.xmp)."""
    by_stem = {PurePath(p.file_name).stem.lower(): p for p in photos}
    matched: list[Work] = []
    unmatched: list[str] = []
    for link in links:
        photo = by_stem.pop(PurePath(link.file_name).stem.lower(), None)
        if photo is None:
            unmatched.append(link.file_name)
        else:
            matched.append((photo, link.file_name))
    return matched, unmatched


def _already_there(places: Places, photo: PhotoRecord, name: str) -> bool:
    """A checkpointed output that is still on disk at its recorded size is not fetched again."""
    record = photo.phase(places.phase)
    if record is None or record.done_at is None:
        return False
    try:
        return places.of(photo, name).stat().st_size == record.size
    except (OSError, UnsafeFileName):
        return False


async def _download_one(
    ctx: JobContext,
    links: LinkList,
    run: PhotoRun[Work],
    places: Places,
    outputs: Outputs,
    item: Work,
    older_than: float | None,
    retries: RetryTally,
) -> PhaseDone:
    """Fetch one output; a file already at its place from before `older_than` (the job's
    start) is not ours and is never replaced (a sidecar beside its RAW is kept as .orig)."""
    photo, name = item
    try:
        target = places.of(photo, name)
    except UnsafeFileName as exc:
        raise PhotoFailed(f"refused, {exc}") from exc
    beside = places.beside(target.name)
    if beside:
        await _keep_existing_sidecar(ctx, target, earlier_jobs=older_than is None)
    seen = [0]
    try:
        result = await ctx.services.transfers.download(
            link=lambda refresh: links.link(name, refresh, seen),
            folder=target.parent,
            file_name=target.name,
            input_size=photo.size,
            keep_older_than=None if beside else older_than,
            on_bytes=lambda n: _received(ctx, outputs, n),
            on_retry=retries.heard,
        )
    except OutputInTheWay as exc:
        raise PhotoFailed(
            f"{target} was there before this job and is not replaced: move it (or its "
            f"folder) away, then `orchestrator retry {ctx.job.id[:8]}`"
        ) from exc
    except OutputUnwritable as exc:
        raise JobPaused(f"{exc}. Free space or fix permissions, then run again") from exc
    except (TransferError, RetriesExhausted) as exc:
        raise PhotoFailed.of_transfer(exc) from exc
    crash_point("after_download")
    if result.resumed_from and result.attempts:
        await ctx.event(
            "resume",
            f"{photo.rel_path}: continued the interrupted download of its {outputs.phase} "
            f"output from byte {result.resumed_from} of {result.size}",
        )
    return PhaseDone(outputs.phase, output=name, size=result.size, md5=result.md5_hex)


async def _keep_existing_sidecar(ctx: JobContext, target: Path, *, earlier_jobs: bool) -> None:
    """Before a sidecar is written beside its RAW, keep the one already there (Lightroom's, or
    the photographer's) as NAME.orig; refuse when both exist and no earlier job of this shoot
    explains the sidecar (it would be lost)."""
    kept = target.with_name(target.name + ".orig")
    started = ctx.job.created_at.timestamp()
    if not await asyncio.to_thread(written_before, target, started):
        return
    if await asyncio.to_thread(os.path.lexists, kept):
        if earlier_jobs:
            return  # ours, from the earlier edit; the photographer's own is safe in .orig
        raise PhotoFailed(
            f"{target} and {kept.name} both exist: move one of them away (nothing is "
            f"overwritten without a copy), then `orchestrator retry {ctx.job.id[:8]}`"
        )
    await asyncio.to_thread(_copy, target, kept)
    await ctx.event("output", f"kept the sidecar that was there as {kept}")


def _copy(source: Path, copy: Path) -> None:
    """A copy that survives the source being replaced: a hard link, or bytes if none."""
    try:
        os.link(source, copy, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, copy, follow_symlinks=False)


async def _follows_earlier_jobs(ctx: JobContext) -> bool:
    """Whether an earlier job edited this shoot (its record or the database says so): the
    outputs in the folder are then ours, from an edit this job was asked (`run --again`, or
    after a cancel) to do over."""
    record = await asyncio.to_thread(read_record, Path(ctx.job.source))
    earlier = [job.created_at for job in record.jobs if job.job_id != ctx.job.id]
    earlier += [
        job.created_at
        for job in await ctx.store.jobs_for_source(ctx.job.source)
        if job.id != ctx.job.id
    ]
    return any(moment < ctx.job.created_at for moment in earlier)


def _received(ctx: JobContext, outputs: Outputs, nbytes: int) -> None:
    ctx.progress.advanced(ctx.label, outputs.stage, nbytes=nbytes)
    crash_point("mid_download")


def download_stage(
    outputs: Outputs, *, states: tuple[str, str], applies: Callable[[JobSpec], bool] | None = None
) -> Stage:
    """The stage that fetches `outputs`: entered in `states[0]`, working in `states[1]`."""

    async def step(ctx: JobContext) -> None:
        await download_outputs(ctx, outputs)

    return Stage(
        name=outputs.stage,
        states=states,
        step=step,
        phase=outputs.phase,
        applies=applies,
        labels=Labels(done=f"{outputs.phase}ed", phase=f"{outputs.phase} download"),
        crash_points=("mid_download", "before_rename", "after_download"),
    )


EDITS_STAGE = download_stage(EDITS, states=(JobState.EDITED, JobState.DOWNLOADING_EDITS))
EXPORTS_STAGE = download_stage(
    EXPORTS, states=(JobState.EXPORTED, JobState.DOWNLOADING_EXPORTS), applies=wants_export
)
