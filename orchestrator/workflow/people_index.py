"""The studio's face recognition index at Imagga (`ORCH_PEOPLE_INDEX`), so that regular
clients are recognised in the next shoot.

Teaching: naming a person (`orchestrator people`, the people page) feeds the index that name
with the person's face ids and trains it. The training's ticket is kept (by the md5 of the
index, the name and the faces) before anything else happens, and its end once Imagga says it is
final, so that naming again, a second window or a crash never pays for the same training twice:
at most the request in flight when a process died is repeated.

Recognising: once a new job's faces are grouped, each person not named yet is looked up in the
index by their first face (one billed request per person, kept by the md5 of the index and the
face, so a resumed job never asks again); a match scoring at least RECOGNISED_SCORE names the
person in every photo, as a name given by hand would, and the history says so. The person can
still be renamed or unnamed afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.apicore.errors import ApiNotFound
from orchestrator.crashpoints import crash_point
from orchestrator.integrations.imagga_models import Match, quota_spent
from orchestrator.integrations.tagging import Tagging
from orchestrator.store.queries import PhaseDone, PhotoRecord, Store
from orchestrator.store.tag_results import keep_result, kept_result
from orchestrator.words import plural
from orchestrator.workflow.analyses import kept_answer
from orchestrator.workflow.context import JobContext, JobPaused
from orchestrator.workflow.people import name_person
from orchestrator.workflow.tag_details import TAG_PHASE, TagDetails

if TYPE_CHECKING:
    # Types only: the keywording stage's declaration loads no HTTP stack.
    from orchestrator.integrations.imagga import ImaggaClient

TRAINING = "recognition-training"
TRAINED = "recognition-trained"
LOOKUP = "recognition-lookup"
"""The kept answers: a training's ticket, its end, and the persons a face was matched with."""
RECOGNISED_SCORE = 0.5
"""The score (0..1) from which a match names a person."""
TRAINING_WAIT_SECONDS = 30.0
FIRST_LOOK_SECONDS = 0.2
"""A naming waits this long at most for its training, looking at the ticket ever less often."""


@dataclass(frozen=True)
class Taught:
    """What teaching the index a name came to."""

    faces: int
    final: bool
    """The training is done (else still under way at Imagga: the next naming looks again)."""
    paid: bool
    """A training was asked for now (not kept from an earlier naming)."""


def training_key(index_id: str, name: str, faces: Sequence[str]) -> str:
    """The kept training's key: the index, the name and the faces taught."""
    return hashlib.md5("\n".join([index_id, name, *sorted(faces)]).encode()).hexdigest()


async def teach(
    store: Store, imagga: ImaggaClient, index_id: str, name: str, faces: Sequence[str]
) -> Taught:
    """Teach the index that these faces are `name`: fed and trained once (the ticket kept),
    then waited for a while."""
    key = training_key(index_id, name, faces)
    if await kept_result(store, key, TRAINED) is not None:
        return Taught(len(faces), final=True, paid=False)
    kept = await kept_result(store, key, TRAINING)
    if kept is None:
        usage = await imagga.usage()
        if usage.left < 1:
            raise JobPaused(f"teaching the studio's index needs 1 request: {quota_spent(usage)}")
        await imagga.feed_index(index_id, {name: list(faces)})
        ticket_id = await imagga.train_index(index_id)
        crash_point("after_index_training_requested")
        await asyncio.shield(keep_result(store, key, TRAINING, [ticket_id]))
    else:
        [ticket_id] = kept
    final = await _trained(imagga, str(ticket_id))
    if final:
        await keep_result(store, key, TRAINED, [True])
    return Taught(len(faces), final=final, paid=kept is None)


async def _trained(imagga: ImaggaClient, ticket_id: str) -> bool:
    """Whether the training is done, looked at for up to TRAINING_WAIT_SECONDS."""
    delay, waited = FIRST_LOOK_SECONDS, 0.0
    while True:
        try:
            if await imagga.ticket_final(ticket_id):
                return True
        except ApiNotFound:
            return True  # Imagga forgets a ticket once its final answer was read
        if waited >= TRAINING_WAIT_SECONDS:
            return False
        await asyncio.sleep(delay)
        waited += delay
        delay = min(delay * 2, 5.0)


def faces_of(photos: Sequence[PhotoRecord], label: str) -> list[str]:
    """The face ids of person `label`, in the order of the shoot."""
    found: list[str] = []
    for photo in sorted(photos, key=lambda p: p.rel_path):
        details = TagDetails.of(photo)
        for face in (details.faces if details else None) or ():
            if face.person == label and face.face_id and face.face_id not in found:
                found.append(face.face_id)
    return found


async def recognise_people(ctx: JobContext, tagging: Tagging) -> None:
    """Name each person of the job whom the studio's index knows (see the module)."""
    index_id = tagging.people_index
    if not index_id:
        return
    photos = await ctx.store.photos(ctx.job.id)
    unnamed = _unnamed_labels(photos)
    recognised = 0
    for label in unnamed:
        faces = faces_of(photos, label)
        if not faces:
            continue
        best = await _best_match(ctx, tagging, index_id, faces[0])
        if best is None:
            continue
        named = await _name_everywhere(ctx, tagging, label, best.person)
        recognised += 1
        await ctx.event(
            "people",
            f"person {label} recognised as {best.person} from the studio's index "
            f"{index_id!r} (score {best.score:.2f}) in {plural(named, 'photo')}",
            data={"group": label, "name": best.person, "score": best.score, "index": index_id},
        )
        photos = await ctx.store.photos(ctx.job.id)
    if unnamed and not recognised:
        await ctx.event("people", f"nobody of this shoot is in the studio's index {index_id!r} yet")


def _unnamed_labels(photos: Sequence[PhotoRecord]) -> list[str]:
    """The persons with a face not named yet, by label."""
    labels: set[str] = set()
    for photo in photos:
        details = TagDetails.of(photo)
        for face in (details.faces if details else None) or ():
            if face.person is not None and face.name is None:
                labels.add(face.person)
    return sorted(labels, key=int)


async def _best_match(
    ctx: JobContext, tagging: Tagging, index_id: str, face_id: str
) -> Match | None:
    """The index's best person for the face (asked once, kept), if it scores enough."""

    async def ask() -> list[list[object]]:
        usage = await tagging.imagga.usage()
        if usage.left < 1:
            raise JobPaused(f"looking people up in the index needs 1 request: {quota_spent(usage)}")
        return [[m.person, m.score] for m in await tagging.imagga.recognise(index_id, face_id)]

    key = hashlib.md5(f"{index_id}\n{face_id}".encode()).hexdigest()
    kept = await kept_answer(ctx.store, tagging, key, LOOKUP, ask)
    matches = [Match(str(person), float(score)) for person, score in kept]
    best = max(matches, key=lambda m: m.score, default=None)
    return best if best is not None and best.score >= RECOGNISED_SCORE else None


async def _name_everywhere(ctx: JobContext, tagging: Tagging, label: str, name: str) -> int:
    """Name person `label` in every photo (files, then record); the photos named."""
    named = 0
    for photo in await ctx.store.photos(ctx.job.id):
        details = TagDetails.of(photo)
        if details is None:
            continue
        done = await name_person(tagging.files, ctx.job, details, label, name)
        if done is None:
            continue
        record = photo.phase(TAG_PHASE)
        await ctx.store.checkpoint(
            ctx.lease,
            photo.id,
            PhaseDone(
                TAG_PHASE,
                output=record.output if record else None,
                md5=done.content_md5,
                details=done.stored(),
            ),
        )
        named += 1
    return named
