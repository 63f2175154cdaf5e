"""Stages: download the edits or the exports, each verified, renamed atomically, checkpointed."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from orchestrator.crashpoints import crash_point
from orchestrator.imagen.files import UnsafeFileName, image_type_of
from orchestrator.imagen.models import DownloadLink, ImageType
from orchestrator.integrations.keywords import INSTALL_HINT, ExiftoolMissing, KeywordWriteFailed
from orchestrator.retry import RetriesExhausted
from orchestrator.spec import JobSpec
from orchestrator.states import JobState
from orchestrator.store.queries import PhaseDone, PhotoRecord
from orchestrator.transfer.errors import OutputInTheWay, OutputUnwritable, TransferError
from orchestrator.transfer.hashing import md5_of_file
from orchestrator.transfer.localfiles import written_before
from orchestrator.workflow.context import JobContext, JobFailed, JobPaused
from orchestrator.workflow.keywording import write_shoot_keywords
from orchestrator.workflow.outputs import EDITS, EXPORTS, Outputs, Places, wants_export
from orchestrator.workflow.photos import PhotoFailed, PhotoRun, photo_run
from orchestrator.workflow.retries import RetryTally
from orchestrator.workflow.services import PHOTO_METADATA
from orchestrator.workflow.shoot_record import read_record
from orchestrator.workflow.stage import Labels, Stage

if TYPE_CHECKING:
    from orchestrator.integrations.keywords import KeywordFiles

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
    made = Made(
        await asyncio.to_thread(photographers_files, Path(ctx.job.source), [p for p, _ in todo]),
        ctx.services.find(PHOTO_METADATA),
    )
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
            lambda item: _download_one(
                ctx, links, run, places, outputs, item, guard, retries, made
            ),
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
    made: Made,
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
    size, md5 = result.size, result.md5_hex
    carried = await made.carry(ctx, photo, target)
    worded = await _shoot_words(ctx, target)
    if carried or worded:
        size, md5 = await _measured(target)
    return PhaseDone(outputs.phase, output=name, size=size, md5=md5)


async def _shoot_words(ctx: JobContext, target: Path) -> bool:
    """Write the shoot's own words (`--keyword`) into the output; whether it changed."""
    if not ctx.spec.keywords:
        return False
    return await write_shoot_keywords(
        ctx.services.find(PHOTO_METADATA), target, add=ctx.spec.keywords
    )


async def _measured(path: Path) -> tuple[int, str]:
    """The size and MD5 of a file as it is now."""
    hasher = await md5_of_file(path)
    return (await asyncio.to_thread(os.path.getsize, path)), hasher.hexdigest()


SIDECAR = ".xmp"
"""What a photographer's culling tool writes beside a photo: Lightroom, Photo Mechanic,
Narrative Select and Capture One write NAME.xmp, darktable NAME.CR2.xmp (any letter case)."""
EMBEDDING = frozenset({".jpg", ".jpeg"})
"""Photos whose own ratings and captions are read too (their XMP and IPTC sit at the start of
the file). A RAW's are read from its sidecar, and from the RAW itself when its first IFD holds
an XMP packet (a camera's rating, a culling tool that writes into the RAW)."""
HEADER_BYTES = 256 * 1024
"""How much of a JPEG is looked at for its XMP or IPTC record."""
_MARKERS = (b"http://ns.adobe.com/xap/1.0/\x00", b"Photoshop 3.0\x00")
_RAW_MARKERS = (b"<x:xmpmeta",)
"""An XMP packet inside a TIFF-based RAW (tag 0x02BC), as exiftool writes it."""


def photographers_files(source: Path, photos: Sequence[PhotoRecord]) -> dict[int, list[Path]]:
    """For each photo that carries something the photographer made, where it is: the photo
    itself (a JPEG with XMP or IPTC), then its sidecar (which wins). One look at each folder."""
    folders: dict[Path, dict[str, str]] = {}
    found: dict[int, list[Path]] = {}
    for photo in photos:
        path = source / photo.rel_path
        if path.parent not in folders:
            try:
                names = os.listdir(path.parent)
            except OSError:
                names = []
            folders[path.parent] = {name.casefold(): name for name in names}
        listed = folders[path.parent]
        files = [path] if _embeds(path) else []
        sidecars = (listed.get(f"{name}{SIDECAR}".casefold()) for name in (path.stem, path.name))
        files += [path.with_name(real) for real in sidecars if real is not None][:1]
        if files:
            found[photo.id] = files
    return found


def _embeds(path: Path) -> bool:
    markers: tuple[bytes, ...]
    if path.suffix.lower() in EMBEDDING:
        markers = _MARKERS
    elif image_type_of(path.name) is ImageType.RAW:
        markers = _RAW_MARKERS
    else:
        return False
    try:
        with path.open("rb") as stream:
            head = stream.read(HEADER_BYTES)
    except OSError:
        return False
    return any(marker in head for marker in markers)


class Made:
    """What the photographer made of the stage's photos (ratings, labels, captions, their
    keywords, IPTC contact and copyright), and the exiftool that carries it into each output:
    Imagen's edit keeps its own `crs:` settings, the photographer's work wins over the rest."""

    def __init__(self, files: dict[int, list[Path]], exiftool: KeywordFiles | None) -> None:
        self._files = files
        self._exiftool = exiftool
        self._noted = False

    async def carry(self, ctx: JobContext, photo: PhotoRecord, target: Path) -> bool:
        """Carry the photo's into `target`; whether the file changed."""
        sources = self._files.get(photo.id)
        if not sources or self._exiftool is None:
            return False
        # A sidecar beside its RAW was kept as NAME.orig before Imagen's took its place.
        wanted = [target.with_name(target.name + ".orig") if s == target else s for s in sources]
        sources = await asyncio.to_thread(lambda: [s for s in wanted if s.exists()])
        if not sources:
            return False
        try:
            await self._exiftool.carry(sources, target)
        except ExiftoolMissing:
            if not self._noted:
                self._noted = True
                message = (
                    "the shoot's ratings, labels and captions were not carried into the "
                    f"outputs: {INSTALL_HINT}"
                )
                await ctx.event("note", message)
                ctx.note(message, level="warn")
            return False
        except KeywordWriteFailed as exc:
            raise PhotoFailed(str(exc)) from None
        return True


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
        requires=(PHOTO_METADATA,),
    )


EDITS_STAGE = download_stage(EDITS, states=(JobState.EDITED, JobState.DOWNLOADING_EDITS))
EXPORTS_STAGE = download_stage(
    EXPORTS, states=(JobState.EXPORTED, JobState.DOWNLOADING_EXPORTS), applies=wants_export
)
