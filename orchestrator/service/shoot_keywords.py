"""A shoot's own keywords (`--keyword`: the couple, the venue), edited after the run: kept on
the shoot and in each job's spec, rewritten into every output file of every job of it."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

from orchestrator.errors import Refused
from orchestrator.integrations.keywords import KeywordFiles
from orchestrator.spec import JobSpec, shoot_keywords
from orchestrator.store import shoots
from orchestrator.store.models import Shoot
from orchestrator.store.queries import Store
from orchestrator.workflow.keywording import write_shoot_keywords
from orchestrator.workflow.lease import borrow
from orchestrator.workflow.outputs import output_file

LEASE_SECONDS = 60.0
"""How long rewriting a shoot's files may hold each job's lease without renewing it."""


class ShootKeywordsRefused(Refused):
    """The words cannot be keywords (too long, a `|`); the message says which."""


@dataclass(frozen=True)
class EditedShoot:
    """The shoot's words after the edit, and how many files carry them now."""

    shoot: Shoot
    keywords: tuple[str, ...]
    files: int


async def edit_shoot_keywords(
    store: Store,
    files: KeywordFiles,
    ref: str,
    *,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
) -> EditedShoot:
    """Add and remove the shoot's own words; every edited and exported file of its jobs is
    rewritten (other words in them stay). Each job's lease is held meanwhile, so no driver
    writes the old words at the same time (LeaseHeld while one runs)."""
    shoot = await shoots.resolve_shoot(store, ref)
    dropped = {word.casefold() for word in remove}
    try:
        words = shoot_keywords([w for w in (*shoot.keywords, *add) if w.casefold() not in dropped])
    except ValueError as exc:
        raise ShootKeywordsRefused(str(exc)) from None
    gone = [w for w in shoot.keywords if w not in words] + [
        w for w in remove if w.casefold() not in {k.casefold() for k in shoot.keywords}
    ]
    jobs = (await shoots.jobs_of_shoots(store, [shoot.id])).get(shoot.id, [])
    written = 0
    async with AsyncExitStack() as held:
        leases = [
            await held.enter_async_context(
                borrow(store, job.id, purpose="shoot-keywords", ttl=LEASE_SECONDS)
            )
            for job, _ in jobs
        ]
        for job, _ in jobs:
            spec = JobSpec.from_stored(job.options)
            for photo in await store.photos(job.id):
                for phase in ("edit", "export"):
                    path = output_file(job, spec, photo, phase)
                    if path is not None and path.exists():
                        written += await write_shoot_keywords(files, path, add=words, remove=gone)
        await shoots.set_keywords(store, shoot.id, words, leases)
        for job, _ in jobs:
            await store.add_event(
                job.id,
                "review",
                f"the shoot's keywords are now: {', '.join(words) or '(none)'}",
                data={"shoot_keywords": list(words), "removed": gone},
            )
    return EditedShoot(await shoots.get_shoot(store, shoot.id), words, written)
