"""Sending only the picks (`--min-rating N`): each photo's rating read from its sidecar (which
wins, as Lightroom's does) or from the photo itself (a RAW's own XMP or EXIF, a JPEG's), and the
photos rated below N, unrated or rejected (-1) kept back and listed with why."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.imagen.models import ImageType
from orchestrator.store.models import Job
from orchestrator.store.queries import Store
from orchestrator.words import plural
from orchestrator.workflow.shoot import FoundPhoto, ShootError

if TYPE_CHECKING:
    from orchestrator.integrations.keywords import KeywordFiles

SIDECAR = ".xmp"
NOT_PICKED = "not_picked"
"""The history event naming a job's photos kept back by `--min-rating` (`data.photos`: each
`{path, rating}`): chosen, so neither refused nor a failure."""


@dataclass(frozen=True)
class Unpicked:
    """A photo kept back by `--min-rating`, with its rating (None: unrated)."""

    rel_path: str
    image_type: ImageType
    rating: int | None

    def reason(self, min_rating: int) -> str:
        """Why it was kept back, in words."""
        return self.described(self.rating, min_rating)

    @staticmethod
    def described(rating: object, min_rating: object) -> str:
        """Why a photo of this rating was kept back by this `--min-rating` (as the history
        recorded them), in words."""
        if isinstance(rating, int) and rating < 0:
            return "rejected (rating -1)"
        rated = f"rated {rating}" if isinstance(rating, int) else "unrated"
        return f"{rated}, below --min-rating {min_rating}"


@dataclass
class Picks:
    """The photos to send by image type, and those kept back."""

    photos: dict[ImageType, list[FoundPhoto]]
    kept_back: list[Unpicked]


def sidecars_of(photos: Sequence[FoundPhoto]) -> dict[str, Path]:
    """Each photo's sidecar, by relative path: NAME.xmp or NAME.EXT.xmp beside it, in any case
    (one listing per folder)."""
    listings: dict[str, dict[str, str]] = {}
    found: dict[str, Path] = {}
    for photo in photos:
        folder = os.path.dirname(photo.location)
        if folder not in listings:
            try:
                names = os.listdir(folder)
            except OSError:
                names = []
            listings[folder] = {name.casefold(): name for name in names}
        listed = listings[folder]
        name = os.path.basename(photo.location)
        for candidate in (f"{os.path.splitext(name)[0]}{SIDECAR}", f"{name}{SIDECAR}"):
            real = listed.get(candidate.casefold())
            if real is not None:
                found[photo.rel_path] = Path(folder, real)
                break
    return found


async def ratings(photos: Sequence[FoundPhoto], reader: KeywordFiles) -> dict[str, int | None]:
    """Each photo's rating by relative path: its sidecar's if the sidecar has one, else its
    own."""
    sidecars = await asyncio.to_thread(sidecars_of, photos)
    read = await reader.ratings([*sidecars.values(), *(p.path for p in photos)])
    found: dict[str, int | None] = {}
    for photo in photos:
        sidecar = sidecars.get(photo.rel_path)
        from_sidecar = read.get(sidecar) if sidecar is not None else None
        found[photo.rel_path] = from_sidecar if from_sidecar is not None else read.get(photo.path)
    return found


async def pick(
    photos: Mapping[ImageType, list[FoundPhoto]], min_rating: int, reader: KeywordFiles
) -> Picks:
    """The photos rated `min_rating` or more (never a rejected one), and the rest."""
    every = [photo for found in photos.values() for photo in found]
    rated = await ratings(every, reader)
    chosen: dict[ImageType, list[FoundPhoto]] = {}
    kept_back: list[Unpicked] = []
    for kind, found in photos.items():
        for photo in found:
            rating = rated.get(photo.rel_path)
            # Unrated counts as 0: `--min-rating 0` keeps out only the rejects.
            if (0 if rating is None else rating) >= max(min_rating, 0):
                chosen.setdefault(kind, []).append(photo)
            else:
                kept_back.append(Unpicked(photo.rel_path, kind, rating))
    return Picks(chosen, kept_back)


def shoot_min_rating(given: int | None, jobs: Iterable[Job]) -> int | None:
    """The rating new photos need: the one given now, else the one the shoot was sent with."""
    if given is not None:
        return given
    stored = [job.options.get("min_rating") for job in jobs]
    return min((r for r in stored if isinstance(r, int)), default=None)


async def picked(
    photos: Mapping[ImageType, list[FoundPhoto]], sent: set[str], min_rating: int, exiftool: str
) -> tuple[dict[ImageType, list[FoundPhoto]], list[Unpicked]]:
    """The photos to plan with: those the shoot holds already, and the new ones rated
    `min_rating` or more (read by the `exiftool` program); and the new ones kept back."""
    from orchestrator.integrations.keywords import ExiftoolMissing, KeywordFiles, KeywordWriteFailed

    new = {kind: [p for p in found if p.rel_path not in sent] for kind, found in photos.items()}
    reader = KeywordFiles(exiftool)
    try:
        chosen = await pick(new, min_rating, reader)
    except (ExiftoolMissing, KeywordWriteFailed) as exc:
        raise ShootError(f"--min-rating reads the photos' ratings: {exc}") from None
    finally:
        reader.close()
    keep = {p.rel_path for found in chosen.photos.values() for p in found} | sent
    picked = {kind: [p for p in found if p.rel_path in keep] for kind, found in photos.items()}
    return {kind: found for kind, found in picked.items() if found}, chosen.kept_back


async def record_kept_back(
    store: Store, jobs: Sequence[Job], kept_back: Sequence[Unpicked], min_rating: int | None
) -> list[str]:
    """Name the photos `--min-rating` kept back in the history of the shoot's job of their
    type (once each); the notes that list them."""
    if not jobs or not kept_back or min_rating is None:
        return []
    by_type: dict[str, Job] = {}
    for job in jobs:  # the shoot's first job of each type keeps the record
        by_type.setdefault(job.image_type, job)
    assigned: dict[str, list[Unpicked]] = {}
    for photo in kept_back:
        job = by_type.get(photo.image_type.value, jobs[0])
        assigned.setdefault(job.id, []).append(photo)
    for job_id, photos in assigned.items():
        known = {
            (entry.get("path"), entry.get("rating"), event.data.get("min_rating"))
            for event in await store.events(job_id)
            if event.kind == NOT_PICKED and event.data
            for entry in event.data.get("photos", [])
        }
        new = [p for p in photos if (p.rel_path, p.rating, min_rating) not in known]
        if new:
            await store.add_event(
                job_id,
                NOT_PICKED,
                f"{plural(len(new), 'photo')} kept back by --min-rating {min_rating}: "
                + _listed(f"{p.rel_path} ({p.reason(min_rating)})" for p in new),
                data={
                    "min_rating": min_rating,
                    "photos": [{"path": p.rel_path, "rating": p.rating} for p in new],
                },
            )
    return [
        f"kept back {plural(len(kept_back), 'photo')} by --min-rating {min_rating} (not sent: "
        f"{_listed(f'{p.rel_path} ({p.reason(min_rating)})' for p in kept_back)}); to send "
        "them later, run the folder with --add and a lower --min-rating"
    ]


SHOWN = 5
"""Photos named in one note before the rest are summed up as "…"."""


def _listed(items: Iterable[str]) -> str:
    listed = list(items)
    return ", ".join(listed[:SHOWN]) + (" …" if len(listed) > SHOWN else "")
