"""`orchestrator keywords`: each photo's keywords and suggestions, a person's review of them,
and choosing again from the kept suggestions (free: Imagga is not asked again)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.config import Settings
from orchestrator.errors import Refused
from orchestrator.integrations.keywords import KeywordFiles
from orchestrator.rules.keywords import KeywordRules
from orchestrator.service.database import open_store
from orchestrator.service.review import ReviewRefused, edited_keywords, photo_review, tagged
from orchestrator.spec import JobSpec
from orchestrator.store.models import Job
from orchestrator.store.queries import PhaseDone, PhotoRecord, Store
from orchestrator.words import plural
from orchestrator.workflow.keywording import shoot_words, write_keywords
from orchestrator.workflow.lease import borrow
from orchestrator.workflow.photos import PhotoFailed
from orchestrator.workflow.tag_details import TAG_PHASE, TagDetails

REVIEW_LEASE_SECONDS = 60.0


async def keyword_views(
    store: Store, job_ref: str, photo_ref: str | None = None
) -> tuple[Job, list[dict[str, Any]]]:
    """The job and its tagged photos as `keywords --json` prints them (or that one photo)."""
    job = await store.resolve_job(job_ref)
    photos = _chosen(await store.photos(job.id), photo_ref)
    shoot = list(shoot_words(job))  # the shoot's own words, apart from Imagga's
    return job, [
        {**photo_review(photo, details).to_json(), "shoot_keywords": shoot}
        for photo in photos
        if (details := TagDetails.of(photo)) is not None
    ]


async def review(
    store: Store,
    files: KeywordFiles,
    job_ref: str,
    photo_ref: str,
    *,
    add: Sequence[str],
    remove: Sequence[str],
) -> dict[str, Any]:
    """A person's change to one photo's keywords: only suggested words may be added; the files
    are rewritten and the photo recorded as reviewed (kept when the job resumes)."""
    job = await store.resolve_job(job_ref)
    [photo] = _chosen(await store.photos(job.id), photo_ref)
    details = tagged(photo)
    new = edited_keywords(photo_review(photo, details), add=add, remove=remove)
    dropped = {w.casefold() for w in remove}
    kept = {w.casefold() for w in details.keywords if w.casefold() not in dropped}
    added = [w for w in new if w.casefold() not in kept]
    reviewed = [w for w in details.reviewed_words if w.casefold() not in dropped]
    details = details.model_copy(
        update={"reviewed_words": tuple(dict.fromkeys([*reviewed, *added])), "source": "reviewed"}
    )
    details = await _rewrite(store, files, job, photo, details, new)
    await store.add_event(
        job.id,
        "review",
        f"{photo.file_name}: keywords reviewed (+{len(added)} −{len(remove)})",
        data={"photo": photo.file_name, "added": added, "removed": list(remove)},
    )
    return photo_review(photo, details).to_json()


async def reselect(
    store: Store,
    files: KeywordFiles,
    rules: KeywordRules,
    job_ref: str,
    photo_ref: str | None,
    *,
    threshold: float,
) -> list[dict[str, Any]]:
    """Choose the keywords again at another threshold from the kept suggestions (no request
    to Imagga); photos a person reviewed are left alone unless named."""
    job = await store.resolve_job(job_ref)
    spec = JobSpec.from_stored(job.options).tag
    if spec is None:
        raise ReviewRefused(f"{job.name} was not asked to tag its photos")
    views = []
    for photo in _chosen(await store.photos(job.id), photo_ref):
        details = TagDetails.of(photo)
        if details is None or (details.source == "reviewed" and photo_ref is None):
            continue
        chosen = rules.choose(details.suggestions, spec, threshold=threshold)
        details = await _rewrite(store, files, job, photo, details, chosen)
        views.append(photo_review(photo, details).to_json())
    await store.add_event(
        job.id,
        "review",
        f"keywords chosen again at {threshold:g}% for {plural(len(views), 'photo')}",
    )
    return views


async def _rewrite(
    store: Store,
    files: KeywordFiles,
    job: Job,
    photo: PhotoRecord,
    details: TagDetails,
    keywords: list[str],
) -> TagDetails:
    """Write the files, then the record, under the job's borrowed lease (refused while it is
    driven); the details as recorded."""
    async with borrow(store, job.id, purpose="keywords", ttl=REVIEW_LEASE_SECONDS) as lease:
        try:
            details = await write_keywords(files, job, details, keywords)
        except PhotoFailed as exc:
            raise Refused(exc.reason) from None
        record = photo.phase(TAG_PHASE)
        await store.checkpoint(
            lease,
            photo.id,
            PhaseDone(
                TAG_PHASE,
                output=record.output if record else None,
                md5=details.content_md5,
                details=details.stored(),
            ),
        )
    return details


def _chosen(photos: list[PhotoRecord], ref: str | None) -> list[PhotoRecord]:
    if ref is None:
        return photos
    matches = [p for p in photos if ref in (p.file_name, p.rel_path)]
    if not matches:
        names = ", ".join(p.file_name for p in photos[:10])
        raise ReviewRefused(f"no photo {ref!r} in this job; its photos: {names}")
    return matches[:1]


async def keywords_command(
    settings: Settings,
    job_ref: str,
    photo_ref: str | None,
    *,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    reselect_at: float | None = None,
) -> list[dict[str, Any]]:
    """`orchestrator keywords`: the views of a job's tagged photos, after one photo's review
    (`add`, `remove`) or choosing again at `reselect_at`, if asked. Opens the database and the
    keyword writer, and closes them."""
    store = await open_store(settings)
    files = KeywordFiles(settings.tagging.exiftool)
    try:
        if add or remove:
            assert photo_ref is not None
            return [await review(store, files, job_ref, photo_ref, add=add, remove=remove)]
        if reselect_at is not None:
            rules = KeywordRules.of(
                settings.tagging.allowlist,
                settings.tagging.blocklist,
                settings.tagging.moderation_threshold,
            )
            return await reselect(store, files, rules, job_ref, photo_ref, threshold=reselect_at)
        return (await keyword_views(store, job_ref, photo_ref))[1]
    finally:
        files.close()
        await store.close()
