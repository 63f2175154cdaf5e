"""Database URLs and engines: SQLite (WAL, busy timeout) or Postgres (asyncpg), and the one
statement each dialect spells its own way (INSERT … ON CONFLICT)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from orchestrator.rules.database import default_database_path

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

P = ParamSpec("P")
R = TypeVar("R")

SQLITE_BUSY_TIMEOUT_MS = 30_000
PRIVATE_FOLDER_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
"""The job database holds paths, names and project ids: only its owner may read it."""


def normalize_url(url: str) -> str:
    """Map the URLs users write (`postgresql://`, `sqlite:///`) to the async drivers we use."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    else:
        raise ValueError(
            f"unsupported database {backend!r}: use sqlite:///path/to/file.db or "
            "postgresql://user@host/dbname"
        )
    return parsed.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    """Whether the URL names a SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for an in-memory database."""
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def private_folder(folder: Path) -> None:
    """Create `folder` (and its parents) for its owner's eyes only.

    The default data folder is ours alone, so it is made private even if it already exists.
    """
    folder.mkdir(mode=PRIVATE_FOLDER_MODE, parents=True, exist_ok=True)
    if folder == default_database_path().parent:
        folder.chmod(PRIVATE_FOLDER_MODE)


def open_private(path: Path) -> IO[str]:
    """Open `path` for appending, creating it (and its folder) readable by its owner only."""
    private_folder(path.parent)
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE_MODE), "a")


def _create_private(path: Path) -> None:
    """Create the SQLite file, owner-only, before SQLite would create it world-readable.

    SQLite gives the -wal and -shm files the database file's mode, so they are private too.
    """
    private_folder(path.parent)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE))


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL + NORMAL is durable against process crashes (only a power cut can lose the last commits).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def upsert_into(dialect: str, table: Any) -> postgresql.Insert | sqlite.Insert:
    """`INSERT` into `table` with the dialect's ON CONFLICT clauses (Postgres or SQLite).

    The dialect's module is loaded here, when first used: a SQLite run never loads Postgres's.
    """
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


def create_engine(url: str) -> AsyncEngine:
    """An async engine for the URL; SQLite files get their folder created and WAL mode."""
    url = normalize_url(url)
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is not None:
            _create_private(path)
        engine = create_async_engine(url, poolclass=NullPool)
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


class SqliteThread:
    """A connection to a SQLite file on a thread of its own, for work done in one trip there.

    Configured as the engine's connections are (WAL, busy timeout, synchronous=NORMAL); used as
    `async with SqliteThread(path) as thread: await thread.run(fn, ...)`.
    """

    def __init__(self, path: Path) -> None:
        self._engine = create_sync_engine(f"sqlite:///{path}", poolclass=NullPool)
        event.listen(self._engine, "connect", _configure_sqlite)
        # One thread: the connection is made, used and closed there, as sqlite3 wants.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: Connection | None = None

    async def __aenter__(self) -> SqliteThread:
        try:
            self._conn = await self._in_thread(self._engine.connect)
        except BaseException:
            await asyncio.to_thread(self._executor.shutdown)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._conn is not None:
                await self._in_thread(self._conn.close)
            await self._in_thread(self._engine.dispose)
        finally:
            # Waits for a batch still running (its caller was cancelled) to end first.
            await asyncio.to_thread(self._executor.shutdown)

    async def run(
        self, work: Callable[Concatenate[Connection, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """`work(connection, ...)` in one transaction, committed if it returns, else rolled back."""
        conn = self._conn
        assert conn is not None, "SqliteThread used outside its `async with`"

        def transaction() -> R:
            with conn.begin():
                return work(conn, *args, **kwargs)

        return await self._in_thread(transaction)

    async def _in_thread(self, work: Callable[[], R]) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)
