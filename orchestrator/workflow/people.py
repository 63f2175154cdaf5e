"""People (`--people`): the faces of a job grouped into persons by Imagga, once every photo's
faces are detected, so that a person named once (`orchestrator people`, the people page) is
named in every photo: `People|Anna` keywords and named MWG face regions.

The grouping is asynchronous at Imagga: `POST /faces/groupings` answers a ticket, which is kept
(by the md5 of the job's face ids) before anything else happens, so a crash never asks twice;
the ticket is then looked at with growing pauses. Waiting costs nothing, as an edit does: under
`run` the job naps in the process; a daemon's job sleeps in the database until its wake time.
The groups, once final, are kept the same way, and each face gets its person's label ("1",
"2", …, by first appearance in the shoot).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.crashpoints import crash_point
from orchestrator.integrations.imagga_models import quota_spent
from orchestrator.integrations.keywords import KeywordFiles
from orchestrator.integrations.tagging import Tagging
from orchestrator.store.models import Job, utcnow
from orchestrator.store.queries import PhaseDone, PhotoRecord
from orchestrator.store.tag_results import keep_result, kept_at, kept_result
from orchestrator.words import plural
from orchestrator.workflow.analyses import kept_answer
from orchestrator.workflow.context import JobContext, JobPaused, JobWaiting
from orchestrator.workflow.keywording import write_keywords
from orchestrator.workflow.tag_details import TAG_PHASE, TagDetails

TICKET = "groupings-ticket"
GROUPS = "groupings"
"""The kept answers' analyses: the ticket asked for, and the groups it gave."""
FIRST_LOOK_SECONDS = 0.5
LONGEST_LOOK_SECONDS = 30.0
"""The pauses between looks at a ticket grow from the first to the longest."""


@dataclass(frozen=True)
class Person:
    """One person of a job: their label, the name given, and the photos they are in."""

    label: str
    name: str | None
    photos: tuple[str, ...]
    faces: int
    photo_ids: tuple[int, ...] = ()
    """The photos' ids, as the page links their images."""

    def to_json(self) -> dict[str, object]:
        """As `orchestrator people --json` prints it."""
        return {
            "group": self.label,
            "name": self.name,
            "photos": list(self.photos),
            "faces": self.faces,
        }


def job_faces(photos: Sequence[PhotoRecord]) -> list[str]:
    """Every face id of the job's photos, in the order of the shoot (each once)."""
    found: list[str] = []
    for photo in sorted(photos, key=lambda p: p.rel_path):
        details = TagDetails.of(photo)
        for face in (details.faces if details else None) or ():
            if face.face_id and face.face_id not in found:
                found.append(face.face_id)
    return found


def people_of(photos: Sequence[PhotoRecord]) -> list[Person]:
    """The job's persons, by label, with the photos each is in."""
    seen: dict[str, tuple[str | None, dict[str, int], int]] = {}
    for photo in sorted(photos, key=lambda p: p.rel_path):
        details = TagDetails.of(photo)
        for face in (details.faces if details else None) or ():
            if face.person is None:
                continue
            name, where, count = seen.get(face.person, (None, {}, 0))
            where[photo.rel_path] = photo.id
            seen[face.person] = (name or face.name, where, count + 1)
    return [
        Person(label, name, tuple(where), count, tuple(where.values()))
        for label, (name, where, count) in sorted(seen.items(), key=lambda item: int(item[0]))
    ]


def labels(faces: Sequence[str], groups: Sequence[Sequence[str]]) -> dict[str, str]:
    """Each face's person label: the groups (a face in none is a person of its own) numbered
    by their first face's place in the shoot."""
    place = {face: index for index, face in enumerate(faces)}
    persons = [[f for f in group if f in place] for group in groups]
    grouped = {face for group in persons for face in group}
    persons = [group for group in persons if group] + [[f] for f in faces if f not in grouped]
    persons.sort(key=lambda group: min(place[f] for f in group))
    return {face: str(number) for number, group in enumerate(persons, 1) for face in group}


async def group_people(ctx: JobContext, tagging: Tagging) -> None:
    """Group the job's faces into persons (asked once, kept) and label every face."""
    photos = await ctx.store.photos(ctx.job.id)
    faces = job_faces(photos)
    if not faces:
        await ctx.event("people", "no faces to group into people")
        return
    key = hashlib.md5("\n".join(sorted(faces)).encode()).hexdigest()
    groups = await kept_result(ctx.store, key, GROUPS)
    if groups is None:
        groups = await _grouped(ctx, tagging, key, faces)
    labelled = labels(faces, groups)
    changed = 0
    for photo in photos:
        details = TagDetails.of(photo)
        if details is None or not details.faces:
            continue
        faces_now = tuple(
            face.model_copy(update={"person": labelled.get(face.face_id or "")})
            for face in details.faces
        )
        if faces_now != details.faces:
            await _record(ctx, photo, details.model_copy(update={"faces": faces_now}))
            changed += 1
    persons = len(set(labelled.values()))
    if changed:
        await ctx.event(
            "people",
            f"{plural(len(faces), 'face')} grouped into {plural(persons, 'person')}; name them "
            f"with `orchestrator people {ctx.job.id[:8]}` or on the page /jobs/{ctx.job.id}/people",
        )


async def _grouped(
    ctx: JobContext, tagging: Tagging, key: str, faces: list[str]
) -> list[list[str]]:
    """Ask for the grouping (once: the ticket is kept), then look at the ticket until final."""

    async def ask() -> list[str]:
        usage = await tagging.imagga.usage()
        if usage.left < 1:
            raise JobPaused(f"grouping the faces into people needs 1 request: {quota_spent(usage)}")
        return [await tagging.imagga.group_faces(faces)]

    [ticket_id] = await kept_answer(ctx.store, tagging, key, TICKET, ask)
    crash_point("after_grouping_requested")
    asked_at = await kept_at(ctx.store, key, TICKET) or utcnow()
    # Growing with the ticket's age, so that a resumed job keeps the backoff it had.
    age = (utcnow() - asked_at).total_seconds()
    delay = min(LONGEST_LOOK_SECONDS, max(FIRST_LOOK_SECONDS, age / 4))
    while True:
        state = await tagging.imagga.ticket(str(ticket_id))
        if state.final:
            groups = [list(group) for group in state.groups]
            await keep_result(ctx.store, key, GROUPS, groups)
            return groups
        if not ctx.config.wait_inline:
            raise JobWaiting(delay)
        await ctx.nap(delay)
        delay = min(LONGEST_LOOK_SECONDS, delay * 2)


async def _record(ctx: JobContext, photo: PhotoRecord, details: TagDetails) -> None:
    record = photo.phase(TAG_PHASE)
    await ctx.store.checkpoint(
        ctx.lease,
        photo.id,
        PhaseDone(
            TAG_PHASE,
            output=record.output if record else None,
            md5=details.content_md5,
            details=details.stored(),
        ),
    )


async def name_person(
    files: KeywordFiles, job: Job, details: TagDetails, label: str, name: str | None
) -> TagDetails | None:
    """The photo's details with its faces of person `label` named `name` (None: unnamed),
    once written into its files (keywords and regions); None if the person is not in it."""
    if not any(face.person == label for face in details.faces or ()):
        return None
    named = details.model_copy(
        update={
            "faces": tuple(
                face.model_copy(update={"name": name}) if face.person == label else face
                for face in details.faces or ()
            )
        }
    )
    return await write_keywords(files, job, named, named.keywords, retired=details)
