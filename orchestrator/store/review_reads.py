"""What changed in a job's review since a moment: the `tag` phase rows written after it (each
review write stamps its row's `done_at`), for the review page's poll and its kept grid; and a
mark that says whether anything of a job's photos changed at all. Each one query over the rows
that changed (or one aggregate), never the job's other photos."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from orchestrator.store.models import PhotoPhase
from orchestrator.store.queries import Store


@dataclass(frozen=True)
class TagChange:
    """A photo's `tag` phase as written at `done_at`."""

    photo_id: int
    details: dict[str, Any] | None
    done_at: datetime


async def tag_changes(store: Store, job_id: str, since: datetime, phase: str) -> list[TagChange]:
    """The job's `phase` rows done after `since`, oldest first."""
    query = (
        select(PhotoPhase.photo_id, PhotoPhase.details, PhotoPhase.done_at)
        .where(
            PhotoPhase.job_id == job_id,
            PhotoPhase.phase == phase,
            PhotoPhase.done_at > since,
        )
        .order_by(PhotoPhase.done_at, PhotoPhase.photo_id)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [TagChange(int(pid), details, done_at) for pid, details, done_at in rows if done_at]


@dataclass(frozen=True)
class PhasesMark:
    """How many phase rows a job's photos have and the latest written: when neither moved,
    nothing a view of its photos shows did."""

    rows: int
    latest: datetime | None


async def phases_mark(store: Store, job_id: str) -> PhasesMark:
    """The job's `PhasesMark` (one aggregate over its phase rows)."""
    query = select(func.count(), func.max(PhotoPhase.done_at)).where(PhotoPhase.job_id == job_id)
    async with store.engine.connect() as conn:
        rows, latest = (await conn.execute(query)).one()
    return PhasesMark(int(rows), latest)
