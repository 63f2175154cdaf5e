"""Readiness: the database answers, carries exactly the schema this code was written for, and
takes writes.

A database can answer reads and refuse every write: on SQLite another connection holding the
write lock (a long `sqlite3` session, a backup tool) makes each write wait out the busy timeout
and fail; on Postgres a server that turned read-only (a standby after a failover) refuses them
all. So the check ends with a write probe that writes nothing: on SQLite it takes the write
lock (`BEGIN IMMEDIATE`) with a short busy timeout and gives it back at once; on Postgres it
asks whether transactions are read-only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.store.db import SQLITE_BUSY_TIMEOUT_MS
from orchestrator.store.migrate import head_revision, revision_on
from orchestrator.store.queries import Store
from orchestrator.store.scheduling import database_errors

CHECK_TIMEOUT = 3.0
"""Seconds the database gets to answer a readiness check."""
WRITE_PROBE_TIMEOUT_MS = 1000
"""How long the SQLite write probe waits for the write lock: a writer holding it longer makes
every write of this daemon wait too."""


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
        """Ask the database its schema revision (which proves it answers), then whether it takes
        writes, within a timeout."""
        try:
            async with asyncio.timeout(CHECK_TIMEOUT), self._store.engine.connect() as conn:
                revision = await conn.run_sync(revision_on)
                refusal = await _write_refusal(conn)
        except database_errors() as exc:
            # The type only: driver messages may quote the connection string.
            return Readiness(False, f"unreachable ({type(exc).__name__})", "unknown")
        if revision != self._head:
            return Readiness(
                False,
                "ok",
                f"at {revision}, this daemon needs {self._head}: run "
                "`orchestrator db upgrade` (or upgrade the daemon if it is newer)",
            )
        if refusal is not None:
            return Readiness(False, refusal, f"current ({revision})")
        return Readiness(True, "ok", f"current ({revision})")


async def _write_refusal(conn: AsyncConnection) -> str | None:
    """Why writes would fail now, or None when the database takes them."""
    if conn.dialect.name == "postgresql":
        read_only = (await conn.execute(text("SHOW transaction_read_only"))).scalar_one()
        return "writes refused: the server is read-only" if read_only == "on" else None
    await conn.exec_driver_sql(f"PRAGMA busy_timeout={WRITE_PROBE_TIMEOUT_MS}")
    try:
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
    except OperationalError as exc:
        if "locked" not in str(exc.orig) and "busy" not in str(exc.orig):
            raise
        return "writes blocked: another connection holds the database's write lock"
    finally:
        await conn.rollback()
        await conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    return None
