"""Engine construction, SQLite tuning and transaction helpers shared by the stores."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common import pool, sqlite

_IMMEDIATE = "consumer_begin_immediate"


# WAL lets readers (the demo summary, `consumer audit query`) look while we write;
# busy_timeout makes a second process wait for the write lock instead of failing.
_SQLITE_PRAGMAS: dict[str, str | int] = {
    "journal_mode": "WAL",
    "synchronous": "NORMAL",
    "busy_timeout": 30000,
}


def _sqlite_begin(connection: Connection) -> None:
    # BEGIN IMMEDIATE takes the write lock up front, so a read-then-write transaction (the
    # audit chain append) can never fail half-way with SQLITE_BUSY on lock upgrade.
    immediate = connection.get_execution_options().get(_IMMEDIATE, False)
    sqlite.begin_with_first_statement(connection, "BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://``).

    Raises:
        sqlalchemy.exc.ArgumentError: the URL cannot be parsed.
        ModuleNotFoundError: the URL's driver is not installed.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return pool.create_engine(parsed)
    # A local file needs no pre-ping (a SELECT 1 per checkout); see common.sqlite for why
    # statements take one trip to aiosqlite's thread each.
    return sqlite.create_engine(
        parsed, pragmas=_SQLITE_PRAGMAS, timeout=30.0, on_begin=_sqlite_begin
    )


class Database:
    """An engine plus a write lock, shared by the stores that live in one database.

    Args:
        url: SQLAlchemy async URL.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.dialect = self.engine.dialect.name
        # SQLite has one writer at a time: queue writers here rather than in busy_timeout.
        self._sqlite_write_lock = asyncio.Lock() if self.dialect == "sqlite" else None

    async def migrate(self) -> None:
        """Bring the schema to the latest Alembic revision (idempotent)."""
        from consumer.stores.migrate import upgrade

        await upgrade(self.engine)

    async def ping(self) -> bool:
        """True when ``SELECT 1`` succeeds."""
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed on normal exit, rolled back on an exception.

        On SQLite it starts with ``BEGIN IMMEDIATE`` (serialising writers across
        processes) after an in-process lock; on PostgreSQL it is a plain transaction
        and callers lock rows they depend on (``SELECT ... FOR UPDATE``).
        """
        if self._sqlite_write_lock is None:
            async with self.engine.begin() as connection:
                yield connection
            return
        async with self._sqlite_write_lock, self.engine.connect() as connection:
            await connection.execution_options(**{_IMMEDIATE: True})
            async with connection.begin():
                yield connection

    async def close(self) -> None:
        await self.engine.dispose()


def as_utc(value: datetime) -> datetime:
    """Aware UTC datetime from a database value (SQLite returns naive UTC datetimes)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
