"""Async SQLite connections that cross to the driver's thread once per statement.

aiosqlite runs every call of the sqlite3 API on a thread of its own, one round trip per
call; SQLAlchemy's async adapter makes three or four such calls per statement (open a
cursor, execute, fetch, close) plus one for ``BEGIN`` and one for the pool's rollback
when a connection is returned. A round trip costs more CPU than the statement itself
(thread wake-up and hand-over of the GIL), so most of a small write transaction's CPU went
to thread hand-overs (docs/benchmarks/findings.md §14.18).

:class:`OneTripConnection` keeps aiosqlite (its thread, its lifecycle, everything
SQLAlchemy's ``sqlite+aiosqlite`` dialect relies on) and changes only how statements
travel: a cursor executes and fetches in one trip; ``BEGIN`` waits for the
transaction's first statement and travels with it; ``rollback`` outside a transaction
(the pool's reset) and ``commit`` of a transaction that ran nothing make no trip. A
transaction of two statements takes three trips instead of about eleven. Hand-written
because neither library offers it; it lives here so the producer's outbox and the
consumer's stores share it.

Use it through :func:`create_engine`, with :func:`begin_with_first_statement` in the
engine's ``begin`` listener.
"""

import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext import asyncio as sqlalchemy_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

_Parameters = Sequence[Any] | Mapping[str, Any]


class OneTripCursor:
    """The cursor SQLAlchemy's adapter sees: each ``execute`` is one trip, rows included.

    Results are fetched in full during ``execute`` (the adapter does that anyway for
    non-streaming cursors), so the fetch methods only hand them out.
    """

    arraysize = 1

    def __init__(self, connection: "OneTripConnection") -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: deque[Any] = deque()

    def __await__(self) -> Generator[None, None, "OneTripCursor"]:
        # SQLAlchemy 2.0's adapter awaits ``connection.cursor()``, as aiosqlite's is awaitable.
        yield from ()
        return self

    async def __aenter__(self) -> "OneTripCursor":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: _Parameters | None = None) -> "OneTripCursor":
        def run(cursor: sqlite3.Cursor) -> None:
            if parameters is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, parameters)
            self.description = cursor.description
            self._rows = deque(cursor.fetchall() if cursor.description is not None else ())

        await self._connection.run_statement(run, self)
        return self

    async def executemany(self, sql: str, parameters: Iterable[_Parameters]) -> "OneTripCursor":
        def run(cursor: sqlite3.Cursor) -> None:
            cursor.executemany(sql, parameters)
            self.description = None
            self._rows = deque()

        await self._connection.run_statement(run, self)
        return self

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = min(size or self.arraysize, len(self._rows))
        return [self._rows.popleft() for _ in range(count)]

    async def close(self) -> None:
        self._rows.clear()


