"""Alembic environment: runs the migrations on SQLite or Postgres through the async engine."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from orchestrator.store.db import create_engine
from orchestrator.store.models import Base

# Any constant works as long as every orchestrator agrees on it: it names the Postgres advisory
# lock that serializes concurrent upgraders (several daemons starting at once on one database).
POSTGRES_MIGRATION_LOCK = 0x0AC4E57A

config = context.config
target_metadata = Base.metadata


def do_run_migrations(connection: Connection) -> None:
    """Run the pending migrations on `connection` as one transaction, one upgrader at a time.

    The caller commits: the statements below open the transaction, so Alembic sees an external
    one and leaves it alone.
    """
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode rebuilds a table by copying and dropping it; with foreign keys on, dropping
        # `jobs` would cascade-delete every photo and event. The pragma is ignored inside a
        # transaction, so it comes first; the connection is discarded afterwards (NullPool).
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        # An immediate transaction takes SQLite's write lock now: a second upgrader waits (busy
        # timeout) and then finds the work done, and a crash mid-migration leaves no half schema.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRES_MIGRATION_LOCK}
        )
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=sqlite,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    if sqlite:
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise RuntimeError(f"migration left rows with dangling foreign keys: {broken[:5]}")


async def run_async_migrations(url: str) -> None:
    """Open our own async engine (Alembic called directly, not through `migrate.upgrade`)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_offline(url: str) -> None:
    """Write the migrations out as SQL (`sql=True`) for a DBA to review or apply."""
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    """Pick the mode: offline SQL, a connection handed in by `migrate`, or our own engine."""
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("sqlalchemy.url is not set: build the config with alembic_config()")
    if context.is_offline_mode():
        run_migrations_offline(url)
        return
    # `migrate.upgrade` runs inside the caller's event loop and passes a sync connection here;
    # asyncio.run would fail in a running loop, so it is only used when nobody passed one.
    connection = config.attributes.get("connection")
    if connection is None:
        asyncio.run(run_async_migrations(url))
    else:
        do_run_migrations(connection)


main()
