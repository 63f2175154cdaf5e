"""Opening the job database for a command: schema checked (or built, on SQLite), errors told.

Kept apart from the service wiring so that commands which only read the database (`status`,
`history`, the page) load no HTTP stack.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url

from orchestrator.config import ConfigError, Settings
from orchestrator.store.db import is_sqlite
from orchestrator.store.migrate import ensure_schema, is_up_to_date
from orchestrator.store.queries import Store
from orchestrator.store.scheduling import database_errors


async def open_store(settings: Settings, *, require_current: bool = True) -> Store:
    """The job database, with its schema created or upgraded when it is a SQLite file.

    A Postgres database must already be at this version's schema (`orchestrator db upgrade`)
    unless `require_current` is off (the daemon, whose /readyz says so instead).
    """
    url = settings.resolved_database_url()
    try:
        if is_sqlite(url):
            await ensure_schema(url)
        elif require_current and not await is_up_to_date(url):
            raise ConfigError(
                "the database schema is not current: run `orchestrator db upgrade` first"
            )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    except database_errors() as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        raise ConfigError(
            f"cannot use the job database {shown}: {database_problem(exc)}; "
            "check ORCH_DATABASE_URL and that the database is up"
        ) from None
    return Store.open(url)


def database_problem(exc: BaseException) -> str:
    """What a database error says, without SQLAlchemy's statement dump and links."""
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]
