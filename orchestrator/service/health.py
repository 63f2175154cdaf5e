"""Readiness: the database answers and carries exactly the schema this code was written for."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from orchestrator.store.migrate import head_revision, revision_on
from orchestrator.store.queries import Store
from orchestrator.store.scheduling import database_errors

CHECK_TIMEOUT = 3.0
"""Seconds the database gets to answer a readiness check."""


@dataclass(frozen=True)
class Readiness:
    """The answer of /readyz: ready or not, and why."""

    ready: bool
    database: str
    schema: str


class DatabaseHealth:
    """Checks the database for /readyz and for the scheduler before it claims work."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._head = head_revision()

    async def check(self) -> Readiness:
        """Ask the database its schema revision (which proves it answers), within a timeout."""
        try:
            async with asyncio.timeout(CHECK_TIMEOUT), self._store.engine.connect() as conn:
                revision = await conn.run_sync(revision_on)
        except database_errors() as exc:
            # The type only: driver messages may quote the connection string.
            return Readiness(False, f"unreachable ({type(exc).__name__})", "unknown")
        if revision == self._head:
            return Readiness(True, "ok", f"current ({revision})")
        return Readiness(
            False,
            "ok",
            f"at {revision}, this daemon needs {self._head}: run "
            "`orchestrator db upgrade` (or upgrade the daemon if it is newer)",
        )
