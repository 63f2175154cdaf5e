"""Schema migrations: Alembic configured in code, safe to call from inside a running event loop.

Telling whether a database is up to date needs no Alembic: the revisions are the migration
scripts' names (`versions/0005_refusals.py` is revision 0005, a linear history; a test holds
this against Alembic's own reading) and the database's revision is one row of alembic_version.
Alembic, with Mako and what Mako pulls in, costs a quarter of a second to import: only an
upgrade and the `db` commands load it.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import re
import sys
import weakref
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

import orchestrator
from orchestrator.store.db import create_engine, normalize_url

if TYPE_CHECKING:
    from alembic.config import Config

_SCRIPT_NAME = re.compile(r"(\d{4})_\w+\.py")
"""A migration script's file name; its leading number is its revision id."""

# Where `pip install .` puts the scripts (the `data-files` entry in pyproject.toml), relative to
# the installation prefix.
_INSTALLED_PARTS = ("share", "orchestrator", "migrations")

# Alembic keeps the running migration in module globals (`alembic.context`, `alembic.op`), and
# an upgrade awaits the database in between, so two in one event loop would clobber each other.
# Other processes are kept apart by the database itself (see env.py).
_upgrade_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def migrations_dir() -> Path:
    """The folder holding env.py and versions/: the checkout's, else the installed copy."""
    checkout = Path(orchestrator.__file__).resolve().parent.parent
    # pyproject.toml tells a source checkout (editable install) from site-packages, where an
    # unrelated `migrations` folder could sit next to the package.
    if (checkout / "pyproject.toml").is_file() and (checkout / "migrations" / "env.py").is_file():
        return checkout / "migrations"
    installed = _installed_migrations_dir()
    if installed is None:
        raise RuntimeError(
            "migrations not found: neither a source checkout nor an installed copy; "
            "install with `pip install -e .` (or `pip install .`) from the repository"
        )
    return installed


def _installed_migrations_dir() -> Path | None:
    """The migrations folder recorded in the installed distribution's file list, if any."""
    try:
        files = importlib.metadata.files(orchestrator.DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.parts[-4:] == (*_INSTALLED_PARTS, "env.py"):
            env_py = Path(str(file.locate())).resolve()
            if env_py.is_file():
                return env_py.parent
    return None


def _base_config() -> Config:
    """An Alembic configuration built in code (the repository has no alembic.ini)."""
    # Mako, which Alembic loads, colours its error pages with Pygments when it can import it
    # (5 MiB and 16 ms of a first run); migrations show no such page, and Mako falls back to
    # plain ones by itself when that import fails, which a None entry here makes it do.
    if "mako.ext.pygmentplugin" not in sys.modules:
        sys.modules["mako.ext.pygmentplugin"] = None  # type: ignore[assignment]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    # New revisions are named like versions/0002_add_something.py (pass rev_id="0002").
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    return config


def alembic_config(url: str) -> Config:
    """An Alembic configuration for the database at `url`, for `alembic.command` calls."""
    config = _base_config()
    # Config values go through ConfigParser interpolation; URL-encoded passwords contain `%`.
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


@cache
def known_revisions() -> tuple[str, ...]:
    """Every revision id of the migration scripts, oldest first."""
    versions = migrations_dir() / "versions"
    names = (_SCRIPT_NAME.fullmatch(path.name) for path in versions.iterdir())
    return tuple(sorted(match.group(1) for match in names if match))


def head_revision() -> str:
    """The newest schema revision this code knows."""
    known = known_revisions()
    if not known:
        raise RuntimeError(f"no migrations in {migrations_dir()}")
    return known[-1]


def _upgrade_on(connection: Connection, config: Config, revision: str) -> None:
    """Run `alembic upgrade` on an open sync connection (env.py picks it up from attributes)."""
    from alembic import command

    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def revision_on(connection: Connection) -> str | None:
    """The revision recorded in the database's alembic_version table, None if there is none."""
    if not connection.dialect.has_table(connection, "alembic_version"):
        return None
    revision: str | None = connection.execute(
        text("SELECT version_num FROM alembic_version")
    ).scalar()
    return revision


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision` (default: the newest), from async code.

    Alembic is synchronous; it gets a sync view of one async connection through `run_sync`, so
    it runs inside the caller's event loop instead of starting one of its own.
    """
    config = alembic_config(url)
    lock = _upgrade_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    engine = create_engine(url)
    try:
        async with lock, engine.connect() as connection:
            await connection.run_sync(_upgrade_on, config, revision)
            await connection.commit()
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    """The schema revision of the database at `url`, None for a database never migrated."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(revision_on)
    finally:
        await engine.dispose()


async def is_up_to_date(url: str) -> bool:
    """Whether the database at `url` is at the newest revision this code knows (for /readyz)."""
    return await current_revision(url) == head_revision()


async def ensure_schema(url: str) -> None:
    """Create or upgrade the schema when it is missing or behind; refuse one from newer code.

    Raises RuntimeError when the database carries a revision these scripts do not know: a newer
    orchestrator migrated it, and this one must not write to a schema it does not understand.
    """
    current = await current_revision(url)
    if current is not None and current not in known_revisions():
        shown = make_url(url).render_as_string(hide_password=True)
        raise RuntimeError(
            f"the database {shown} has schema revision {current!r}, which this orchestrator does "
            f"not know (its newest is {head_revision()!r}): a newer orchestrator migrated it; "
            "upgrade orchestrator to use this database"
        )
    if current != head_revision():
        await upgrade(url)
