"""Suite-wide fixtures: a fresh, empty database per test, on SQLite and (when configured) Postgres.

Postgres tests run when ORCH_TEST_POSTGRES_URL names a server database the test user may create
databases from (e.g. postgresql://postgres@127.0.0.1:5432/test); each test then gets its own
database, created empty and dropped afterwards, so tests never see each other's rows.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from orchestrator.store.migrate import upgrade

POSTGRES_ENV = "ORCH_TEST_POSTGRES_URL"
POSTGRES_SKIP_REASON = (
    f"Postgres tests need {POSTGRES_ENV}, e.g. postgresql://postgres@127.0.0.1:5432/test"
)

MakeDbUrl = Callable[[], Awaitable[str]]
"""An async factory of URLs of fresh, empty databases (see the `make_db_url` fixture)."""


def postgres_server_url() -> str | None:
    """The Postgres URL from the environment, None when Postgres tests are off."""
    return os.environ.get(POSTGRES_ENV) or None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every test marked `postgres` (including db_url's postgres case) without a server."""
    if postgres_server_url() is not None:
        return
    skip = pytest.mark.skip(reason=POSTGRES_SKIP_REASON)
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say at the end of a run when the Postgres half was skipped, and how to run it."""
    if postgres_server_url() is not None:
        return
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if POSTGRES_ENV in str(getattr(report, "longrepr", ""))
    ]
    if skipped:
        count = (
            "1 Postgres test was" if len(skipped) == 1 else f"{len(skipped)} Postgres tests were"
        )
        terminalreporter.write_line(
            f"{count} skipped: set {POSTGRES_ENV} (e.g. "
            f"{POSTGRES_ENV}=postgresql://postgres@127.0.0.1:5432/test) to run them too",
            yellow=True,
        )


@contextlib.asynccontextmanager
async def database_factory(backend: str, tmp_path: Path) -> AsyncIterator[MakeDbUrl]:
    """Hand out fresh empty databases of one backend; drop the Postgres ones on exit."""
    counter = itertools.count()
    created: list[str] = []
    server = postgres_server_url()

    async def make() -> str:
        if backend == "sqlite":
            return f"sqlite+aiosqlite:///{tmp_path / f'orch{next(counter)}.sqlite'}"
        if server is None:
            pytest.skip(POSTGRES_SKIP_REASON)
        name = f"orch_test_{uuid.uuid4().hex[:16]}"
        await _admin_execute(server, f'CREATE DATABASE "{name}"')
        created.append(name)
        url = make_url(server).set(drivername="postgresql+asyncpg", database=name)
        return url.render_as_string(hide_password=False)

    try:
        yield make
    finally:
        if server is not None:
            for name in created:
                # FORCE ends connections a failed test left open instead of waiting for them.
                await _admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin_execute(server: str, sql: str) -> None:
    """Run one statement on the server's own database (CREATE/DROP DATABASE can't run in ours)."""
    dsn = make_url(server).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_backend(request: pytest.FixtureRequest) -> str:
    """Which database the test runs on: every test using it runs once per backend."""
    backend: str = request.param
    return backend


@pytest.fixture
async def make_db_url(db_backend: str, tmp_path: Path) -> AsyncIterator[MakeDbUrl]:
    """A factory for more fresh empty databases of the test's backend (`await make_db_url()`)."""
    async with database_factory(db_backend, tmp_path) as make:
        yield make


@pytest.fixture
async def db_url(make_db_url: MakeDbUrl) -> str:
    """The URL of a fresh, empty database (no tables at all) on SQLite, then on Postgres."""
    return await make_db_url()


@pytest.fixture
async def migrated_db_url(make_db_url: MakeDbUrl) -> str:
    """The URL of a fresh database with every migration applied, on SQLite, then on Postgres."""
    url = await make_db_url()
    await upgrade(url)
    return url


@pytest.fixture
async def pg_url(tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a fresh, empty Postgres database, for Postgres-only tests (skips without one)."""
    async with database_factory("postgres", tmp_path) as make:
        yield await make()
