"""The outbox database: engine construction and Alembic migrations.

SQLite (the default) is opened in WAL mode with ``synchronous=FULL`` so that a commit is on
disk before the producer answers 202, and every transaction starts with ``BEGIN IMMEDIATE``
so concurrent writers queue on SQLite's lock (``busy_timeout``) instead of failing with
"database is locked" when a reader upgrades to a writer (recipe from
https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#serializable-isolation-savepoints-transactional-ddl).
An application that joins the outbox to its own transactions on SQLite should create its
engine with :func:`create_outbox_engine` for the same reason.

PostgreSQL (``postgresql+asyncpg://...``) needs nothing special; concurrent migrations
from several replicas are serialised with an advisory lock.
"""

import logging
from pathlib import Path
from typing import Any, Final

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from common import pool, sqlite
from common.migrations import alembic_config as common_alembic_config
from common.migrations import upgrade_to_head
from producer.outbox.models import VERSION_TABLE

logger = logging.getLogger(__name__)

DATABASE_ERRORS: Final = (SQLAlchemyError, OSError, TimeoutError)
"""What an unreachable or failing outbox database raises."""

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent.parent / "migrations"
_MIGRATION_LOCK_KEY: Final = 0x70726F64  # "prod": pg_advisory_xact_lock key
SQLITE_BUSY_TIMEOUT_SECONDS: Final = 30.0


def create_outbox_engine(url: str | URL, **kwargs: Any) -> AsyncEngine:
    """An async engine for the outbox (and, when embedding, the application's tables).

    Args:
        url: SQLAlchemy async URL: ``sqlite+aiosqlite:///file.db`` or
            ``postgresql+asyncpg://user@host:5432/db``. A SQLite file's directory is
            created if missing; in-memory SQLite is refused (nothing would survive).
        **kwargs: Passed to :func:`sqlalchemy.ext.asyncio.create_async_engine`. On a
            server database, pooled connections idle for 5 s or more are pinged before
            use (:func:`common.pool.create_engine`) unless ``pool_pre_ping=True`` asks
            for a ping on every checkout.

    Raises:
        ValueError: an in-memory SQLite URL, or a sync driver (``sqlite://`` without
            ``+aiosqlite``).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        if parsed.get_driver_name() == "asyncpg":
            # asyncpg prepares every statement; after five runs PostgreSQL may switch to a
            # generic plan, which for ``id IN (...) AND status = 'accepted'`` scans the
            # whole pending index, so ``mark_published`` slows by an order of magnitude
            # once a backlog builds up (docs/benchmarks/findings.md §14.7). Plan each
            # execution with its parameters.
            connect_args = dict(kwargs.pop("connect_args", {}))
            server_settings = dict(connect_args.get("server_settings", {}))
            server_settings.setdefault("plan_cache_mode", "force_custom_plan")
            connect_args["server_settings"] = server_settings
            kwargs["connect_args"] = connect_args
        return pool.create_engine(parsed, **kwargs)
    if parsed.get_driver_name() != "aiosqlite":
        raise ValueError("use the async SQLite driver: sqlite+aiosqlite:///path.db")
    database = parsed.database
    if not database or database == ":memory:" or "mode=memory" in str(parsed):
        raise ValueError("the outbox needs a SQLite file, not an in-memory database")
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # SQLite has one writer at a time. With a pool, concurrent writers (group commits,
    # relay claims and marks) meet in the busy handler, which sleeps and polls; one
    # connection hands it over in arrival order instead (and the GIL-free part of the work
    # still runs on aiosqlite's thread). Other processes on the same file still get the
    # busy timeout. Callers must not check out a second connection while holding one.
    kwargs.setdefault("pool_size", 1)
    kwargs.setdefault("max_overflow", 0)
    return sqlite.create_engine(
        parsed,
        pragmas=_SQLITE_PRAGMAS,
        timeout=SQLITE_BUSY_TIMEOUT_SECONDS,
        on_begin=_sqlite_on_begin,
        **kwargs,
    )


_SQLITE_PRAGMAS: Final[dict[str, str | int]] = {
    "journal_mode": "WAL",
    "synchronous": "FULL",
    "busy_timeout": int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000),
}


def _sqlite_on_begin(connection: Connection) -> None:
    sqlite.begin_with_first_statement(connection, "BEGIN IMMEDIATE")


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration for the producer's migrations (``producer/migrations``).

    Args:
        connection: An open connection the migrations run on (inside its transaction).
    """
    return common_alembic_config(MIGRATIONS_DIR, connection)


def _current_revision(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


async def run_migrations(engine: AsyncEngine) -> None:
    """Bring the outbox tables to the newest revision (idempotent).

    Runs in one transaction; on PostgreSQL it first takes a transaction-scoped advisory
    lock, so replicas starting together migrate one after the other.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database is unreachable or a migration failed.
    """
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        await connection.run_sync(upgrade_to_head, MIGRATIONS_DIR)


async def pending_migrations(engine: AsyncEngine) -> bool:
    """Whether the database is behind the newest revision (or has no outbox yet)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    async with engine.connect() as connection:
        current = await connection.run_sync(_current_revision)
    return current != head
