"""Readiness says not ready when the database answers reads but refuses writes, on both
databases: a write lock held by another connection (SQLite), a read-only server (Postgres)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from orchestrator.service.health import DatabaseHealth
from orchestrator.store.db import sqlite_path
from orchestrator.store.models import utcnow
from orchestrator.store.queries import Store
from tests.store_support import stored_job


@pytest.fixture
async def store(migrated_db_url: str) -> AsyncIterator[Store]:
    store = Store.open(migrated_db_url)
    yield store
    await store.close()


async def test_ready_when_the_database_takes_writes(store: Store) -> None:
    readiness = await DatabaseHealth(store).check()
    assert readiness.ready
    assert readiness.database == "ok"


async def test_a_held_sqlite_write_lock_makes_it_not_ready_until_released(
    store: Store, db_backend: str
) -> None:
    if db_backend != "sqlite":
        pytest.skip("a write lock of another connection is SQLite's way to refuse writes")
    path = sqlite_path(str(store.engine.url))
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        readiness = await DatabaseHealth(store).check()
        assert not readiness.ready
        assert "write lock" in readiness.database
        assert readiness.schema.startswith("current")
        other.execute("ROLLBACK")
        assert (await DatabaseHealth(store).check()).ready
    finally:
        other.close()
    # The probe gave the lock back and left the connections' patience as it was: writes work.
    await stored_job(store, name="after", state="editing", wake_at=utcnow())


async def test_a_read_only_postgres_makes_it_not_ready(store: Store, db_backend: str) -> None:
    if db_backend != "postgres":
        pytest.skip("a read-only server is Postgres's way to refuse writes")
    url = make_url(store.engine.url.render_as_string(hide_password=False))
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(
            f'ALTER DATABASE "{url.database}" SET default_transaction_read_only = on'
        )
        await store.engine.dispose()  # the setting applies to new connections
        readiness = await DatabaseHealth(store).check()
        assert not readiness.ready
        assert "read-only" in readiness.database
        await admin.execute(f'ALTER DATABASE "{url.database}" RESET default_transaction_read_only')
        await store.engine.dispose()
        assert (await DatabaseHealth(store).check()).ready
    finally:
        await admin.close()
