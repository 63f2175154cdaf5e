"""Stage: every photo hashed, given a presigned link and uploaded, each checkpointed alone."""

from __future__ import annotations

import asyncio
import binascii
import os
from collections.abc import Sequence
from pathlib import Path

from orchestrator.crashpoints import crash_point
from orchestrator.imagen.models import ImageType
from orchestrator.retry import RetriesExhausted
from orchestrator.states import JobState
from orchestrator.store.queries import PhaseDone, PhotoRecord, SourceCheckpoint
from orchestrator.transfer.errors import SourceChanged, TransferError
from orchestrator.transfer.hashing import (
    DEFAULT_CHUNK,
    SMALL_FILE,
    file_md5,
    md5_base64,
    new_md5,
    read_whole,
)
from orchestrator.words import plural
from orchestrator.workflow.context import JobContext, JobFailed
from orchestrator.workflow.photos import PhotoFailed, PhotoRun, photo_run
from orchestrator.workflow.pool import run_pool
from orchestrator.workflow.retries import RetryTally
from orchestrator.workflow.shoot import ShootError, match_renamed, scan_shoot
from orchestrator.workflow.stage import Labels, Stage

PHASE = "upload"
"""The per-photo phase this stage records."""
HASH_WORKERS = 1
"""Photos hashed at once: hashing is disk-bound, more readers only thrash the disk."""
HASH_AHEAD_BYTES = 256 * 1024 * 1024
"""Most bytes of photos hashed before their upload started: far enough ahead that no upload
waits for its hash, near enough that the photos are still in the page cache when sent."""
LINK_WAIT_BYTES = 16 * 1024 * 1024
"""Most bytes of photos not hashed yet that a links request waits for (hashing them takes some
20 ms): enough for a full batch of small JPEGs, so a shoot of them needs few requests, while a
large photo's upload never waits for the hashes of the next ones."""
SMALL_FILES_PER_TRIP = 64
"""Small photos hashed in one trip to a worker thread."""
NAMES_NOTED = 5
"""Names quoted in one note about an odd answer before the rest are only counted."""
RESENDS_AFTER_CHANGE = 3
"""How often a photo that changed while it was sent is read again and sent again."""
LEFT_OUT = "left_out"
"""History kind naming photos that were gone before their upload (`data.photos`): the job's
result lists them, so a job never completes silently without photos it was given."""
ADDED_LATE = "added_late"
"""History kind naming photos found in the shoot after its upload (`data.photos`): not part
of the job (Imagen edits what it was sent), listed by its result so that none is lost."""
REFUSED = "refused"
"""History kind naming files of the shoot that are not sent, each with why (`data.files`:
`{"path", "reason"}`): an empty RAW, a JPEG named .CR2; listed by the job's result."""


