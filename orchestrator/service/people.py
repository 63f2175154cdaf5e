"""`orchestrator people` and the people page: a job's persons (its faces grouped by Imagga,
`--people`), and naming one of them once: every photo of that person then carries `People|Name`
and `Name` among its keywords and a named MWG face region, in each of its files. With the
studio's index (`ORCH_PEOPLE_INDEX`), the name is also taught to it (`workflow/people_index.py`),
so that the person is recognised in the next shoot."""

from __future__ import annotations

from contextlib import AsyncExitStack

import aiohttp

from orchestrator.apicore.errors import ApiError
from orchestrator.config import Settings
from orchestrator.errors import OperatorRefusal, Transient
from orchestrator.integrations.keywords import KeywordFiles, clean_word
from orchestrator.rules.keywords import KEYWORD_BYTES
from orchestrator.service.database import open_store
from orchestrator.spec import JobSpec
from orchestrator.store.models import Job
from orchestrator.store.queries import PhaseDone, Store
from orchestrator.words import plural
from orchestrator.workflow.lease import borrow
from orchestrator.workflow.people import Person, name_person, people_of
from orchestrator.workflow.people_index import Taught, faces_of, teach
from orchestrator.workflow.photos import PhotoFailed
from orchestrator.workflow.services import TAGGING
from orchestrator.workflow.stage import Connection
from orchestrator.workflow.tag_details import TAG_PHASE, TagDetails

PEOPLE_LEASE_SECONDS = 60.0


class PeopleRefused(OperatorRefusal, ValueError):
    """The job has no such person, or the name cannot be a keyword; says why."""


def checked_name(name: str) -> str:
    """The name as it goes into the files: one line, at most IPTC's 64 bytes."""
    cleaned = clean_word(name)
    if not cleaned:
        raise PeopleRefused("give the person a name, e.g. --name Anna")
    if len(cleaned.encode()) > KEYWORD_BYTES:
        raise PeopleRefused(f"a name is at most {KEYWORD_BYTES} bytes (it becomes a keyword)")
    return cleaned


async def people(store: Store, job_ref: str) -> tuple[Job, list[Person]]:
    """The job named by `job_ref` and its persons (none until its faces are grouped)."""
    job = await store.resolve_job(job_ref)
    spec = JobSpec.from_stored(job.options)
    if spec.tag is None or not spec.tag.people:
        raise PeopleRefused(
            f"job {job.id[:8]} was not asked to group people: run a shoot with --tag --people"
        )
    return job, people_of(await store.photos(job.id))


async def name(
    store: Store,
    files: KeywordFiles,
    job_ref: str,
    label: str,
    given: str | None,
    *,
    settings: Settings | None = None,
) -> Person:
    """Name person `label` of the job (None takes the name away) in every photo they are in:
    the files first, then each photo's record, under the job's borrowed lease; then, when
    `settings` keep a studio's index, teach it the name."""
    job, persons = await people(store, job_ref)
    if not any(person.label == label for person in persons):
        known = ", ".join(p.label for p in persons) or "none yet"
        raise PeopleRefused(f"job {job.id[:8]} has no person {label!r}; its persons: {known}")
    new_name = checked_name(given) if given is not None else None
    async with borrow(store, job.id, purpose="people", ttl=PEOPLE_LEASE_SECONDS) as lease:
        for photo in await store.photos(job.id):
            details = TagDetails.of(photo)
            if details is None:
                continue
            try:
                named = await name_person(files, job, details, label, new_name)
            except PhotoFailed as exc:
                raise PeopleRefused(exc.reason) from None
            if named is None:
                continue
            record = photo.phase(TAG_PHASE)
            await store.checkpoint(
                lease,
                photo.id,
                PhaseDone(
                    TAG_PHASE,
                    output=record.output if record else None,
                    md5=named.content_md5,
                    details=named.stored(),
                ),
            )
    photos = await store.photos(job.id)
    [person] = [p for p in people_of(photos) if p.label == label]
    said = f"named {new_name!r}" if new_name else "unnamed"
    await store.add_event(
        job.id,
        "people",
        f"person {label} {said} in {plural(len(person.photos), 'photo')}",
        data={"group": label, "name": new_name, "photos": list(person.photos)},
    )
    if new_name is not None and settings is not None and settings.people_index:
        # After the lease is given back: a training that waits holds no job up.
        await _teach(store, settings, job, label, new_name, faces_of(photos, label))
    return person


async def _teach(
    store: Store, settings: Settings, job: Job, label: str, name: str, faces: list[str]
) -> None:
    """Teach the studio's index that the person's faces are `name`, over a session of its own;
    recorded in the job's history. The files are named already: a failure says so."""
    index_id = settings.people_index
    assert index_id is not None  # asked for only with an index
    if not faces:
        return
    if refusal := TAGGING.refusal(settings):
        raise PeopleRefused(f"named in the files, but the studio's index was not taught: {refusal}")
    try:
        async with aiohttp.ClientSession() as session, AsyncExitStack() as closing:
            tagging = TAGGING.build(settings.tagging, Connection(session, None, closing))
            taught: Taught = await teach(store, tagging.imagga, index_id, name, faces)
    except (Transient, ApiError) as exc:
        raise PeopleRefused(
            f"named in the files, but the studio's index {index_id!r} was not taught: {exc}; "
            "name the person again to retry"
        ) from None
    state = "trained" if taught.final else "training under way at Imagga"
    await store.add_event(
        job.id,
        "people",
        f"person {label} taught to the studio's index {index_id!r} as {name!r} "
        f"({plural(taught.faces, 'face')}; {state}"
        f"{'' if taught.paid else ', asked for before'})",
        data={"group": label, "name": name, "index": index_id, "paid": taught.paid},
    )


async def people_command(
    settings: Settings, job_ref: str, label: str | None, given: str | None, *, unname: bool
) -> tuple[Job, list[Person]]:
    """`orchestrator people`: the job's persons, after naming one if asked. Opens the database
    and the file writer, and closes them."""
    store = await open_store(settings)
    files = KeywordFiles(settings.tagging.exiftool)
    try:
        if label is not None and (given is not None or unname):
            await name(store, files, job_ref, label, None if unname else given, settings=settings)
        return await people(store, job_ref)
    finally:
        files.close()
        await store.close()
