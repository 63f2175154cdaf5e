"""The database's clock, on which every lease is given and judged.

Daemons on several machines share one Postgres, and each machine's clock is its own: a lease
written with one machine's time and judged with another's is taken early by a machine that runs
ahead, and kept late by one that runs behind. So a lease's expiry is always set from, and
compared with, the database's time, read in the transaction that uses it. On SQLite the
database is a local file and its clock is the host's, read through SQLite all the same.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

_SQLITE_NOW = text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")


async def database_now(conn: AsyncConnection) -> datetime:
    """The database's current time, as an aware UTC datetime."""
    if conn.dialect.name == "postgresql":
        # clock_timestamp(), not now(): now() is when the transaction began.
        moment: datetime = (await conn.execute(select(func.clock_timestamp()))).scalar_one()
        return moment.astimezone(UTC)
    stamp: str = (await conn.execute(_SQLITE_NOW)).scalar_one()
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC)