class OneTripConnection(aiosqlite.Connection):
    """An aiosqlite connection whose statements, ``BEGIN`` included, travel once each."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._begin: str | None = None
        self._in_transaction = False

    def cursor(self) -> OneTripCursor:  # type: ignore[override]
        """A cursor that costs no trip (aiosqlite's costs one)."""
        return OneTripCursor(self)

    def begin_with_next_statement(self, statement: str) -> None:
        """Send ``statement`` (``BEGIN ...``) together with the next statement."""
        self._begin = statement

    async def run_statement(
        self, run: Callable[[sqlite3.Cursor], None], cursor: OneTripCursor
    ) -> None:
        """Run ``run`` with a fresh sqlite3 cursor on the connection's thread (one trip)."""
        begin, self._begin = self._begin, None

        def statement() -> None:
            connection = self._conn
            try:
                if begin is not None:
                    connection.execute(begin)
                raw = connection.cursor()
                try:
                    run(raw)
                    cursor.rowcount = raw.rowcount
                    cursor.lastrowid = raw.lastrowid
                finally:
                    raw.close()
            finally:
                self._in_transaction = connection.in_transaction

        await self._execute(statement)  # type: ignore[no-untyped-call]

    async def commit(self) -> None:
        if self._begin is not None:  # nothing ran since BEGIN: nothing to commit
            self._begin = None
            return
        await super().commit()
        self._in_transaction = False

    async def rollback(self) -> None:
        self._begin = None
        if self._in_transaction:
            await super().rollback()
            self._in_transaction = False


def connector(
    database: str, *, pragmas: Mapping[str, str | int], timeout: float
) -> Callable[[], Awaitable[OneTripConnection]]:
    """``async_creator`` for :func:`sqlalchemy.ext.asyncio.create_async_engine`.

    Args:
        database: The SQLite file's path.
        pragmas: Set on each new connection, on its thread (e.g. ``journal_mode``).
        timeout: Seconds to wait for another connection's write lock (``busy_timeout``).

    The connection is opened with ``isolation_level=None``: transactions start only with
    the ``BEGIN`` that :func:`begin_with_first_statement` issues (the recipe in
    https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#serializable-isolation-savepoints-transactional-ddl).
    """

    def open_connection() -> sqlite3.Connection:
        connection = sqlite3.connect(database, timeout=timeout, isolation_level=None)
        _set_pragmas(connection.execute, pragmas)
        return connection

    async def create() -> OneTripConnection:
        connection = OneTripConnection(open_connection)
        # As SQLAlchemy's dialect does for its own aiosqlite connections: a daemon thread
        # never keeps the interpreter alive after a connection was not closed.
        connection._thread.daemon = True
        await connection
        return connection

    return create


def begin_with_first_statement(connection: Connection, statement: str = "BEGIN") -> None:
    """Start the transaction in a ``begin`` event listener, without a trip of its own.

    Args:
        connection: The SQLAlchemy connection the event names.
        statement: ``BEGIN``, or ``BEGIN IMMEDIATE`` to take the write lock at once.
    """
    driver = connection.connection.driver_connection
    if isinstance(driver, OneTripConnection):
        driver.begin_with_next_statement(statement)
    else:
        connection.exec_driver_sql(statement)


def create_engine(
    url: URL,
    *,
    pragmas: Mapping[str, str | int],
    timeout: float,
    on_begin: Callable[[Connection], None],
    **kwargs: Any,
) -> AsyncEngine:
    """An async engine for the SQLite file of ``url`` (``sqlite+aiosqlite:///path``).

    Connections are :class:`OneTripConnection` s from :func:`connector`. A URL with driver
    options (``?uri=true``, ...), which :func:`connector` does not take, connects through
    the dialect instead, with the same ``pragmas``, ``timeout`` and
    ``isolation_level=None``.

    Args:
        url: The parsed URL.
        pragmas: Set on each new connection.
        timeout: Seconds to wait for another connection's write lock.
        on_begin: The engine's ``begin`` listener; it starts each transaction, e.g. with
            :func:`begin_with_first_statement`.
        **kwargs: Passed to :func:`sqlalchemy.ext.asyncio.create_async_engine`.
    """
    # ``sqlalchemy_asyncio.create_async_engine`` is looked up per call, not imported by name:
    # OpenTelemetry's SQLAlchemy instrumentation wraps it after this module is imported, and
    # the store spans come from that wrapper.
    if url.query:
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("timeout", timeout)
        engine = sqlalchemy_asyncio.create_async_engine(url, connect_args=connect_args, **kwargs)

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            _set_pragmas(cursor.execute, pragmas)
            cursor.close()

        event.listen(engine.sync_engine, "connect", on_connect)
    else:
        creator = connector(url.database or "", pragmas=pragmas, timeout=timeout)
        kwargs.setdefault("async_creator", creator)
        engine = sqlalchemy_asyncio.create_async_engine(url, **kwargs)
    event.listen(engine.sync_engine, "begin", on_begin)
    return engine


def _set_pragmas(execute: Callable[[str], object], pragmas: Mapping[str, str | int]) -> None:
    for name, value in pragmas.items():
        execute(f"PRAGMA {name}={value}")
