"""The migrations build exactly the schema the models describe, on SQLite and on Postgres.

If a model changes without a migration, test_migrations_match_models and
test_migrations_match_create_all fail: add a revision (see orchestrator.store.migrate).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from orchestrator.store import migrate
from orchestrator.store.db import SQLITE_BUSY_TIMEOUT_MS, create_engine
from orchestrator.store.migrate import (
    alembic_config,
    current_revision,
    ensure_schema,
    head_revision,
    is_up_to_date,
    upgrade,
)
from orchestrator.store.models import Base
from tests.conftest import MakeDbUrl

TABLES = {
    "jobs",
    "photos",
    "photo_phases",
    "events",
    "callbacks",
    "tag_results",
    "refusals",
    "poll_budget",
    "shoots",
}


def schema_snapshot(connection: Connection) -> dict[str, Any]:
    """Everything the inspector sees of our tables, normalized so two databases can be compared.

    Types are compiled for the connection's dialect (what the database really stores); columns
    are keyed by name because a migration appends where a model may insert.
    """
    inspector = sa.inspect(connection)
    dialect = connection.dialect
    snapshot: dict[str, Any] = {}
    for table in inspector.get_table_names():
        if table == "alembic_version":
            continue
        pk = inspector.get_pk_constraint(table)
        snapshot[table] = {
            "columns": {
                column["name"]: (
                    column["type"].compile(dialect=dialect),
                    column["nullable"],
                    column.get("default"),
                    column.get("autoincrement"),
                )
                for column in inspector.get_columns(table)
            },
            "primary_key": (pk.get("name"), tuple(pk["constrained_columns"])),
            "unique": sorted(
                (uq["name"], tuple(uq["column_names"]))
                for uq in inspector.get_unique_constraints(table)
            ),
            "indexes": sorted(
                (ix["name"], tuple(str(c) for c in ix["column_names"]), ix["unique"])
                for ix in inspector.get_indexes(table)
            ),
            "foreign_keys": sorted(
                (
                    fk["name"],
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    tuple(sorted(fk.get("options", {}).items())),
                )
                for fk in inspector.get_foreign_keys(table)
            ),
            "checks": sorted(
                (ck["name"], ck["sqltext"]) for ck in inspector.get_check_constraints(table)
            ),
        }
    return snapshot


def metadata_diff(connection: Connection, metadata: sa.MetaData) -> list[Any]:
    """What Alembic autogenerate finds different between `metadata` and the database."""
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, metadata)


async def snapshot_of(url: str) -> dict[str, Any]:
    """The schema snapshot of the database at `url`."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(schema_snapshot)
    finally:
        await engine.dispose()


async def diff_of(url: str, metadata: sa.MetaData = Base.metadata) -> list[Any]:
    """The autogenerate diff between `metadata` and the database at `url`."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(metadata_diff, metadata)
    finally:
        await engine.dispose()


async def create_all(url: str, metadata: sa.MetaData = Base.metadata) -> None:
    """Build the schema straight from `metadata`, bypassing the migrations."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
    finally:
        await engine.dispose()


async def execute(url: str, sql: str) -> None:
    """Run one statement and commit it."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(sa.text(sql))
    finally:
        await engine.dispose()


def with_extra_column() -> sa.MetaData:
    """A copy of the models' metadata with a column no migration creates."""
    metadata = sa.MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(metadata)
    metadata.tables["jobs"].append_column(sa.Column("not_migrated", sa.Integer, nullable=True))
    return metadata


async def test_migrations_match_models(migrated_db_url: str) -> None:
    assert await diff_of(migrated_db_url) == []


async def test_migrations_match_create_all(make_db_url: MakeDbUrl) -> None:
    from_models, from_migrations = await make_db_url(), await make_db_url()
    await create_all(from_models)
    await upgrade(from_migrations)

    expected = await snapshot_of(from_models)
    assert set(expected) == TABLES
    assert await snapshot_of(from_migrations) == expected


async def test_the_checks_catch_a_column_without_migration(make_db_url: MakeDbUrl) -> None:
    # Guards the two tests above against going vacuous: a model change must show up in both.
    from_models, from_migrations = await make_db_url(), await make_db_url()
    changed = with_extra_column()
    await create_all(from_models, changed)
    await upgrade(from_migrations)

    diff = await diff_of(from_migrations, changed)
    assert [(op[0], op[3].name) for op in diff] == [("add_column", "not_migrated")]
    assert await snapshot_of(from_migrations) != await snapshot_of(from_models)


async def test_upgrade_is_idempotent(db_url: str) -> None:
    await upgrade(db_url)
    first = await snapshot_of(db_url)
    await upgrade(db_url)

    assert await snapshot_of(db_url) == first
    assert await current_revision(db_url) == head_revision()


async def test_upgrades_in_one_process_take_turns(db_url: str) -> None:
    await asyncio.gather(*(upgrade(db_url) for _ in range(3)))

    assert await current_revision(db_url) == head_revision()
    assert await diff_of(db_url) == []


