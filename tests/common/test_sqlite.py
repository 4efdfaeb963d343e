"""One-trip SQLite connections: ordinary SQLAlchemy transactions, fewer thread hand-overs.

What users of the outbox and the consumer's stores rely on: committed writes are durable
and visible to other connections, a failed transaction leaves nothing behind,
``BEGIN IMMEDIATE`` holds the write lock from the transaction's first statement, and
results (``RETURNING``, large selects, streamed results) come back whole. The last test
pins the reason the module exists: the number of trips to aiosqlite's thread.
"""

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    event,
    func,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from common import sqlite

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(50), nullable=False, unique=True),
)


def engine_for(path: Path, *, begin: str = "BEGIN IMMEDIATE", timeout: float = 5.0) -> AsyncEngine:
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}",
        async_creator=sqlite.connector(
            str(path), pragmas={"journal_mode": "WAL", "synchronous": "FULL"}, timeout=timeout
        ),
    )

    def on_begin(connection: Connection) -> None:
        sqlite.begin_with_first_statement(connection, begin)

    event.listen(engine.sync_engine, "begin", on_begin)
    return engine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = engine_for(tmp_path / "items.db")
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


async def names(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        return list((await connection.scalars(select(items.c.name).order_by(items.c.id))).all())


async def test_committed_rows_are_visible_to_another_connection(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    async with engine.begin() as connection:
        await connection.execute(items.insert(), [{"name": "a"}, {"name": "b"}])  # executemany
        await connection.execute(items.insert().values(name="c"))

    other = engine_for(tmp_path / "items.db")
    try:
        assert await names(other) == ["a", "b", "c"]
    finally:
        await other.dispose()


async def test_a_failed_transaction_leaves_nothing_and_the_connection_stays_usable(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as connection:
        await connection.execute(items.insert().values(name="kept"))

    async def violate_unique() -> None:
        async with engine.begin() as connection:
            await connection.execute(items.insert().values(name="rolled back"))
            await connection.execute(items.insert().values(name="kept"))

    async def give_up() -> None:
        async with engine.begin() as connection:
            await connection.execute(items.insert().values(name="also rolled back"))
            raise RuntimeError("the caller gave up")

    with pytest.raises(IntegrityError):
        await violate_unique()
    with pytest.raises(RuntimeError):
        await give_up()

    async with engine.begin() as connection:
        await connection.execute(items.insert().values(name="after"))
    assert await names(engine) == ["kept", "after"]


async def test_begin_immediate_holds_the_write_lock_from_the_first_statement(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    impatient = engine_for(tmp_path / "items.db", timeout=0.2)
    try:
        async with engine.begin() as connection:
            await connection.execute(select(func.count()).select_from(items))  # a read only
            with pytest.raises(OperationalError, match="locked"):
                async with impatient.begin() as other:
                    await other.execute(items.insert().values(name="blocked"))
        async with impatient.begin() as other:  # released by the commit
            await other.execute(items.insert().values(name="later"))
        assert await names(engine) == ["later"]
    finally:
        await impatient.dispose()


async def test_deferred_begin_reads_without_taking_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "items.db"
    reader = engine_for(path, begin="BEGIN")
    writer = engine_for(path, timeout=0.2)
    try:
        async with writer.begin() as connection:
            await connection.run_sync(metadata.create_all)
        async with reader.begin() as connection:
            assert await connection.scalar(select(func.count()).select_from(items)) == 0
            async with writer.begin() as other:  # not blocked by the reader
                await other.execute(items.insert().values(name="written"))
        assert await names(reader) == ["written"]
    finally:
        await reader.dispose()
        await writer.dispose()


async def test_results_come_back_whole(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        returned = await connection.execute(
            items.insert().values(name="returned").returning(items.c.id, items.c.name)
        )
        assert [tuple(row) for row in returned] == [(1, "returned")]
        await connection.execute(items.insert(), [{"name": f"n{i:04d}"} for i in range(2500)])

    async with engine.connect() as connection:
        everything = (await connection.execute(select(items.c.name))).all()
        assert len(everything) == 2501
        first = (await connection.execute(select(items.c.name).order_by(items.c.id))).first()
        assert first is not None
        assert first.name == "returned"
        streamed = await connection.stream(select(items.c.name).order_by(items.c.id))
        chunks = [len(chunk) async for chunk in streamed.partitions(1000)]
        assert chunks == [1000, 1000, 501]


async def test_an_empty_transaction_commits_without_a_trip(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips = count_trips(monkeypatch)
    async with engine.begin():
        pass
    assert trips() == 0
    async with engine.begin() as connection:
        await connection.execute(items.insert().values(name="next"))
    assert await names(engine) == ["next"]


async def test_a_two_statement_transaction_takes_three_trips(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BEGIN travels with the first statement, each statement is one trip, then COMMIT.

    Through aiosqlite's own cursor the same transaction took eleven: a trip each to open,
    execute and close a cursor per statement, one for BEGIN, one for the pool's rollback.
    """
    async with engine.begin() as connection:  # a connection in the pool, as in service
        await connection.execute(items.insert().values(name="warm"))
    trips = count_trips(monkeypatch)
    async with engine.begin() as connection:
        await connection.execute(items.insert().values(name="x"))
        await connection.execute(items.update().where(items.c.name == "x").values(name="y"))
    assert trips() == 3
    assert await names(engine) == ["warm", "y"]


def count_trips(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Count calls that cross to the connection's thread from now on."""
    calls = 0
    original = sqlite.OneTripConnection._execute

    async def counting(self: sqlite.OneTripConnection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await original(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(sqlite.OneTripConnection, "_execute", counting)
    return lambda: calls


@pytest.mark.parametrize("options", ["", "?uri=true"])
async def test_outbox_and_stores_get_wal_and_their_durability(tmp_path: Path, options: str) -> None:
    """Through the one-trip connector, or the dialect's own for a URL with driver options."""
    from consumer.stores.database import Database
    from producer.outbox.database import create_outbox_engine

    prefix = "file:" if options else ""
    outbox = create_outbox_engine(f"sqlite+aiosqlite:///{prefix}{tmp_path}/outbox.db{options}")
    store = Database(f"sqlite+aiosqlite:///{prefix}{tmp_path}/store.db{options}")
    try:
        async with outbox.begin() as connection:
            assert await connection.scalar(text("PRAGMA journal_mode")) == "wal"
            assert await connection.scalar(text("PRAGMA synchronous")) == 2  # FULL: 202 waits
        async with store.write() as connection:
            assert await connection.scalar(text("PRAGMA journal_mode")) == "wal"
            assert await connection.scalar(text("PRAGMA synchronous")) == 1  # NORMAL
    finally:
        await outbox.dispose()
        await store.close()
