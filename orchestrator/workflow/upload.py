"""Stage: every photo hashed, given a presigned link and uploaded, each checkpointed alone."""

from __future__ import annotations

import asyncio
import binascii
from collections.abc import Sequence
from pathlib import Path

from orchestrator.crashpoints import crash_point
from orchestrator.retry import RetriesExhausted
from orchestrator.store.models import Photo
from orchestrator.transfer.errors import SourceChanged, TransferError
from orchestrator.transfer.hashing import file_md5, md5_base64
from orchestrator.workflow.context import JobContext, JobFailed
from orchestrator.workflow.pool import ItemFailed, run_pool
from orchestrator.workflow.states import JobState

HASH_WORKERS = 2
"""Photos hashed at once: hashing is disk-bound, more readers only thrash the disk."""


class LinkBook:
    """Presigned upload links, asked for in batches just before they are needed."""

    def __init__(self, ctx: JobContext, photos: Sequence[Photo]) -> None:
        self._ctx = ctx
        size = ctx.config.link_batch_size
        self._batch_of = {p.file_name: i // size for i, p in enumerate(photos)}
        self._batches = [photos[i:i + size] for i in range(0, len(photos), size)]
        self._links: dict[int, asyncio.Task[dict[str, str]]] = {}

    async def link(self, photo: Photo, refresh: bool) -> str:
        """The upload link of one photo; a fresh one of its own when `refresh` is set."""
        if refresh:
            fresh = await self._request([photo])
            return fresh[photo.file_name]
        index = self._batch_of[photo.file_name]
        if index not in self._links:
            self._links[index] = asyncio.ensure_future(self._request(self._batches[index]))
        return (await self._links[index])[photo.file_name]

    async def _request(self, photos: Sequence[Photo]) -> dict[str, str]:
        files = [(p.file_name, _b64(p.md5)) for p in photos]
        links = await self._ctx.client.upload_links(self._ctx.project_uuid, files)
        return {link.file_name: link.upload_link for link in links}

    def close(self) -> None:
        """Cancel batch requests nobody waits for any more."""
        for task in self._links.values():
            task.cancel()


def _b64(md5_hex: str | None) -> str | None:
    return md5_base64(binascii.unhexlify(md5_hex)) if md5_hex else None


async def upload_photos(ctx: JobContext) -> None:
    """Upload what is left, then move to `uploaded` only if every photo made it."""
    if ctx.state is JobState.PROJECT_CREATED:
        await ctx.advance(JobState.UPLOADING)
    source = Path(ctx.job.source)
    photos = await _check_sources(ctx, source, await ctx.store.photos(ctx.job.id))
    await _hash_missing(ctx, source, photos)
    photos = await ctx.store.photos(ctx.job.id)
    pending = [p for p in photos if p.uploaded_at is None]
    total = sum(p.size for p in pending)
    ctx.progress.stage_started(ctx.label, "upload", files=len(pending), total_bytes=total)
    if len(pending) < len(photos):
        await ctx.event("resume", f"{len(photos) - len(pending)} photos already uploaded; "
                        f"{len(pending)} to go")
    book = LinkBook(ctx, pending)
    try:
        failures = await run_pool(pending, lambda p: _upload_one(ctx, source, book, p),
                                  workers=ctx.config.workers)
    finally:
        book.close()
    ctx.progress.stage_finished(ctx.label, "upload")
    if failures:
        raise JobFailed(f"{len(failures)} of {len(photos)} photos could not be uploaded "
                        f"(first: {failures[0]}); the edit waits until every photo is up. "
                        "Fix the cause, then `orchestrator retry`")
    await ctx.advance(JobState.UPLOADED, f"all {len(photos)} photos uploaded")


async def _check_sources(ctx: JobContext, source: Path, photos: list[Photo]) -> list[Photo]:
    """Notice photos that changed or vanished since they were recorded."""
    vanished: list[int] = []
    for photo in photos:
        path = source / photo.rel_path
        try:
            stat = path.stat()
        except FileNotFoundError:
            if photo.uploaded_at is None:
                vanished.append(photo.id)
                ctx.note(f"{photo.rel_path} is gone from the folder; leaving it out", level="warn")
            else:
                await ctx.event("source", f"{photo.rel_path} was removed after its upload; "
                                "Imagen keeps the uploaded copy")
            continue
        if (stat.st_size, stat.st_mtime_ns) != (photo.size, photo.mtime_ns):
            # Not edited yet, so send the new version: the edit must not mix versions.
            ctx.note(f"{photo.rel_path} changed since it was recorded; it will be sent again",
                     level="warn")
            await ctx.event("source", f"{photo.rel_path} changed (size {photo.size} -> "
                            f"{stat.st_size}); hashing and uploading the new version")
            if photo.uploaded_at is not None:
                await ctx.store.forget_upload(ctx.lease, photo.id)
            await ctx.store.set_photo_source(ctx.lease, photo.id, md5="", size=stat.st_size,
                                             mtime_ns=stat.st_mtime_ns)
    if vanished:
        await ctx.store.remove_photos(ctx.lease, vanished)
        await ctx.event("source", f"{len(vanished)} photos vanished before upload; left out")
    remaining = await ctx.store.photos(ctx.job.id)
    if not remaining:
        raise JobFailed("every photo of the job has vanished from the folder")
    return remaining


async def _hash_missing(ctx: JobContext, source: Path, photos: list[Photo]) -> None:
    todo = [p for p in photos if not p.md5 and p.uploaded_at is None]
    if not todo:
        return
    ctx.progress.stage_started(ctx.label, "hash", files=len(todo),
                               total_bytes=sum(p.size for p in todo))

    async def hash_one(photo: Photo) -> None:
        try:
            digest = await file_md5(source / photo.rel_path)
        except OSError as exc:
            raise ItemFailed(f"{photo.rel_path}: {exc.strerror or exc}") from exc
        await ctx.store.set_photo_source(ctx.lease, photo.id, md5=digest.hex(), size=photo.size,
                                         mtime_ns=photo.mtime_ns)
        ctx.progress.advanced(ctx.label, "hash", files=1, nbytes=photo.size)

    failures = await run_pool(todo, hash_one, workers=HASH_WORKERS)
    ctx.progress.stage_finished(ctx.label, "hash")
    if failures:
        raise JobFailed(f"could not read {len(failures)} photos (first: {failures[0]})")


async def _upload_one(ctx: JobContext, source: Path, book: LinkBook, photo: Photo) -> None:
    path = source / photo.rel_path
    last = ""
    for attempt in range(1, ctx.config.photo_attempts + 1):
        try:
            await ctx.transfers.upload(
                path, link=lambda refresh: book.link(photo, refresh), size=photo.size,
                md5=binascii.unhexlify(photo.md5) if photo.md5 else None,
                on_bytes=lambda n: _sent(ctx, n))
        except SourceChanged as exc:
            raise JobFailed(f"{photo.rel_path} changed during the upload; run again to send "
                            "the new version", back_to=JobState.UPLOADING) from exc
        except (TransferError, RetriesExhausted) as exc:
            last = str(exc)
            await ctx.event("retry", f"upload of {photo.rel_path} failed: {last}",
                            attempt=attempt)
            continue
        crash_point("after_upload")
        await ctx.store.mark_uploaded(ctx.lease, photo.id)
        ctx.progress.advanced(ctx.label, "upload", files=1)
        return
    await ctx.store.mark_photo_failed(ctx.lease, photo.id, "upload", last)
    raise PhotoFailed(f"{photo.rel_path}: {last}")


def _sent(ctx: JobContext, nbytes: int) -> None:
    ctx.progress.advanced(ctx.label, "upload", nbytes=nbytes)
    crash_point("mid_upload")


class PhotoFailed(ItemFailed):
    """One photo's phase failed for good; the stage goes on with the others."""