class LinkBook:
    """Presigned upload links, asked for just before they are needed, in batches that grow.

    The first photo's link is asked for alone, so that its bytes leave as soon as it is hashed;
    each later request takes the photo that needs a link and the photos after it, twice as many
    as the one before up to `link_batch_size`: a shoot of tiny photos needs about as few
    requests as with fixed batches. A request waits for the hashes of the photos it takes only
    while they add up to LINK_WAIT_BYTES; past that it takes only photos already hashed.
    """

    def __init__(self, ctx: JobContext, photos: Sequence[PhotoRecord], hashes: HashAhead) -> None:
        self._ctx = ctx
        self._photos = list(photos)
        self._position = {p.id: i for i, p in enumerate(self._photos)}
        self._hashes = hashes
        self._next_size = 1
        self._links: dict[int, asyncio.Task[dict[str, str]]] = {}
        self._odd_noted = False
        """Odd answers are noted once per stage, however many requests they come back on."""

    async def link(self, photo: PhotoRecord, refresh: bool) -> str:
        """The upload link of one photo; a fresh one of its own when `refresh` is set."""
        if refresh:
            links = await self._request([photo])
        else:
            if photo.id not in self._links:
                batch = self._batch_from(photo)
                task = asyncio.ensure_future(self._request_when_hashed(batch))
                for member in batch:
                    self._links[member.id] = task
            links = await self._links[photo.id]
        if photo.file_name not in links:
            raise PhotoFailed("Imagen gave no upload link for it; `orchestrator retry` asks again")
        return links[photo.file_name]

    def _batch_from(self, photo: PhotoRecord) -> list[PhotoRecord]:
        """The photo, then those after it that have no link yet, as many as the batch takes."""
        batch = [photo]
        waits_for = 0
        for later in self._photos[self._position[photo.id] + 1 :]:
            if len(batch) == self._next_size or later.id in self._links:
                break
            if not later.md5:
                waits_for += later.size
                if waits_for > LINK_WAIT_BYTES:
                    break
            batch.append(later)
        self._next_size = min(self._next_size * 2, self._ctx.config.link_batch_size)
        return batch

    async def _request_when_hashed(self, batch: list[PhotoRecord]) -> dict[str, str]:
        # Photos that turn out unreadable fail before they would ask for their link.
        ready = [p for p in batch if await self._hashes.wait(p) is None]
        return await self._request(ready)

    async def _request(self, photos: Sequence[PhotoRecord]) -> dict[str, str]:
        files = [(p.file_name, _b64(p.md5)) for p in photos]
        answered = await self._ctx.services.imagen.upload_links(self._ctx.project_uuid, files)
        asked = {p.file_name for p in photos}
        links: dict[str, str] = {}
        odd: list[str] = []
        for link in answered:
            if link.file_name not in asked or link.file_name in links:
                odd.append(link.file_name)  # a name we did not ask for, or a second link
                continue
            links[link.file_name] = link.upload_link
        if odd and not self._odd_noted:
            self._odd_noted = True
            await self._ctx.event(
                "note",
                f"Imagen answered {len(odd)} upload links for names it was not asked for or "
                f"twice; ignored: {_names(odd)} (later answers like it are not noted again)",
                count=len(odd),
            )
        return links

    def close(self) -> None:
        """Cancel batch requests nobody waits for any more."""
        for task in set(self._links.values()):
            task.cancel()


class HashAhead:
    """The photos' MD5s, computed in upload order while the photos before them are on the wire.

    Content-MD5 must be known before a PUT starts, so each upload waits for its own photo's
    hash, and only for that one. The hashing runs at most `HASH_AHEAD_BYTES` (and enough photos
    for a full batch of links) ahead of the uploads started, so the photos are still in the page
    cache when they are sent. Hashes are saved without waiting (a hash lost in a crash is only
    computed again) and a resumed job reuses the ones it stored.
    """

    def __init__(
        self,
        ctx: JobContext,
        source: Path,
        photos: Sequence[PhotoRecord],
        run: PhotoRun[PhotoRecord],
    ) -> None:
        self._source = source
        self._run = run
        self._todo = [p for p in photos if not p.md5]
        self._ahead_photos = 2 * ctx.config.link_batch_size
        self._hashed: dict[int, asyncio.Future[str | None]] = {
            p.id: asyncio.get_running_loop().create_future() for p in self._todo
        }
        self._reserved: set[int] = set()
        self._taken: set[int] = set()
        self._ahead_bytes = 0
        self._ahead_count = 0
        self._moved = asyncio.Event()

    async def take(self, photo: PhotoRecord) -> str | None:
        """The photo's upload starts: wait for its MD5; why it cannot be read, if it cannot."""
        self._taken.add(photo.id)
        if photo.id in self._reserved:
            self._ahead_bytes -= photo.size
            self._ahead_count -= 1
            self._moved.set()
        return await self.wait(photo)

    async def wait(self, photo: PhotoRecord) -> str | None:
        """Wait until the photo's MD5 is known; why it cannot be read, if it cannot."""
        waiting = self._hashed.get(photo.id)
        return None if waiting is None else await asyncio.shield(waiting)

    async def run(self) -> None:
        """Hash every photo that needs it, in upload order, keeping within the read-ahead."""
        await run_pool(_hash_groups(self._todo), self._hash_group, workers=HASH_WORKERS)

    async def _make_room(self, group: list[PhotoRecord]) -> None:
        while self._ahead_count and (
            self._ahead_bytes >= HASH_AHEAD_BYTES or self._ahead_count >= self._ahead_photos
        ):
            self._moved.clear()
            await self._moved.wait()
        for photo in group:
            self._reserved.add(photo.id)
            if photo.id not in self._taken:
                self._ahead_bytes += photo.size
                self._ahead_count += 1

    async def _hash_group(self, group: list[PhotoRecord]) -> None:
        await self._make_room(group)
        if len(group) == 1 and group[0].size > SMALL_FILE:
            try:
                path = self._source / group[0].rel_path
                digest = await file_md5(path, chunk_size=_chunk_for(group[0].size))
                results: list[str | OSError] = [digest.hex()]
            except OSError as exc:
                results = [exc]
        else:
            results = await asyncio.to_thread(
                _md5_of_small_files, [self._source / p.rel_path for p in group]
            )
        for photo, result in zip(group, results, strict=True):
            if isinstance(result, OSError):
                self._hashed[photo.id].set_result(f"cannot read it: {result.strerror or result}")
                continue
            self._run.checkpoints.save(
                photo.id, SourceCheckpoint(md5=result, size=photo.size, mtime_ns=photo.mtime_ns)
            )
            photo.md5 = result
            self._hashed[photo.id].set_result(None)