async def test_upgrades_from_several_processes_take_turns(db_url: str) -> None:
    # Several daemons starting at once on one new database: only the database's own locking
    # (SQLite's write lock, a Postgres advisory lock) keeps separate processes apart. Each child
    # waits for a line on stdin after its imports, so the upgrades really start together.
    code = (
        "import asyncio, sys\n"
        "from orchestrator.store.migrate import upgrade\n"
        "sys.stdin.readline()\n"
        "asyncio.run(upgrade(sys.argv[1]))\n"
    )
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            db_url,
            stdin=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    results = await asyncio.gather(*(process.communicate(b"go\n") for process in processes))

    for process, (_, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr.decode()
    assert await current_revision(db_url) == head_revision()
    assert await diff_of(db_url) == []


def test_revisions_read_from_script_names_are_alembics() -> None:
    """Checking a database's revision reads the scripts' names, not Alembic: they must agree."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    alembic_order = [rev.revision for rev in reversed(list(script.walk_revisions()))]

    assert list(migrate.known_revisions()) == alembic_order
    assert head_revision() == script.get_current_head()


async def test_a_database_at_an_older_revision_is_not_up_to_date(db_url: str) -> None:
    await upgrade(db_url, migrate.known_revisions()[-2])

    assert await current_revision(db_url) == migrate.known_revisions()[-2]
    assert not await is_up_to_date(db_url)
    await ensure_schema(db_url)
    assert await is_up_to_date(db_url)


def test_checking_the_schema_does_not_import_alembic(tmp_path: Path) -> None:
    """`status` and every command on an up-to-date database start without loading Alembic."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    asyncio.run(ensure_schema(url))
    probe = (
        "import asyncio, sys\n"
        "from orchestrator.store.migrate import ensure_schema, is_up_to_date\n"
        f"asyncio.run(ensure_schema({url!r}))\n"
        f"assert asyncio.run(is_up_to_date({url!r}))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


async def test_is_up_to_date_only_after_upgrade(db_url: str) -> None:
    assert await current_revision(db_url) is None
    assert not await is_up_to_date(db_url)

    await upgrade(db_url)

    assert await is_up_to_date(db_url)


async def test_ensure_schema_builds_an_empty_database(db_url: str) -> None:
    await ensure_schema(db_url)

    assert await is_up_to_date(db_url)
    assert set(await snapshot_of(db_url)) == TABLES
    await ensure_schema(db_url)


async def test_ensure_schema_creates_a_new_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "there.db"
    url = f"sqlite:///{path}"

    await ensure_schema(url)

    assert path.is_file()
    assert await is_up_to_date(url)
    assert await diff_of(url) == []


async def test_sqlite_runs_in_wal_mode_with_busy_timeout(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'orch.db'}"
    await ensure_schema(url)

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            pragmas = {
                name: (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar_one()
                for name in ("journal_mode", "busy_timeout", "foreign_keys")
            }
    finally:
        await engine.dispose()
    # foreign_keys too: migrations switch it off on their own connection only.
    assert pragmas == {
        "journal_mode": "wal",
        "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
        "foreign_keys": 1,
    }


async def test_database_from_newer_code_is_refused(migrated_db_url: str) -> None:
    await execute(migrated_db_url, "UPDATE alembic_version SET version_num = '9999_future'")

    with pytest.raises(RuntimeError, match=r"'9999_future'.*upgrade orchestrator"):
        await ensure_schema(migrated_db_url)
    assert not await is_up_to_date(migrated_db_url)


async def test_failed_migration_leaves_no_half_schema(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A crash or error mid-upgrade must leave the database as it was, not half migrated.
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.migrations_dir(), scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "0002_broken.py").write_text(
        "from alembic import op\n"
        "import sqlalchemy as sa\n"
        "revision = 'broken'\n"
        f"down_revision = {head_revision()!r}\n"
        "branch_labels = depends_on = None\n"
        "def upgrade():\n"
        "    op.create_table('half_done', sa.Column('id', sa.Integer, primary_key=True))\n"
        "    with op.batch_alter_table('jobs') as batch:\n"
        "        batch.add_column(sa.Column('half', sa.Integer))\n"
        "    raise RuntimeError('migration blew up')\n"
    )
    monkeypatch.setattr(migrate, "migrations_dir", lambda: scripts)

    with pytest.raises(RuntimeError, match="migration blew up"):
        await upgrade(db_url)

    assert await current_revision(db_url) is None
    assert await snapshot_of(db_url) == {}


@pytest.mark.parametrize("url", ["sqlite:///offline.db", "postgresql://nobody@127.0.0.1:1/offline"])
def test_offline_mode_writes_sql_without_a_database(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    command.upgrade(alembic_config(url), "head", sql=True)

    sql = capsys.readouterr().out
    assert "CREATE TABLE jobs" in sql
    assert f"'{head_revision()}'" in sql
