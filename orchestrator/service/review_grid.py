"""The review as a culling tool sees it: every tagged photo of a job in the order the day was
shot, in the shoot's folders, filtered, paged, and what changed since a moment.

Capture order: the EXIF capture time of the photo's JPEG (the export, else the edit), as the
keywording stage recorded it (else read from the JPEG once), then its path; each folder of the
shoot is a section, the sections in the order their first photos were taken ("Getting Ready"
before "Ceremony", whatever their names). The filters (undecided, approved, held back, flagged
by moderation, without keywords, one keyword, one category) are applied over the job's tagged
photos; the counts of each filter come with them.

Two reviewers on one job: every review write changes a photo's `tag` row (and its `done_at`),
and edits are made as deltas (remove this word, add that one, approve), so two people's
decisions both land; `changes` gives a page what others did since it last looked.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

from orchestrator.errors import OperatorRefusal
from orchestrator.service.review import PhotoReview, photo_review
from orchestrator.service.thumbnails import Thumbnails
from orchestrator.spec import JobSpec
from orchestrator.states import JobState
from orchestrator.store.models import Job
from orchestrator.store.queries import Store
from orchestrator.store.review_reads import PhasesMark, phases_mark, tag_changes
from orchestrator.workflow.review_previews import jpeg_version, review_jpeg
from orchestrator.workflow.tag_details import TAG_PHASE, TagDetails

SHOWS = {
    "": "All",
    "undecided": "Undecided",
    "approved": "Approved",
    "held": "Held back",
    "flagged": "Flagged by moderation",
    "nokeywords": "Without keywords",
    "nofaces": "No faces",
    "group": "Group photos",
}
"""The review's filters by decision and content, with their labels."""
FACE_SHOWS = frozenset({"nofaces", "group"})
"""The filters that need the job's faces (`--faces`, `--people`): shown only when it has them."""
GROUP_FACES = 3
"""Faces from which a photo is a group photo."""
GRID_PAGE = 120
"""Photos a page of the grid shows without scripts (with them, the whole list is scrolled)."""
CHANGES_OVERLAP = timedelta(seconds=5)
"""A poll looks this far behind its stamp: a write stamped just before another reviewer's
poll but committed just after it is still seen (the page ignores what it already shows)."""


class BadReviewFilter(OperatorRefusal):
    """A filter the review does not know."""

    http_status = 400


@dataclass(frozen=True)
class ReviewFilter:
    """Which photos the grid shows: by decision or content, and by keyword and category."""

    show: str = ""
    keyword: str = ""
    category: str = ""

    @classmethod
    def of(cls, query: Any) -> ReviewFilter:
        """The filter a page's query names (`show`, `keyword`, `category`), or a refusal."""
        show = str(query.get("show", ""))
        if show not in SHOWS:
            raise BadReviewFilter(
                f"the review shows {', '.join(s for s in SHOWS if s)}, not {show!r}"
            )
        return cls(show, str(query.get("keyword", "")).strip(), str(query.get("category", "")))

    def query(self, **more: str | int) -> dict[str, str]:
        """The filter (and `more`) as a page's query, without what is empty."""
        values = {"show": self.show, "keyword": self.keyword, "category": self.category}
        values.update({key: str(value) for key, value in more.items()})
        return {key: value for key, value in values.items() if value}

    def matches(self, photo: GridPhoto) -> bool:
        """Whether the photo is one the filter shows."""
        if self.keyword and self.keyword.casefold() not in photo.folded_keywords:
            return False
        if self.category and self.category not in photo.categories:
            return False
        return self.show == "" or self.show in photo.shows


@dataclass(frozen=True)
class GridPhoto:
    """A tagged photo as the grid shows it."""

    review: PhotoReview
    folder: str
    """Its folder in the shoot ("" at the top)."""
    taken: datetime | None
    version: str
    """Its JPEG's version (the thumbnail's key); "" if it has no JPEG to show."""
    changed: datetime | None
    """When its review row was last written."""

    @property
    def categories(self) -> tuple[str, ...]:
        """The names of its categories."""
        return tuple(c.name for c in self.review.categories or ())

    @property
    def id(self) -> int:
        """The photo's id."""
        return self.review.id

    @property
    def folded_keywords(self) -> set[str]:
        """Its keywords, case folded."""
        return {word.casefold() for word in self.review.keywords}

    @property
    def decision(self) -> str:
        """ "undecided", "approved" or "held"."""
        approved = self.review.approved
        return "undecided" if approved is None else "approved" if approved else "held"

    @property
    def shows(self) -> set[str]:
        """The filters by decision and content that show it."""
        found = {self.decision}
        if self.review.flagged:
            found.add("flagged")
        if not self.review.keywords:
            found.add("nokeywords")
        faces = self.review.details.faces
        if faces is not None and not faces:
            found.add("nofaces")
        if faces is not None and len(faces) >= GROUP_FACES:
            found.add("group")
        return found

    def entry(self, section: int) -> list[Any]:
        """The photo in the grid's index: [id, section, name, decision, flagged,
        keywords, version]."""
        return [
            self.id,
            section,
            self.review.file_name,
            self.decision[0],
            int(self.review.flagged),
            len(self.review.keywords),
            self.version,
        ]