def _names(names: Sequence[str]) -> str:
    """A few names for a note, outside text made inert by the display when shown."""
    return ", ".join(names[:NAMES_NOTED]) + (" …" if len(names) > NAMES_NOTED else "")


def _b64(md5_hex: str | None) -> str | None:
    return md5_base64(binascii.unhexlify(md5_hex)) if md5_hex else None


async def upload_photos(ctx: JobContext) -> None:
    """Upload what is left, then finish the stage only if every photo made it.

    A photo that cannot be read or keeps failing is marked failed and the others go on; the
    stage then fails as a whole, because the edit must never start on a partial upload.
    """
    if ctx.state == JobState.PROJECT_CREATED:
        await ctx.advance(JobState.UPLOADING)
    source = Path(ctx.job.source)
    photos = await _check_sources(ctx, source, await ctx.store.photos(ctx.job.id))
    async with photo_run(
        ctx, phase=PHASE, progress_stage="upload", photo_id=_photo_id, describe=_describe
    ) as run:
        pending = [p for p in photos if not p.done(PHASE)]
        total = sum(p.size for p in pending)
        ctx.progress.stage_started(ctx.label, "upload", files=len(pending), total_bytes=total)
        done_before = len(photos) - len(pending)
        if done_before:
            await ctx.event(
                "resume", f"{plural(done_before, 'photo')} already uploaded; {len(pending)} to go"
            )
        hashes = HashAhead(ctx, source, pending, run)
        book = LinkBook(ctx, pending, hashes)
        retries = RetryTally()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(hashes.run())
                failures = await run.run(
                    pending, lambda p: _upload_one(ctx, source, hashes, book, run, p, retries)
                )
        except BaseExceptionGroup as group_error:
            # The hashing's own failure (a full disk, the database gone), not a group of it.
            raise group_error.exceptions[0] from None
        finally:
            book.close()
    ctx.progress.stage_finished(ctx.label, "upload")
    await retries.record(ctx, "upload")
    if failures:
        raise JobFailed(
            f"{len(failures)} of {plural(len(photos), 'photo')} could not be uploaded "
            f"(first: {failures[0]}); the edit waits until every photo is up. "
            "Fix the cause, then `orchestrator retry`"
        )
    await ctx.finish_stage(f"uploaded: {plural(len(photos), 'photo')}, every one")


def _photo_id(photo: PhotoRecord) -> int:
    return photo.id


def _describe(photo: PhotoRecord) -> str:
    return photo.rel_path


