"""The shoot folder compared with what its jobs recorded, once they exist: new photos joining a
job before its upload, photos renamed or changed or removed, and photos that came after the
upload (added late: a follow-up job sends them, `run --add` or a hot folder's next look)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.states import JobState
from orchestrator.store.models import Job
from orchestrator.store.queries import Lease, NewPhoto, RecordedPhoto, Store
from orchestrator.transfer.hashing import file_md5
from orchestrator.words import plural
from orchestrator.workflow.lease import borrow
from orchestrator.workflow.picks import NOT_PICKED
from orchestrator.workflow.shoot import FoundPhoto, ShootError, match_renamed, scan_shoot
from orchestrator.workflow.upload import ADDED_LATE

if TYPE_CHECKING:
    from orchestrator.workflow.planning import RunRequest

NOT_UPLOADED_YET = frozenset({JobState.QUEUED, JobState.PROJECT_CREATED, JobState.UPLOADING})
"""States in which photos found later can still join the job (and changed ones be re-sent)."""
FINISHED = frozenset({JobState.COMPLETED, JobState.CANCELLED, JobState.FAILED})
"""States of a job that planning hands back without it bringing anything more back."""
SHOWN_NAMES = 5
"""Photos named in one note before the rest are summed up as "…"."""
PLANNER_LEASE_SECONDS = 30.0
"""How long adding new photos to a job may hold its lease without renewing it."""


def new_photo(photo: FoundPhoto) -> NewPhoto:
    """A found photo as a job records it."""
    return NewPhoto(photo.rel_path, photo.file_name, photo.size, photo.mtime_ns)


async def look_again(store: Store, request: RunRequest, jobs: Sequence[Job]) -> list[str]:
    """After a run drove `jobs`: the photos that landed in the folder meanwhile, after their
    job's upload, named in its history as added late (`run --add` sends them); the notes
    that say so. Nothing is made or sent."""
    source = request.source.resolve()
    current = [await store.get_job(job.id) for job in jobs]
    recorded = {job.id: await store.recorded_photos(job.id) for job in current}
    known = {p.rel_path: (p.size, p.mtime_ns) for photos in recorded.values() for p in photos}
    scan = await asyncio.to_thread(
        functools.partial(
            scan_shoot, source, prefix_subfolders=request.prefix_subfolders, known=known
        )
    )
    kept_back = {
        str(entry.get("path"))
        for events in (await store.events_of_kinds([j.id for j in current], (NOT_PICKED,))).values()
        for event in events
        for entry in (event.data or {}).get("photos", [])
        if isinstance(entry, dict)
    }
    notes: list[str] = []
    for kind, every in scan.photos.items():
        found = [p for p in every if p.rel_path not in kept_back]  # --min-rating's choice
        of_kind = sorted(
            (job for job in current if job.image_type == kind.value),
            key=lambda job: job.created_at,
            reverse=True,
        )
        if of_kind:
            told = {
                str(path)
                for event in await store.events(of_kind[0].id)
                if event.kind == ADDED_LATE and event.data
                for path in event.data.get("photos", [])
            }
            news = [p for p in found if p.rel_path not in told]  # said before the run
            notes += await sync_photos(store, of_kind, recorded, news, follow_up=False)
        else:
            notes.append(
                f"{plural(len(found), f'{kind.value} photo')} came into the folder during the "
                "run; run it again (with a --profile for them) to edit them"
            )
    return notes


async def sync_photos(
    store: Store,
    jobs: list[Job],
    recorded: Mapping[str, list[RecordedPhoto]],
    found: list[FoundPhoto],
    *,
    follow_up: bool,
) -> list[str]:
    """Compare the folder with the photos of one image type's jobs of the shoot (newest
    first): report what changed, let new photos join the latest job if in time.

    Until every photo is uploaded, new photos join the job and the upload stage sends changed
    ones again. After that, Imagen edits the versions it has: changes are only reported, and
    new photos wait for a follow-up job (`follow_up`: made by the caller now; else they are
    named in the job's history as added late).
    """
    job = jobs[0]
    notes: list[str] = []
    for each in jobs:
        if past_upload(each) or (follow_up and each.state == JobState.COMPLETED):
            mine = {p.rel_path for p in recorded[each.id]}
            notes += await report_late_changes(
                store, each, recorded[each.id], [p for p in found if p.rel_path in mine]
            )
    photos = recorded[job.id]
    held = {p.rel_path for each in jobs for p in recorded[each.id]}
    added = [p for p in found if p.rel_path not in held]
    if not added:
        return notes
    if job.state in NOT_UPLOADED_YET:
        taken = {Path(p.file_name).stem.lower() for p in photos}
        clashing = [p for p in added if Path(p.file_name).stem.lower() in taken]
        if clashing:
            listed = ", ".join(p.rel_path for p in clashing[:5])
            raise ShootError(
                f"{job.name}: new photos {listed} have the same name as photos already "
                "in the job; rename them or move them to another shoot"
            )
        async with borrow(store, job.id, purpose="planner", ttl=PLANNER_LEASE_SECONDS) as lease:
            renamed = await follow_renames(store, lease, job, found, added)
            added = [p for p in added if p.rel_path not in renamed]
            if added:
                await store.add_photos(lease, [new_photo(p) for p in added])
        notes += [
            f"{job.name}: {old} was renamed to {new}; it stays in the job"
            for new, old in renamed.items()
        ]
        if not added:
            return notes
        await store.add_event(job.id, "source", f"{plural(len(added), 'new photo')} joined the job")
        return [*notes, f"{job.name}: {plural(len(added), 'new photo')} found; they join the job"]
    if follow_up:
        return notes
    reported = {
        str(path)
        for event in await store.events(job.id)
        if event.kind == ADDED_LATE and event.data
        for path in event.data.get("photos", [])
    }
    unreported = [p.rel_path for p in added if p.rel_path not in reported]
    if unreported:
        await store.add_event(
            job.id,
            ADDED_LATE,
            f"{plural(len(unreported), 'photo')} added after the upload "
            f"({names(unreported)}): not part of this job; `run FOLDER --add` (or `submit "
            "FOLDER --add`) sends them in a follow-up job",
            data={"photos": unreported},
        )
    return [
        *notes,
        f"{job.name}: {plural(len(added), 'photo')} added after the upload "
        f"({names(p.rel_path for p in added)}); they are not part of this job: run (or submit) "
        "the folder again with --add to send them in a follow-up job of the same shoot",
    ]


async def follow_renames(
    store: Store, lease: Lease, job: Job, found: list[FoundPhoto], added: list[FoundPhoto]
) -> dict[str, str]:
    """Record photos renamed in the folder before their upload under their new names; the
    old name of each, by its new one."""
    here = {p.rel_path for p in found}
    missing = [p for p in await store.photos(job.id) if p.rel_path not in here]
    renamed: dict[str, str] = {}
    for old, new in match_renamed([p for p in missing if not p.done("upload")], added):
        await store.rename_photo(lease, old.id, new.rel_path, new.file_name)
        await store.add_event(
            job.id, "source", f"{old.rel_path} was renamed to {new.rel_path}; it stays in the job"
        )
        renamed[new.rel_path] = old.rel_path
    return renamed


def past_upload(job: Job) -> bool:
    """Whether the job's photos are all at Imagen and the job still has work to do."""
    state = job.state
    if state == JobState.FAILED and job.state_before_failure:
        state = job.state_before_failure
    return state not in NOT_UPLOADED_YET | {JobState.COMPLETED, JobState.CANCELLED, JobState.FAILED}


async def report_late_changes(
    store: Store, job: Job, photos: list[RecordedPhoto], found: list[FoundPhoto]
) -> list[str]:
    """Notes (and history) for photos changed or removed after they were uploaded (of a job
    that ended: changed ones only, each once; they are never sent again).

    A photo whose mtime moved but whose size did not is hashed: touching is not changing.
    """
    ended = job.state in FINISHED
    now = {p.rel_path: p for p in found}
    changed: list[str] = []
    removed: list[str] = []
    for photo in photos:
        current = now.get(photo.rel_path)
        if current is None:
            if not ended:
                removed.append(photo.rel_path)
        elif (current.size, current.mtime_ns) != (photo.size, photo.mtime_ns) and not (
            current.size == photo.size
            and photo.md5
            and (await file_md5(current.path)).hex() == photo.md5
        ):
            changed.append(photo.rel_path)
    if ended:
        told = {
            str(path)
            for event in await store.events(job.id)
            if event.kind == "source" and event.data
            for path in event.data.get("changed", [])
        }
        changed = [path for path in changed if path not in told]
    notes: list[str] = []
    if changed:
        message = (
            f"{plural(len(changed), 'photo')} changed after the upload "
            f"({names(changed)}); Imagen edits the versions it was sent, and they are not "
            "sent again. To edit the new versions, put them in a new folder and run that"
        )
        await store.add_event(job.id, "source", message, data={"changed": changed})
        notes.append(f"{job.name}: {message}")
    if removed:
        message = (
            f"{plural(len(removed), 'photo')} removed from the folder after the upload "
            f"({names(removed)}); Imagen has them, so their edits still "
            "arrive"
        )
        await store.add_event(job.id, "source", message, data={"removed": removed})
        notes.append(f"{job.name}: {message}")
    return notes


def names(paths: Iterable[str]) -> str:
    listed = list(paths)
    return ", ".join(listed[:SHOWN_NAMES]) + (" …" if len(listed) > SHOWN_NAMES else "")
