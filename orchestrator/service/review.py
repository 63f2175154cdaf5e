"""The review before delivery: the keywords to look at, their edits and the approvals.

The same calls serve the web page and `orchestrator approve`. Every write is made under the
job's lease, borrowed for the moment of the write (`workflow/lease.borrow`): a job under review
is driven by nobody, and taking the lease keeps a daemon that wakes it at that moment from
reading a half-made review.
Keywords may only be removed, or added from the photo's own suggestions (as in Imagga's
review screen); each edit marks the photo's keywords `"source": "reviewed"`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from orchestrator.errors import OperatorRefusal
from orchestrator.integrations.imagga_models import Category, Suggestion
from orchestrator.states import JobState
from orchestrator.store.models import Job, utcnow
from orchestrator.store.queries import (
    JobNotFound,
    Lease,
    PhaseDone,
    PhotoRecord,
    StateConflict,
    Store,
)
from orchestrator.store.scheduling import wake_daemons
from orchestrator.workflow.lease import borrow
from orchestrator.workflow.review import undecided
from orchestrator.workflow.review_previews import image_phase
from orchestrator.workflow.tag_details import TAG_PHASE, TagDetails

T = TypeVar("T")

LEASE_SECONDS = 30.0
"""How long a review write may hold the job's lease (it takes milliseconds)."""
ALLOWED_SHOWN = 40
"""Suggestions listed in a refusal; more are summed up."""

PhotoRef = int | str
"""A photo by its id (the page) or its file name or path in the shoot (the command line)."""


class ReviewRefused(OperatorRefusal, ValueError):
    """A review action that cannot be done as asked (a word not suggested, no such photo); the
    message says what is allowed."""


@dataclass(frozen=True)
class PhotoReview:
    """One tagged photo's keywords as a person sees them: on the page, in `approve` and in
    `orchestrator keywords`."""

    id: int
    rel_path: str
    file_name: str
    details: TagDetails
    """What keywording (and earlier reviews) recorded."""
    image_phase: str | None
    """The phase whose output (a JPEG) shows the photo, if any."""

    @property
    def keywords(self) -> list[str]:
        """The photo's keywords now."""
        return list(self.details.keywords)

    @property
    def suggestions(self) -> tuple[Suggestion, ...]:
        """Every keyword the tagger suggested, with its confidence (0-100)."""
        return self.details.suggestions

    @property
    def categories(self) -> tuple[Category, ...] | None:
        """The categorizer's answer, if the job asked for one."""
        return self.details.categories

    @property
    def flagged(self) -> bool:
        """Whether moderation flagged the photo."""
        return self.details.flagged

    @property
    def moderation_score(self) -> float | None:
        """Moderation's score, if the job asked for moderation."""
        return self.details.moderation.score if self.details.moderation else None

    @property
    def source(self) -> str:
        """ "auto", or "reviewed" once a person changed the keywords."""
        return self.details.source

    @property
    def approved(self) -> bool | None:
        """True: delivered; False: held back; None: not decided yet."""
        return self.details.approved

    @property
    def addable(self) -> list[str]:
        """The suggestions not chosen yet: the only words that may be added."""
        return self.details.addable

    def to_json(self) -> dict[str, Any]:
        """The photo as `keywords --json` prints it (a `*` word: added by a person)."""
        details = self.details
        reviewed = {word.casefold() for word in details.reviewed_words}
        categories = details.categories
        return {
            "photo": self.file_name,
            "path": self.rel_path,
            "keywords": self.keywords,
            "keyword_sources": {
                word: "reviewed" if word.casefold() in reviewed else "auto"
                for word in details.keywords
            },
            "source": details.source,
            "suggestions": [s.to_json() for s in details.suggestions],
            "categories": [c.to_json() for c in categories] if categories is not None else None,
            "moderation": details.moderation.model_dump() if details.moderation else None,
            "files": [ref.name for ref in details.files],
        }


@dataclass(frozen=True)
class JobReview:
    """A job's review: whether it waits for one, and its tagged photos."""

    job: Job
    photos: list[PhotoReview]

    @property
    def open(self) -> bool:
        """Whether the job waits in `reviewing`, so edits and approvals are taken."""
        return self.job.state == JobState.REVIEWING

    @property
    def undecided(self) -> list[PhotoReview]:
        """The photos still waiting for a decision."""
        return [photo for photo in self.photos if photo.approved is None]


@dataclass(frozen=True)
class Approval:
    """What an approval did."""

    job: Job
    approved: list[str]
    held_back: list[str]
    """Flagged photos a whole-job approval did not approve: they are not delivered."""
    remaining: list[str]
    """Photos still undecided (a per-photo approval that did not cover them all)."""

    @property
    def complete(self) -> bool:
        """Whether every photo is decided, so the job goes on."""
        return not self.remaining


