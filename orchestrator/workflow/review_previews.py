"""What the review page needs of each photo, made ahead as the photo is tagged for a review.

The review grid orders a job's photos by capture time and shows each as a thumbnail. Read at
the page's first load, for a 3,000-photo job that is 3,000 JPEGs opened and decoded while the
photographer waits. The keywording stage of a job with `--review` has the photo's JPEG in hand
anyway (it has just read it for Imagga), so it reads the capture time then (recorded in the
`tag` phase's details, `TagDetails.capture`, with the tag itself) and makes the thumbnail into
the cache folder the page serves from (integrations/previews.py), on a thread, a few at once.

Making ahead is a saving, never a condition: a thumbnail that cannot be made (a JPEG Pillow
cannot decode, a cache folder that cannot be written) is logged and the photo goes on; the
page makes what it does not find, and reads the capture times nobody recorded.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from orchestrator.integrations.previews import (
    ThumbnailFailed,
    capture_time,
    make_thumbnail,
    thumbnail_path,
    write_atomically,
)
from orchestrator.spec import JobSpec
from orchestrator.store.models import Job
from orchestrator.store.queries import PhaseRecord, PhotoRecord
from orchestrator.workflow.outputs import output_file
from orchestrator.workflow.tag_details import Capture

log = logging.getLogger("orchestrator.previews")

MAKING_AT_ONCE = 2
"""Photos whose thumbnail one job makes at once (each a thread decoding a JPEG)."""

PhotoJpeg = tuple[int, str, str, str]
"""A photo's JPEG as the review shows it: (photo id, version, folder, name in it)."""


def image_phase(photo: PhotoRecord) -> str | None:
    """The phase whose output, a JPEG, shows the photo (the export, else the edit), if any."""
    shown = _shown(photo)
    return shown[0] if shown else None


def _shown(photo: PhotoRecord) -> tuple[str, PhaseRecord, str] | None:
    """The phase whose output, a JPEG, shows the photo, its record and that output."""
    for phase in ("export", "edit"):
        record = photo.phase(phase)
        output = record.output if record and record.done_at else None
        if record and output and output.lower().endswith((".jpg", ".jpeg")):
            return phase, record, output
    return None


def _version(phase: str, record: PhaseRecord, output: str) -> str:
    return f"{phase[0]}{(record.md5 or f'{record.size or 0}{output}')[:16]}"


def jpeg_version(photo: PhotoRecord) -> str | None:
    """The version of the JPEG that shows the photo (its phase's initial and md5), which names
    its thumbnail; None if it has no JPEG to show."""
    shown = _shown(photo)
    return _version(*shown) if shown else None


def review_jpeg(job: Job, photo: PhotoRecord, spec: JobSpec | None = None) -> PhotoJpeg | None:
    """The JPEG that shows the photo: (id, version, folder, name in the folder), if any."""
    shown = _shown(photo)
    if shown is None:
        return None
    phase, _, output = shown
    folder = job.exported_dir if phase == "export" else job.edited_dir
    path = output_file(job, spec or JobSpec.from_stored(job.options), photo, phase)
    name = str(path.relative_to(folder)) if path and path.is_relative_to(folder) else ""
    return (photo.id, _version(*shown), folder, name or output)


@dataclass(frozen=True)
class Made:
    """What was made ahead for one photo."""

    capture: Capture | None
    """Its capture time; None if its JPEG could not be read."""
    failure: str | None = None
    """Why its thumbnail was not made, if it was not."""


def make_ahead(source: Path, thumbnail: Path) -> Made:
    """Read the capture time of the JPEG `source` and make its thumbnail at `thumbnail`
    (unless it is there already: a photo tagged again after a crash)."""
    try:
        with source.open("rb") as file:
            capture = Capture(taken=capture_time(file))
            if thumbnail.exists():
                return Made(capture)
            file.seek(0)
            body = make_thumbnail(file)
    except OSError as exc:
        return Made(None, f"{source.name} cannot be read: {exc.strerror or exc}")
    except ThumbnailFailed as exc:
        return Made(capture, str(exc))
    try:
        write_atomically(thumbnail, body)
    except OSError as exc:
        return Made(capture, f"not kept in {thumbnail.parent}: {exc.strerror or exc}")
    return Made(capture)


class ReviewPreviews:
    """Makes one job's previews into the cache `folder`, `MAKING_AT_ONCE` at a time."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._making = asyncio.Semaphore(MAKING_AT_ONCE)

    async def make(self, job: Job, spec: JobSpec, photo: PhotoRecord) -> Capture | None:
        """The photo's capture time, its thumbnail made on the way; None (logged) if its
        JPEG could not be read. Never raises for the photo: the page falls back."""
        jpeg = review_jpeg(job, photo, spec)
        if jpeg is None:
            return None
        photo_id, version, folder, name = jpeg
        source = Path(folder) / name
        thumbnail = thumbnail_path(self._folder, job.id, photo_id, version)
        async with self._making:
            made = await asyncio.to_thread(make_ahead, source, thumbnail)
        if made.failure is not None:
            log.warning(
                "thumbnail not made ahead: the review page will make it",
                extra={"job_id": job.id, "photo": photo.rel_path, "why": made.failure},
            )
        return made.capture