async def _check_sources(
    ctx: JobContext, source: Path, photos: list[PhotoRecord]
) -> list[PhotoRecord]:
    """Notice photos that changed or vanished since they were recorded; the photos to upload.

    Size and mtime are compared for every photo (a stat, no reading). A photo whose mtime
    moved but whose size did not is hashed to tell a real change from a mere touch.
    """
    vanished: list[PhotoRecord] = []
    changed = False
    # Plain strings, not Paths: making 10,000 Paths took as long as the stats.
    paths = [os.path.join(source, photo.rel_path) for photo in photos]
    # One trip to a thread for all of them: on a network share 10,000 stats take a while.
    stats = await asyncio.to_thread(_stat_each, paths)
    for photo, path, stat in zip(photos, paths, stats, strict=True):
        if isinstance(stat, FileNotFoundError):
            if not photo.done(PHASE):
                vanished.append(photo)
            else:
                await ctx.event(
                    "source",
                    f"{photo.rel_path} was removed after its upload; "
                    "Imagen keeps the uploaded copy",
                )
            continue
        if isinstance(stat, OSError):
            # Unreadable now: hashing it again turns this into a per-photo failure with a reason.
            if not photo.done(PHASE) and photo.md5:
                await ctx.store.set_photo_source(
                    ctx.lease, photo.id, md5="", size=photo.size, mtime_ns=photo.mtime_ns
                )
                changed = True
            await ctx.event("source", f"cannot look at {photo.rel_path}: {stat.strerror or stat}")
            continue
        if (stat.st_size, stat.st_mtime_ns) == (photo.size, photo.mtime_ns):
            continue
        md5 = ""
        if stat.st_size == photo.size and photo.md5:
            md5 = await _md5_or_empty(Path(path), photo.size)
            if md5 == photo.md5:
                # Touched, not changed: remember the new mtime so it is not hashed again.
                await ctx.store.set_photo_source(
                    ctx.lease, photo.id, md5=md5, size=stat.st_size, mtime_ns=stat.st_mtime_ns
                )
                continue
        # Not edited yet, so send the new version: the edit must not mix versions.
        ctx.note(
            f"{photo.rel_path} changed since it was recorded; it will be sent again", level="warn"
        )
        await ctx.event(
            "source",
            f"{photo.rel_path} changed (size {photo.size} -> "
            f"{stat.st_size}); uploading the new version",
        )
        if photo.done(PHASE):
            await ctx.store.forget_phase(ctx.lease, photo.id, PHASE)
        await ctx.store.set_photo_source(
            ctx.lease, photo.id, md5=md5, size=stat.st_size, mtime_ns=stat.st_mtime_ns
        )
        changed = True
    if vanished:
        await _follow_or_leave_out(ctx, source, photos, vanished)
    remaining = await ctx.store.photos(ctx.job.id) if vanished or changed else photos
    if not remaining:
        raise JobFailed("every photo of the job has vanished from the folder")
    return remaining


async def _follow_or_leave_out(
    ctx: JobContext, source: Path, photos: list[PhotoRecord], vanished: list[PhotoRecord]
) -> None:
    """Photos gone before their upload: renamed ones keep their place under the new name, the
    others are left out of the job, recorded so that the job's result names them."""
    recorded = {p.rel_path for p in photos}
    try:
        scan = await asyncio.to_thread(scan_shoot, source)
        candidates = [
            p
            for p in scan.photos.get(ImageType(ctx.job.image_type), [])
            if p.rel_path not in recorded
        ]
    except ShootError:
        candidates = []
    stems = {Path(p.file_name).stem.lower(): p.id for p in photos}
    renamed = set()
    for old, new in match_renamed(vanished, candidates):
        if stems.get(Path(new.file_name).stem.lower(), old.id) != old.id:
            continue  # the new name would clash with another photo of the job
        await ctx.store.rename_photo(ctx.lease, old.id, new.rel_path, new.file_name)
        await ctx.event(
            "source", f"{old.rel_path} was renamed to {new.rel_path}; it is sent under its new name"
        )
        ctx.note(f"{old.rel_path} was renamed to {new.rel_path}; sending it as that")
        renamed.add(old.id)
    gone = [p for p in vanished if p.id not in renamed]
    if not gone:
        return
    for photo in gone:
        ctx.note(f"{photo.rel_path} is gone from the folder; it is left out", level="error")
    await ctx.store.remove_photos(ctx.lease, [p.id for p in gone])
    await ctx.event(
        LEFT_OUT,
        f"{plural(len(gone), 'photo')} gone from the folder before the upload; left out",
        photos=[p.rel_path for p in gone],
    )


def _stat_each(paths: list[str]) -> list[os.stat_result | OSError]:
    """Each file's stat, or why it cannot be had; runs in a worker thread."""
    results: list[os.stat_result | OSError] = []
    for path in paths:
        try:
            results.append(os.stat(path))
        except OSError as exc:
            results.append(exc)
    return results