def photo_review(photo: PhotoRecord, details: TagDetails) -> PhotoReview:
    """A tagged photo's review, from what keywording (and earlier reviews) recorded."""
    return PhotoReview(photo.id, photo.rel_path, photo.file_name, details, image_phase(photo))


async def review(store: Store, ref: str) -> JobReview:
    """The job named by `ref` and its tagged photos, in the job's order."""
    job = await store.resolve_job(ref)
    photos = [
        photo_review(photo, details)
        for photo in await store.photos(job.id)
        if (details := TagDetails.of(photo)) is not None
    ]
    return JobReview(job, photos)


def _find(photos: Sequence[PhotoRecord], ref: PhotoRef, job: Job) -> PhotoRecord:
    for photo in photos:
        if ref in (photo.id, photo.file_name, photo.rel_path):
            return photo
    raise JobNotFound(
        f"job {job.id[:8]} has no photo {ref!r}; `orchestrator approve {job.id[:8]}` "
        "approves them all, the web page lists them"
    )


def tagged(photo: PhotoRecord) -> TagDetails:
    """The photo's keywording, or ReviewRefused if it was not tagged."""
    details = TagDetails.of(photo)
    if details is None:
        raise ReviewRefused(f"{photo.rel_path} has no keywords to review: it was not tagged")
    return details


def _allowed_words(words: Sequence[str]) -> str:
    if not words:
        return "none are left"
    shown = ", ".join(words[:ALLOWED_SHOWN])
    more = len(words) - ALLOWED_SHOWN
    return f"{shown} (and {more} more)" if more > 0 else shown


def edited_keywords(
    photo: PhotoReview, *, add: Sequence[str] = (), remove: Sequence[str] = ()
) -> list[str]:
    """The photo's keywords with `remove` taken out and `add` put in, or ReviewRefused.

    Any keyword may be removed; only the photo's own suggestions may be added, spelled as
    suggested whatever the case typed (the tutorial's rule: nothing the tagger did not see).
    """
    keywords = list(photo.keywords)
    for word in remove:
        match = [k for k in keywords if k.casefold() == word.strip().casefold()]
        if not match:
            raise ReviewRefused(
                f"{word!r} is not a keyword of {photo.rel_path}; its keywords are: "
                f"{_allowed_words(keywords)}"
            )
        keywords.remove(match[0])
    suggested = {s.tag.casefold(): s.tag for s in photo.suggestions}
    for word in add:
        tag = suggested.get(word.strip().casefold())
        if tag is None:
            chosen = {k.casefold() for k in keywords}
            addable = [s.tag for s in photo.suggestions if s.tag.casefold() not in chosen]
            raise ReviewRefused(
                f"{word.strip()!r} is not among the suggestions for {photo.rel_path}; "
                f"words that may be added: {_allowed_words(addable)}"
            )
        if tag.casefold() not in {k.casefold() for k in keywords}:
            keywords.append(tag)
    return keywords


def _reviewed(details: TagDetails, keywords: Sequence[str]) -> TagDetails:
    """The details with a reviewer's `keywords`. The files keep the words last written until
    the review ends: the stage then writes the reviewed ones in (`workflow/review.py`), before
    delivery."""
    on_disk = details.written_keywords
    return details.model_copy(
        update={
            "keywords": tuple(keywords),
            "source": "reviewed",
            "written_keywords": details.keywords if on_disk is None else on_disk,
        }
    )


async def edit_keywords(
    store: Store,
    ref: str,
    photo_ref: PhotoRef,
    *,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
) -> PhotoReview:
    """Change one photo's keywords while its job waits for review; recorded as reviewed."""
    job = await store.resolve_job(ref)

    async def write(lease: Lease, photos: list[PhotoRecord]) -> PhotoReview:
        photo = _find(photos, photo_ref, job)
        details = tagged(photo)
        keywords = edited_keywords(photo_review(photo, details), add=add, remove=remove)
        if keywords != list(details.keywords):
            details = _reviewed(details, keywords)
            await _record(store, lease, [(photo, details)])
            await store.add_event(
                job.id,
                "review",
                f"keywords of {photo.rel_path} changed by the reviewer",
                data={"photo": photo.rel_path, "added": list(add), "removed": list(remove)},
            )
        return photo_review(photo, details)

    return await _while_reviewing(store, job, write)


@dataclass(frozen=True)
class BulkEdit:
    """What a keyword edit over a selection did."""

    changed: list[PhotoReview]
    skipped: list[str]
    """Photos left as they were, each with why (the word is not among its suggestions, or
    not one of its keywords)."""


