"""`orchestrator keywords`: each photo's keywords and suggestions, a person's review of them,
and choosing again from the kept suggestions (free: Imagga is not asked again)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from orchestrator.config import Settings
from orchestrator.errors import Refused
from orchestrator.integrations.imagga_models import Suggestion
from orchestrator.integrations.keywords import KeywordFiles
from orchestrator.integrations.tagging import KeywordRules
from orchestrator.service.database import open_store
from orchestrator.spec import JobSpec
from orchestrator.store.models import Job
from orchestrator.store.queries import PhaseDone, PhotoRecord, Store
from orchestrator.workflow.photos import PhotoFailed
from orchestrator.workflow.planning import PlanError
from orchestrator.workflow.tag import PHASE, write_keywords

REVIEW_LEASE_SECONDS = 60.0


class ReviewRefused(PlanError):
    """A review the photo's record cannot take (a word not suggested, no such photo): exit 2."""


def photo_view(photo: PhotoRecord) -> dict[str, Any] | None:
    """What `keywords --json` prints for one tagged photo; None if it is not tagged."""
    record = photo.phase(PHASE)
    if record is None or record.done_at is None or record.details is None:
        return None
    details = record.details
    reviewed = {w.casefold() for w in details.get("reviewed_words", [])}
    return {
        "photo": photo.file_name,
        "path": photo.rel_path,
        "keywords": list(details.get("keywords", [])),
        "keyword_sources": {
            word: "reviewed" if word.casefold() in reviewed else "auto"
            for word in details.get("keywords", [])
        },
        "source": details.get("source", "auto"),
        "suggestions": list(details.get("suggestions", [])),
        "categories": details.get("categories"),
        "moderation": details.get("moderation"),
        "files": [ref["name"] for ref in details.get("files", [])],
    }


async def keyword_views(
    store: Store, job_ref: str, photo_ref: str | None = None
) -> tuple[Job, list[dict[str, Any]]]:
    """The job and its tagged photos' views (or that one photo's)."""
    job = await store.resolve_job(job_ref)
    photos = _chosen(await store.photos(job.id), photo_ref)
    return job, [view for view in map(photo_view, photos) if view is not None]


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
    details = _details(photo)
    suggested = {s["tag"].casefold(): s["tag"] for s in details.get("suggestions", [])}
    unknown = [w for w in add if w.casefold() not in suggested]
    if unknown:
        allowed = ", ".join(sorted(suggested.values(), key=str.casefold))
        raise ReviewRefused(
            f"{unknown[0]!r} is not among the suggestions for {photo.file_name}; "
            f"words that may be added: {allowed}"
        )
    current = list(details.get("keywords", []))
    folded = {w.casefold() for w in current}
    missing = [w for w in remove if w.casefold() not in folded]
    if missing:
        raise ReviewRefused(
            f"{missing[0]!r} is not a keyword of {photo.file_name}; its keywords: "
            f"{', '.join(current) or '(none)'}"
        )
    dropped = {w.casefold() for w in remove}
    kept = [w for w in current if w.casefold() not in dropped]
    added = [
        suggested[w.casefold()] for w in add if w.casefold() not in {k.casefold() for k in kept}
    ]
    new = [*kept, *dict.fromkeys(added)]
    reviewed = [w for w in details.get("reviewed_words", []) if w.casefold() not in dropped]
    details["reviewed_words"] = list(dict.fromkeys([*reviewed, *added]))
    details["source"] = "reviewed"
    await _rewrite(store, files, job, photo, details, new)
    await store.add_event(
        job.id,
        "review",
        f"{photo.file_name}: keywords reviewed (+{len(added)} −{len(remove)})",
        data={"photo": photo.file_name, "added": added, "removed": list(remove)},
    )
    return _view_after(photo, details)


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
        record = photo.phase(PHASE)
        if record is None or record.done_at is None or record.details is None:
            continue
        details = dict(record.details)
        if details.get("source") == "reviewed" and photo_ref is None:
            continue
        suggestions = [
            Suggestion(str(s["tag"]), float(s["confidence"])) for s in details["suggestions"]
        ]
        await _rewrite(
            store, files, job, photo, details, rules.choose(suggestions, spec, threshold=threshold)
        )
        views.append(_view_after(photo, details))
    await store.add_event(
        job.id, "review", f"keywords chosen again at {threshold:g}% for {len(views)} photos"
    )
    return views


async def _rewrite(
    store: Store,
    files: KeywordFiles,
    job: Job,
    photo: PhotoRecord,
    details: dict[str, Any],
    keywords: list[str],
) -> None:
    """Write the files, then the record, under the job's lease (refused while it is driven)."""
    lease = await store.claim(job.id, f"keywords-{os.getpid()}-{job.id}", REVIEW_LEASE_SECONDS)
    try:
        try:
            await write_keywords(files, job, details, keywords)
        except PhotoFailed as exc:
            raise Refused(exc.reason) from None
        record = photo.phase(PHASE)
        await store.checkpoint(
            lease,
            photo.id,
            PhaseDone(
                PHASE,
                output=record.output if record else None,
                md5=details["content_md5"],
                details=details,
            ),
        )
    finally:
        await store.release(lease)


def _chosen(photos: list[PhotoRecord], ref: str | None) -> list[PhotoRecord]:
    if ref is None:
        return photos
    matches = [p for p in photos if ref in (p.file_name, p.rel_path)]
    if not matches:
        names = ", ".join(p.file_name for p in photos[:10])
        raise ReviewRefused(f"no photo {ref!r} in this job; its photos: {names}")
    return matches[:1]


def _details(photo: PhotoRecord) -> dict[str, Any]:
    record = photo.phase(PHASE)
    if record is None or record.done_at is None or record.details is None:
        raise ReviewRefused(f"{photo.file_name} is not tagged yet")
    return dict(record.details)


def _view_after(photo: PhotoRecord, details: dict[str, Any]) -> dict[str, Any]:
    record = photo.phase(PHASE)
    assert record is not None
    record.details = details
    view = photo_view(photo)
    assert view is not None
    return view


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
    files = KeywordFiles(settings.exiftool)
    try:
        if add or remove:
            assert photo_ref is not None
            return [await review(store, files, job_ref, photo_ref, add=add, remove=remove)]
        if reselect_at is not None:
            rules = KeywordRules.of(
                settings.keyword_allowlist,
                settings.keyword_blocklist,
                settings.moderation_threshold,
            )
            return await reselect(store, files, rules, job_ref, photo_ref, threshold=reselect_at)
        return (await keyword_views(store, job_ref, photo_ref))[1]
    finally:
        files.close()
        await store.close()