async def _md5_or_empty(path: Path, size: int) -> str:
    """The file's md5 in hex, or "" when it cannot be read (hashing later reports why)."""
    try:
        return (await file_md5(path, chunk_size=_chunk_for(size))).hex()
    except OSError:
        return ""


def _chunk_for(size: int) -> int:
    # The hasher allocates its whole buffer per file: a 4 MiB one for a 20 KB JPEG is waste
    # that adds up over a 10,000-photo shoot.
    return max(1, min(size, DEFAULT_CHUNK))


def _hash_groups(photos: list[PhotoRecord]) -> list[list[PhotoRecord]]:
    """Large photos one by one (streamed), small ones many to a thread trip.

    A trip to a worker thread costs more than hashing a 20 KB JPEG; for a 10,000-photo shoot
    of small files the trips were most of the hashing time.
    """
    groups: list[list[PhotoRecord]] = []
    small: list[PhotoRecord] = []
    for photo in photos:
        if photo.size > SMALL_FILE:
            groups.append([photo])
            continue
        small.append(photo)
        if len(small) == SMALL_FILES_PER_TRIP:
            groups.append(small)
            small = []
    if small:
        groups.append(small)
    return groups


def _md5_of_small_files(paths: list[Path]) -> list[str | OSError]:
    """Each file's md5 in hex, or why it cannot be read; runs in a worker thread."""
    results: list[str | OSError] = []
    for path in paths:
        try:
            hasher = new_md5()
            hasher.update(read_whole(path))
            results.append(hasher.hexdigest())
        except OSError as exc:
            results.append(exc)
    return results


async def _upload_one(
    ctx: JobContext,
    source: Path,
    hashes: HashAhead,
    book: LinkBook,
    run: PhotoRun[PhotoRecord],
    photo: PhotoRecord,
    retries: RetryTally,
) -> PhaseDone:
    unreadable = await hashes.take(photo)
    if unreadable is not None:
        raise PhotoFailed(unreadable)
    path = source / photo.rel_path
    # After the photo changed, its batch link is signed for the old MD5: ask for its own.
    fresh = [False]
    for _ in range(RESENDS_AFTER_CHANGE + 1):
        try:
            await ctx.services.transfers.upload(
                path,
                link=lambda refresh: book.link(photo, refresh or fresh[0]),
                size=photo.size,
                md5=binascii.unhexlify(photo.md5) if photo.md5 else None,
                on_bytes=lambda n: _sent(ctx, n),
                on_retry=retries.heard,
            )
        except SourceChanged as exc:
            if not await _reread_source(ctx, path, run, photo):
                raise PhotoFailed(str(exc)) from exc
            fresh[0] = True
            continue
        except (TransferError, RetriesExhausted) as exc:
            raise PhotoFailed.of_transfer(exc) from exc
        crash_point("after_upload")
        return PhaseDone(PHASE)
    raise PhotoFailed(
        f"it kept changing while it was sent ({RESENDS_AFTER_CHANGE + 1} times); "
        "let the copy finish, then `orchestrator retry`"
    )


async def _reread_source(
    ctx: JobContext, path: Path, run: PhotoRun[PhotoRecord], photo: PhotoRecord
) -> bool:
    """The photo changed while it was being sent: record its new version; False if unreadable.

    Nothing was edited yet, so the new version is the one to send.
    """
    try:
        stat = await asyncio.to_thread(path.stat)
        digest = (await file_md5(path, chunk_size=_chunk_for(stat.st_size))).hex()
    except OSError:
        return False
    await run.checkpoints.commit(
        photo.id, SourceCheckpoint(md5=digest, size=stat.st_size, mtime_ns=stat.st_mtime_ns)
    )
    photo.md5, photo.size, photo.mtime_ns = digest, stat.st_size, stat.st_mtime_ns
    await ctx.event(
        "source", f"{photo.rel_path} changed during its upload; sending the new version"
    )
    return True


def _sent(ctx: JobContext, nbytes: int) -> None:
    ctx.progress.advanced(ctx.label, "upload", nbytes=nbytes)
    crash_point("mid_upload")


STAGE = Stage(
    name="upload",
    states=(JobState.PROJECT_CREATED, JobState.UPLOADING),
    step=upload_photos,
    phase=PHASE,
    labels=Labels(done="uploaded"),
    crash_points=("mid_upload", "after_upload"),
)
