"""Published marks: the sends of many publishes are recorded in one transaction.

What callers rely on: ``mark`` returns once its rows are ``published``, whoever wrote
them (a transaction of its own, shared with other marks, or a group commit that took them
along); when the write fails, every caller waiting on it gets the error and its rows stay
``accepted`` and leased, so the relay retries them after the lease.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from producer.outbox.database import create_outbox_engine, run_migrations
from producer.outbox.marks import PublishedMarks
from producer.outbox.models import OutboxStatus
from producer.outbox.repository import OutboxRepository
from tests.producer.test_outbox import audit_row, statuses

LEASE = timedelta(seconds=30)


def now() -> datetime:
    return datetime.now(UTC)


def count_commits(engine: AsyncEngine) -> Callable[[], int]:
    commits = 0

    def on_commit(_: object) -> None:
        nonlocal commits
        commits += 1

    event.listen(engine.sync_engine, "commit", on_commit)
    return lambda: commits


@pytest.fixture
async def repository(database_url: str) -> AsyncIterator[OutboxRepository]:
    engine = create_outbox_engine(database_url)
    await run_migrations(engine)
    yield OutboxRepository(engine, lease=LEASE)
    await engine.dispose()


async def leased_rows(repository: OutboxRepository, count: int) -> list[str]:
    rows = [audit_row(n) for n in range(count)]
    async with repository.engine.begin() as connection:
        await repository.insert(connection, rows, claim="me/1", now=now(), attempts=1)
    return [row.id for row in rows]


async def test_concurrent_marks_are_written_in_one_transaction(
    repository: OutboxRepository,
) -> None:
    ids = await leased_rows(repository, 30)
    marks = PublishedMarks(repository, now)
    commits = count_commits(repository.engine)

    await asyncio.gather(*(marks.mark([event_id]) for event_id in ids))

    assert set((await statuses(repository.engine)).values()) == {OutboxStatus.PUBLISHED.value}
    assert commits() == 1
    record = await repository.get(ids[0])
    assert record is not None
    assert record.lease_until is None
    assert record.finished_at is not None


async def test_marks_taken_by_a_writer_are_committed_with_its_transaction(
    tmp_path: Path,
) -> None:
    engine = create_outbox_engine(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    await run_migrations(engine)
    repository = OutboxRepository(engine, lease=LEASE)
    try:
        ids = await leased_rows(repository, 5)
        marks = PublishedMarks(repository, now)
        commits = count_commits(engine)
        async with engine.connect() as writer:  # SQLite's one connection: the flusher waits
            waiting = [asyncio.create_task(marks.mark([event_id])) for event_id in ids]
            await asyncio.sleep(0.05)
            taken = marks.take()
            assert taken is not None
            assert sorted(taken.ids) == sorted(ids)
            await repository.set_published(writer, taken.ids, now=now())
            await writer.commit()
            taken.committed()
            await asyncio.gather(*waiting)

        assert set((await statuses(engine)).values()) == {OutboxStatus.PUBLISHED.value}
        await asyncio.sleep(0.05)  # the flusher got the connection and found nothing to do
        assert commits() == 1
    finally:
        await engine.dispose()


async def test_marks_given_back_by_a_failed_writer_are_written_on_their_own(
    repository: OutboxRepository,
) -> None:
    ids = await leased_rows(repository, 3)
    marks = PublishedMarks(repository, now)
    waiting = asyncio.gather(*(marks.mark([event_id]) for event_id in ids))
    await asyncio.sleep(0)
    taken = marks.take()
    assert taken is not None
    marks.give_back(taken)  # e.g. the group commit's insert hit a duplicate id

    await asyncio.wait_for(waiting, 10)
    assert set((await statuses(repository.engine)).values()) == {OutboxStatus.PUBLISHED.value}


async def test_a_failed_write_reaches_every_caller_and_later_marks_still_work(
    tmp_path: Path,
) -> None:
    engine = create_outbox_engine(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    repository = OutboxRepository(engine, lease=LEASE)
    marks = PublishedMarks(repository, now)
    try:
        outcomes = await asyncio.gather(
            marks.mark(["a"]), marks.mark(["b", "c"]), return_exceptions=True
        )
        assert all(isinstance(o, OperationalError) for o in outcomes), outcomes  # no table yet

        await run_migrations(engine)
        ids = await leased_rows(repository, 2)
        await marks.mark(ids)
        assert set((await statuses(engine)).values()) == {OutboxStatus.PUBLISHED.value}
    finally:
        await engine.dispose()