@dataclass(frozen=True)
class Section:
    """A folder of the shoot in the grid: its name and the photos shown in it."""

    name: str
    photos: list[GridPhoto]


@dataclass(frozen=True)
class ReviewGrid:
    """A job's review, ordered and filtered."""

    job: Job
    filter: ReviewFilter
    photos: list[GridPhoto]
    """Every tagged photo, in capture order."""
    shown: list[GridPhoto]
    """Those the filter shows, in capture order."""
    counts: dict[str, int]
    """Photos each filter by decision and content shows."""
    keywords: list[tuple[str, int]]
    """Every keyword with its photos, most used first."""
    categories: list[tuple[str, int]]
    stamp: str
    """The latest write among the photos: the page's `since` for its first poll."""

    @property
    def shows(self) -> dict[str, str]:
        """The filters by decision and content that apply to this job, with their labels."""
        has_faces = any(p.review.details.faces is not None for p in self.photos)
        return {
            value: label
            for value, label in SHOWS.items()
            if has_faces or value not in FACE_SHOWS or value == self.filter.show
        }

    @property
    def open(self) -> bool:
        """Whether the job waits in `reviewing`, so edits and approvals are taken."""
        return self.job.state == JobState.REVIEWING

    def sections(self, photos: list[GridPhoto]) -> list[Section]:
        """`photos` cut into their folders, in the order given."""
        found: list[Section] = []
        for photo in photos:
            if not found or found[-1].name != photo.folder:
                found.append(Section(photo.folder, []))
            found[-1].photos.append(photo)
        return found

    def page(self, number: int) -> list[GridPhoto]:
        """The shown photos of page `number` (from 0) of `GRID_PAGE`."""
        return self.shown[number * GRID_PAGE : (number + 1) * GRID_PAGE]

    @property
    def pages(self) -> int:
        """How many pages the shown photos make (at least one)."""
        return max(1, -(-len(self.shown) // GRID_PAGE))

    def page_of(self, photo_id: int) -> int | None:
        """The page showing the photo, if the filter shows it."""
        for index, photo in enumerate(self.shown):
            if photo.id == photo_id:
                return index // GRID_PAGE
        return None

    def index(self) -> dict[str, Any]:
        """The whole shown list for the page's script: its sections and one short entry
        per photo (a few tens of bytes each)."""
        names: list[str] = []
        entries = []
        for photo in self.shown:
            if not names or names[-1] != photo.folder:
                names.append(photo.folder)
            entries.append(photo.entry(len(names) - 1))
        return {"sections": names, "photos": entries, "stamp": self.stamp}


def _order(photos: list[GridPhoto]) -> list[GridPhoto]:
    """Capture order within each folder; folders by their first capture (then name)."""
    never = datetime.max.replace(tzinfo=UTC)

    def moment(photo: GridPhoto) -> datetime:
        return photo.taken or never

    by_folder: dict[str, list[GridPhoto]] = {}
    for photo in sorted(photos, key=lambda p: (moment(p), p.review.rel_path)):
        by_folder.setdefault(photo.folder, []).append(photo)
    folders = sorted(by_folder, key=lambda f: (moment(by_folder[f][0]), f))
    return [photo for folder in folders for photo in by_folder[folder]]


KEPT_JOBS = 8
"""Jobs whose ordered grid a process keeps (a few thousand small entries each)."""


@dataclass
class _Kept:
    """A job's grid as last built, and the marks it was built at."""

    state: str
    mark: PhasesMark
    photos: list[GridPhoto]


class ReviewGrids:
    """Each job's review grid, built once (capture times, order) and kept up to date from
    the review rows written since: a page of a 3,000-photo review is then read with one
    aggregate and the few rows that changed."""

    def __init__(self, store: Store, thumbnails: Thumbnails) -> None:
        self._store = store
        self._thumbnails = thumbnails
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    async def grid(self, ref: str, wanted: ReviewFilter) -> ReviewGrid:
        """The job's tagged photos in capture order, those `wanted` shows, and the counts."""
        job = await self._store.resolve_job(ref)
        # One build per job at a time: two reviewers opening the page at once share it.
        async with self._locks.setdefault(job.id, asyncio.Lock()):
            job = await self._store.get_job(job.id)
            mark = await phases_mark(self._store, job.id)
            kept = self._kept.get(job.id)
            if kept is None or kept.state != job.state or kept.mark.rows != mark.rows:
                kept = _Kept(job.state, mark, await self._build(job))
            elif kept.mark != mark:
                kept = _Kept(job.state, mark, await self._update(job, kept))
            self._kept[job.id] = kept
            self._kept.move_to_end(job.id)
            while len(self._kept) > KEPT_JOBS:
                forgotten, _ = self._kept.popitem(last=False)
                self._locks.pop(forgotten, None)
        return _grid(job, kept.photos, wanted)

    async def _build(self, job: Job) -> list[GridPhoto]:
        tagged = [
            (photo, details)
            for photo in await self._store.photos(job.id)
            if (details := TagDetails.of(photo)) is not None
        ]
        spec = JobSpec.from_stored(job.options)
        # Keywording recorded the capture times of a job to review; the others' are read.
        unread = [j for p, d in tagged if d.capture is None and (j := review_jpeg(job, p, spec))]
        times = await self._thumbnails.capture_times(job.id, unread) if unread else {}
        photos = []
        for photo, details in tagged:
            record = photo.phase(TAG_PHASE)
            photos.append(
                GridPhoto(
                    review=photo_review(photo, details),
                    folder=str(PurePosixPath(photo.rel_path).parent).strip("."),
                    taken=details.capture.taken if details.capture else times.get(photo.id),
                    version=jpeg_version(photo) or "",
                    changed=record.done_at if record else None,
                )
            )
        return _order(photos)

    async def _update(self, job: Job, kept: _Kept) -> list[GridPhoto]:
        """The kept photos with the review rows written since they were read."""
        since = kept.mark.latest - CHANGES_OVERLAP if kept.mark.latest else None
        if since is None:
            return await self._build(job)
        changed = await tag_changes(self._store, job.id, since, TAG_PHASE)
        rows = {row.photo_id: row for row in changed}
        photos = []
        for photo in kept.photos:
            row = rows.get(photo.id)
            if row is not None:
                review = replace(photo.review, details=_details(row.details))
                photo = replace(photo, review=review, changed=row.done_at)
            photos.append(photo)
        return photos


def _grid(job: Job, ordered: list[GridPhoto], wanted: ReviewFilter) -> ReviewGrid:
    counts = dict.fromkeys(SHOWS, 0)
    words: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    for photo in ordered:
        for show in photo.shows | {""}:
            counts[show] += 1
        words.update(photo.review.keywords)
        categories.update(photo.categories)
    latest = max((p.changed for p in ordered if p.changed), default=None)
    return ReviewGrid(
        job=job,
        filter=wanted,
        photos=ordered,
        shown=[p for p in ordered if wanted.matches(p)],
        counts=counts,
        keywords=words.most_common(),
        categories=sorted(categories.items()),
        stamp=_stamp(latest),
    )


def _details(stored: object) -> TagDetails:
    return TagDetails.model_validate(stored if isinstance(stored, dict) else {})


def _stamp(moment: datetime | None) -> str:
    return (moment or datetime(2000, 1, 1, tzinfo=UTC)).astimezone(UTC).isoformat()


def short_entry(photo_id: int, details: TagDetails) -> list[Any]:
    """A photo's decision, flag and keyword count as an index entry of section -1 (the page
    keeps it where it is): what a poll or an action answers."""
    decision = "u" if details.approved is None else "a" if details.approved else "h"
    return [photo_id, -1, "", decision, int(details.flagged), len(details.keywords)]


def loupe(job: Job, review: PhotoReview) -> dict[str, Any]:
    """A photo as the loupe shows it: its keywords, what may be added, the suggestions with
    their confidence, categories, moderation and the decision."""
    return {
        "id": review.id,
        "path": review.rel_path,
        "keywords": review.keywords,
        "addable": review.addable,
        "suggestions": [[s.tag, round(s.confidence)] for s in review.suggestions],
        "categories": [[c.name, round(c.confidence)] for c in review.categories or ()],
        "flagged": review.flagged,
        "score": review.moderation_score,
        "approved": review.approved,
        "source": review.source,
        "open": job.state == JobState.REVIEWING,
        "image": f"/jobs/{job.id}/photos/{review.id}/image" if review.image_phase else None,
    }


async def changes(store: Store, ref: str, since: str) -> dict[str, Any]:
    """What was written to the job's review after `since` (a stamp an earlier answer gave):
    the photos' entries (section -1: the page keeps them where they are), the new stamp, and
    the job's state (a review that ended takes no more edits)."""
    job = await store.resolve_job(ref)
    try:
        moment = datetime.fromisoformat(since)
    except ValueError:
        raise BadReviewFilter(f"since must be a stamp the page was given, not {since!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    rows = await tag_changes(store, job.id, moment - CHANGES_OVERLAP, TAG_PHASE)
    entries = [short_entry(row.photo_id, _details(row.details)) for row in rows]
    latest = max((row.done_at for row in rows), default=moment)
    return {"stamp": _stamp(max(latest, moment)), "photos": entries, "state": job.state}
