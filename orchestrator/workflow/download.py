"""Stages: download the edits or the exports, each verified, renamed atomically, checkpointed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

from orchestrator.crashpoints import crash_point
from orchestrator.imagen.files import UnsafeFileName, safe_output_path
from orchestrator.imagen.models import DownloadLink
from orchestrator.retry import RetriesExhausted
from orchestrator.store.models import Photo
from orchestrator.store.queries import failure_checkpoint, output_checkpoint
from orchestrator.transfer.errors import OutputUnwritable, TransferError, TransferRefused
from orchestrator.workflow.checkpoints import PhotoCheckpoints, photo_checkpoints
from orchestrator.workflow.context import JobContext, JobFailed, JobPaused
from orchestrator.workflow.pool import ItemFailed, run_pool
from orchestrator.workflow.states import JobState


@dataclass(frozen=True)
class Outputs:
    """Which outputs a download stage fetches, where they go and what it moves to next."""

    phase: str
    stage: str
    downloading: JobState


EDITS = Outputs("edit", "download_edits", JobState.DOWNLOADING_EDITS)
EXPORTS = Outputs("export", "download_exports", JobState.DOWNLOADING_EXPORTS)


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
        uuid = self._ctx.project_uuid
        client = self._ctx.client
        links = await (client.edit_download_links(uuid) if self._outputs is EDITS
                       else client.export_download_links(uuid))
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
    """Download every output not yet checkpointed, then move the job on."""
    previous = {JobState.DOWNLOADING_EDITS: JobState.EDITED,
                JobState.DOWNLOADING_EXPORTS: JobState.EXPORTED}[outputs.downloading]
    if ctx.state is previous:
        await ctx.advance(outputs.downloading)
    folder = Path(ctx.job.edited_dir if outputs is EDITS else ctx.job.exported_dir)
    links = LinkList(ctx, outputs)
    available = await links.fetch()
    photos = await ctx.store.photos(ctx.job.id)
    work, unmatched = _match(photos, available, outputs.phase)
    todo = [(p, name) for p, name in work if not _already_there(folder, p, name, outputs.phase)]
    if len(todo) < len(work):
        await ctx.event("resume", f"{len(work) - len(todo)} {outputs.phase} outputs already "
                        f"downloaded; {len(todo)} to go")
    ctx.progress.stage_started(ctx.label, outputs.stage, files=len(todo), total_bytes=None)
    async with photo_checkpoints(ctx.store, ctx.lease) as checkpoints:
        matched = {p.id for p, _ in work}
        missing = [p for p in photos if p.id not in matched and not _done(p, outputs.phase)]
        for photo in missing:
            await _photo_failed(ctx, checkpoints, photo, outputs.phase,
                                f"Imagen returned no {outputs.phase} output")
        for name in unmatched:
            await ctx.event("note", f"Imagen returned {name}, which matches no photo; skipped")

        async def fetch_one(item: tuple[Photo, str]) -> None:
            async with ctx.photo_slots:
                await _download_one(ctx, links, checkpoints, folder, outputs, *item)

        failures = await run_pool(todo, fetch_one, workers=ctx.config.workers)
    ctx.progress.stage_finished(ctx.label, outputs.stage)
    if failures:
        raise JobFailed(f"{len(failures)} {outputs.phase} downloads failed (first: "
                        f"{failures[0]}); `orchestrator retry` fetches only those")
    await ctx.advance(_next_state(ctx, outputs), f"{outputs.phase} outputs downloaded")


def _next_state(ctx: JobContext, outputs: Outputs) -> JobState:
    if outputs is EDITS and ctx.wants_export:
        return JobState.EXPORT_REQUESTED
    return JobState.COMPLETED


def _match(photos: Sequence[Photo], links: Sequence[DownloadLink],
           phase: str) -> tuple[list[tuple[Photo, str]], list[str]]:
    """Pair each output with its photo by file stem (IMG_1.CR2 -> IMG_1.xmp)."""
    by_stem = {PurePath(p.file_name).stem.lower(): p for p in photos}
    matched: list[tuple[Photo, str]] = []
    unmatched: list[str] = []
    for link in links:
        photo = by_stem.pop(PurePath(link.file_name).stem.lower(), None)
        if photo is None:
            unmatched.append(link.file_name)
        else:
            matched.append((photo, link.file_name))
    return matched, unmatched


def _done(photo: Photo, phase: str) -> bool:
    return (photo.edit_done_at if phase == "edit" else photo.export_done_at) is not None


def _already_there(folder: Path, photo: Photo, name: str, phase: str) -> bool:
    """A checkpointed output that is still on disk at its recorded size is not fetched again."""
    if not _done(photo, phase):
        return False
    size = photo.edit_size if phase == "edit" else photo.export_size
    try:
        return (folder / name).stat().st_size == size
    except OSError:
        return False


async def _download_one(ctx: JobContext, links: LinkList, checkpoints: PhotoCheckpoints,
                        folder: Path, outputs: Outputs, photo: Photo, name: str) -> None:
    try:
        safe_output_path(folder, name)
    except UnsafeFileName as exc:
        await _photo_failed(ctx, checkpoints, photo, outputs.phase, str(exc))
        raise ItemFailed(f"{name}: refused, {exc}") from exc
    seen = [0]
    last = ""
    for attempt in range(1, ctx.config.photo_attempts + 1):
        try:
            result = await ctx.transfers.download(
                link=lambda refresh: links.link(name, refresh, seen), folder=folder,
                file_name=name, input_size=photo.size,
                on_bytes=lambda n: _received(ctx, outputs, n))
        except OutputUnwritable as exc:
            raise JobPaused(f"{exc}. Free space or fix permissions, then run again") from exc
        except TransferRefused as exc:
            last = str(exc)  # asking again gets the same answer
            break
        except (TransferError, RetriesExhausted) as exc:
            last = str(exc)
            await ctx.event("retry", f"download of {name} failed: {last}", attempt=attempt)
            continue
        crash_point("after_download")
        await checkpoints.commit(photo.id, output_checkpoint(
            outputs.phase, name=name, size=result.size, md5=result.md5_hex))
        if result.resumed_from and result.attempts:
            await ctx.event("resume", f"{name}: continued an interrupted download from byte "
                            f"{result.resumed_from} of {result.size}")
        ctx.progress.advanced(ctx.label, outputs.stage, files=1)
        return
    await _photo_failed(ctx, checkpoints, photo, outputs.phase, last)
    raise ItemFailed(f"{name}: {last}")


async def _photo_failed(ctx: JobContext, checkpoints: PhotoCheckpoints, photo: Photo,
                        phase: str, reason: str) -> None:
    """Record that the photo's output failed for good, in the photo and in the history."""
    await checkpoints.commit(photo.id, failure_checkpoint(phase, reason))
    await ctx.event("error", f"{phase} output of {photo.rel_path} failed: {reason}")
    ctx.note(f"{phase} output of {photo.rel_path} failed: {reason}", level="warn")


def _received(ctx: JobContext, outputs: Outputs, nbytes: int) -> None:
    ctx.progress.advanced(ctx.label, outputs.stage, nbytes=nbytes)
    crash_point("mid_download")
