"""A big review made straight in the store: a job waiting in `reviewing` with thousands of
tagged photos in a shoot's folders, each with a real small JPEG export on disk carrying its
capture time (EXIF DateTimeOriginal). For the review page's tests at scale and its benchmark,
where driving thousands of photos through the sandbox would take the run's whole budget.

With `ahead`, each photo's thumbnail and capture time are made as the pipeline makes them (the
keywording stage's own `ReviewPreviews.make`, into the database's thumbnail cache); without,
the job is one from before that, or whose previews a crash lost: the page makes them."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image, ImageDraw
from sqlalchemy import update

from orchestrator.integrations.previews import cache_folder
from orchestrator.spec import JobSpec, TagSpec
from orchestrator.states import JobState
from orchestrator.store.models import Job
from orchestrator.store.queries import NewJob, NewPhoto, PhaseDone, Store
from orchestrator.workflow.review_previews import ReviewPreviews
from orchestrator.workflow.tag_details import TAG_PHASE

FOLDERS = (("Ceremony", 15), ("Getting Ready", 11), ("Party", 20))
"""The shoot's folders and the hour each part of the day began: by name "Ceremony" comes
first, by capture time "Getting Ready" does."""
SHOOT_DAY = datetime(2026, 6, 13, tzinfo=UTC)
SUGGESTIONS = ("bride", "groom", "flowers", "dress", "church", "rings", "dance", "cake", "smile")
CATEGORIES = ("people portraits", "events parties", "nature landscape")


@dataclass(frozen=True)
class BigReview:
    """The job made, and its photos' ids by path in the shoot."""

    id: str
    folder: Path
    photo_ids: dict[str, int]
    previews_seconds: float = 0.0
    """The time making the previews ahead took (with `ahead`)."""


def capture_time(folder_index: int, number: int) -> datetime:
    """When a photo of the folder was taken: a photo every 7 s from the folder's hour."""
    return SHOOT_DAY + timedelta(hours=FOLDERS[folder_index][1], seconds=7 * number)


def export_jpeg(path: Path, seed: int, taken: datetime, *, orientation: int = 1) -> bytes:
    """A small real JPEG (a few shapes on a gradient, 900×600) with EXIF DateTimeOriginal."""
    rng = random.Random(seed)
    image = Image.new("RGB", (900, 600), (rng.randrange(256), rng.randrange(256), 90))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randrange(800), rng.randrange(500)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x, y, x + rng.randrange(40, 300), y + rng.randrange(40, 300)), fill=colour)
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif.get_ifd(0x8769)[0x9003] = taken.strftime("%Y:%m:%d %H:%M:%S")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=80, exif=exif.tobytes())
    return path.read_bytes()


def tag_details(index: int, *, faces: bool = False) -> dict[str, object]:
    """What keywording recorded for the photo `index`: three keywords of nine suggestions,
    one photo in 50 flagged by moderation, one in 40 with no keywords at all; with `faces`,
    `index % 5` faces."""
    rng = random.Random(index)
    suggestions = [
        {"tag": word, "confidence": round(95 - 9 * n + rng.random(), 1)}
        for n, word in enumerate(SUGGESTIONS)
    ]
    keywords = [] if index % 40 == 39 else [s["tag"] for s in suggestions[:3]]
    flagged = index % 50 == 49
    return {
        "keywords": keywords,
        "source": "auto",
        "suggestions": suggestions,
        "categories": [{"name": CATEGORIES[index % 3], "confidence": 80.0}],
        "moderation": {"flagged": flagged, "score": 91.0 if flagged else 1.0},
        "content_md5": "0" * 32,
        **(
            {
                "faces": [
                    {"x": 0.1 + 0.2 * n, "y": 0.3, "w": 0.1, "h": 0.1} for n in range(index % 5)
                ]
            }
            if faces
            else {}
        ),
    }


async def big_review(
    store: Store, folder: Path, photos: int, *, faces: bool = False, ahead: bool = False
) -> BigReview:
    """A job of `photos` tagged photos in `FOLDERS`, waiting for review, exports on disk (with
    `faces`, its faces detected: `tag_details`; with `ahead`, its previews made as the
    keywording stage makes them)."""
    job_id = uuid.uuid4().hex
    exported = folder / "exported"
    spec = JobSpec(export=True, tag=TagSpec(moderate=True), review=True)
    names = []
    for index in range(photos):
        part = index % len(FOLDERS)
        number = index // len(FOLDERS)
        # Named against the clock within a folder: only the capture time puts them in order.
        serial = (part + 1) * 1000 + 999 - number
        names.append((f"{FOLDERS[part][0]}/IMG_{serial:04d}.jpg", part, number))
    await store.create_job(
        NewJob(
            id=job_id,
            name=folder.name,
            source=str(folder),
            edited_dir=str(folder / "edited"),
            exported_dir=str(exported),
            image_type="JPG",
            profile_key=2001,
            profile_name="Natural",
            spec=spec.to_stored(),
            project_name=f"orchestrator-{job_id}",
        ),
        [NewPhoto(rel, rel.rsplit("/", 1)[-1], 1_000_000, 0) for rel, _, _ in names],
    )
    ids = {p.rel_path: p.id for p in await store.photos(job_id)}
    lease = await store.claim(job_id, "test-driver", 600)
    exports: list[tuple[int, PhaseDone]] = []
    for index, (rel, part, number) in enumerate(names):
        body = export_jpeg(exported / rel, index % 64, capture_time(part, number))
        md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
        exports.append((ids[rel], PhaseDone("export", output=rel, size=len(body), md5=md5)))
    async with store.photo_writer(lease) as writer:
        await writer.write(exports)
    job = await store.get_job(job_id)
    by_path = {p.rel_path: p for p in await store.photos(job_id)}
    records = [by_path[rel] for rel, _, _ in names]
    previews = ReviewPreviews(cache_folder(store.engine.url))
    started = time.perf_counter()
    captures = (
        await asyncio.gather(*(previews.make(job, spec, photo) for photo in records))
        if ahead
        else [None] * len(records)
    )
    previews_seconds = time.perf_counter() - started if ahead else 0.0
    tags: list[tuple[int, PhaseDone]] = []
    for index, (photo, capture) in enumerate(zip(records, captures, strict=True)):
        details = tag_details(index, faces=faces)
        if capture is not None:
            details["capture"] = capture.model_dump(mode="json")
        tags.append((photo.id, PhaseDone(TAG_PHASE, details=details)))
    async with store.photo_writer(lease) as writer:
        await writer.write(tags)
    await store.release(lease)
    async with store.engine.begin() as conn:
        await conn.execute(
            update(Job).where(Job.id == job_id).values(state=JobState.REVIEWING.value)
        )
    return BigReview(job_id, folder, ids, previews_seconds)