async def edit_many(
    store: Store,
    ref: str,
    photo_ids: Sequence[int],
    *,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
) -> BulkEdit:
    """Add or remove keywords on a selection of photos, in one write: each photo takes what
    its own rule allows (only its suggestions are added) and the others are listed as
    skipped, with why."""
    if not photo_ids:
        raise ReviewRefused("no photo is selected: select photos, then add or remove a keyword")
    job = await store.resolve_job(ref)

    async def write(lease: Lease, photos: list[PhotoRecord]) -> BulkEdit:
        chosen = [_find(photos, photo_id, job) for photo_id in dict.fromkeys(photo_ids)]
        changes, changed, skipped = [], [], []
        for photo in chosen:
            details = tagged(photo)
            have = {k.casefold() for k in details.keywords}
            dropping = [w for w in remove if w.strip().casefold() in have]
            try:
                keywords = edited_keywords(photo_review(photo, details), add=add, remove=dropping)
            except ReviewRefused as refused:
                skipped.append(str(refused).split(";")[0])
                continue
            if keywords == list(details.keywords):
                if remove and not dropping:
                    skipped.append(f"{photo.rel_path} has none of {', '.join(remove)}")
                continue
            details = _reviewed(details, keywords)
            changes.append((photo, details))
            changed.append(photo_review(photo, details))
        await _record(store, lease, changes)
        if changes:
            await store.add_event(
                job.id,
                "review",
                f"keywords of {len(changes)} photos changed by the reviewer",
                data={
                    "photos": [p.rel_path for p, _ in changes],
                    "added": list(add),
                    "removed": list(remove),
                },
            )
        return BulkEdit(changed, skipped)

    return await _while_reviewing(store, job, write)


async def approve(store: Store, ref: str, photo_refs: Sequence[PhotoRef] = ()) -> Approval:
    """Approve the named photos (flagged ones included), or with none named the whole job.

    Approving the whole job approves every photo moderation did not flag and holds the
    flagged ones back unless they were approved by name before: those are never delivered
    without someone choosing them. Once every tagged photo is decided the job goes on (a
    daemon's job at once; a `run` job when the command is run again).
    """
    job = await store.resolve_job(ref)

    async def write(lease: Lease, photos: list[PhotoRecord]) -> Approval:
        if photo_refs:
            chosen = [_find(photos, r, job) for r in photo_refs]
            changes = [(p, tagged(p).model_copy(update={"approved": True})) for p in chosen]
            approved, held = [p.rel_path for p in chosen], []
        else:
            changes = [
                (p, details.model_copy(update={"approved": not details.flagged}))
                for p in undecided(photos)
                if (details := TagDetails.of(p)) is not None
            ]
            approved = [p.rel_path for p, d in changes if d.approved]
            held = [p.rel_path for p, d in changes if not d.approved]
        await _record(store, lease, changes)
        decided = {p.id for p, _ in changes}
        remaining = [p.rel_path for p in undecided(photos) if p.id not in decided]
        what = "photos " + ", ".join(approved) if photo_refs else "the job"
        await store.add_event(
            job.id,
            "review",
            f"{what} approved by the reviewer"
            + (f"; {len(held)} flagged photos held back" if held else ""),
            data={"approved": approved, "held_back": held, "remaining": len(remaining)},
        )
        if not remaining:
            # Due now: the daemon that next looks moves it on (a `run` job waits for its command).
            await store.sleep_until(lease, JobState.REVIEWING, utcnow())
        return Approval(job, approved, held, remaining)

    approval = await _while_reviewing(store, job, write)
    if approval.complete and approval.job.queued_for_daemon:
        await wake_daemons(store, job.id)
    return approval


async def _record(
    store: Store, lease: Lease, changes: Sequence[tuple[PhotoRecord, TagDetails]]
) -> None:
    """Write the photos' new tag details in one transaction, keeping what else the phase has."""
    if not changes:
        return
    async with store.photo_writer(lease) as writer:
        updates = []
        for photo, details in changes:
            record = photo.phase(TAG_PHASE)
            assert record is not None
            done = PhaseDone(
                TAG_PHASE,
                output=record.output,
                size=record.size,
                md5=record.md5,
                details=details.stored(),
            )
            updates.append((photo.id, done))
        await writer.write(updates)


async def _while_reviewing(
    store: Store, job: Job, write: Callable[[Lease, list[PhotoRecord]], Awaitable[T]]
) -> T:
    """Run `write` under the job's borrowed lease, if the job waits for review."""
    if job.state != JobState.REVIEWING:
        raise _not_reviewing(job)
    async with borrow(store, job.id, purpose="review", ttl=LEASE_SECONDS) as lease:
        current = await store.get_job(job.id)
        if current.state != JobState.REVIEWING:
            raise _not_reviewing(current)
        return await write(lease, await store.photos(job.id))


def _not_reviewing(job: Job) -> StateConflict:
    return StateConflict(
        f"job {job.id[:8]} is {job.state}, not waiting for review: only a job run with "
        "--review takes keyword edits and approvals, once keyworded and before delivery"
    )
