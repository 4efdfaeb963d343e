"""Recording ``published`` for sent rows, many sends to one transaction.

Every send of the fast path and of the relay loops used to record its rows in a
transaction of its own. On SQLite, where the outbox has one connection, that second
transaction per event took the connection from the next group commit, so under load
each event waited behind the marks of the ones before it (docs/benchmarks/findings.md
§14.8). :class:`PublishedMarks`
coalesces the marks waiting at any moment into one ``UPDATE``, and on SQLite the group
commit (:class:`producer.outbox.group_commit.GroupCommit`) takes the waiting marks into the
transaction it commits anyway, so under steady load marks cost no transaction at all.

A caller still returns only once its rows are recorded, so nothing about leases or
retries changes: rows stay leased to their claim until the transaction that marks them
has committed.
"""

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from common.batching import Batch, Batcher
from producer.outbox.repository import OutboxRepository


@dataclass
class Marks:
    """Marks taken by one writer: the rows' ids and the callers waiting for them."""

    batch: Batch[Sequence[str], None]

    @property
    def ids(self) -> list[str]:
        """The rows to record as published, in the order they were sent."""
        return [event_id for ids in self.batch.items for event_id in ids]

    def committed(self) -> None:
        """The transaction holding these marks committed."""
        self.batch.resolve([None] * len(self.batch.items))

    def failed(self, exc: BaseException) -> None:
        """Writing these marks failed; each caller gets ``exc``."""
        self.batch.fail(exc)


class PublishedMarks:
    """Coalesces ``accepted`` -> ``published`` updates of concurrent sends.

    A caller cancelled while it waits does not take its marks back: they are written
    with the others (and were they never written, the rows would only be sent again).

    Args:
        repository: The outbox.
        clock: Returns the current aware UTC time (the rows' ``finished_at``).
    """

    def __init__(self, repository: OutboxRepository, clock: Callable[[], datetime]) -> None:
        self._repository = repository
        self._clock = clock
        self._connection: AsyncConnection | None = None
        # Marks are taken only once a connection is ours (``hold``): while the flusher
        # waits for SQLite's one connection, a group commit holding it takes them into
        # its transaction.
        self._batcher: Batcher[Sequence[str], None] = Batcher(
            self._write, hold=self._connected, name="outbox-published-marks"
        )

    async def mark(self, ids: Sequence[str]) -> None:
        """Record ``ids`` as published; returns once that is committed.

        Raises:
            Exception: what the database raised (the rows stay leased to their claim).
        """
        if not ids:
            return
        await self._batcher.submit(ids)

    def take(self) -> Marks | None:
        """Hand the waiting marks to a writer that records them in its own transaction.

        The writer must call :meth:`Marks.committed` after its commit, or
        :meth:`give_back` if the transaction failed.
        """
        batch = self._batcher.take()
        return None if batch is None else Marks(batch)

    def give_back(self, marks: Marks) -> None:
        """Return marks a writer could not commit; they are written on their own."""
        self._batcher.give_back(marks.batch)

    async def wait_flushed(self) -> None:
        """Return once no marks are waiting or being written (shutdown).

        Rows whose marks are never written are not lost: they stay ``accepted`` and are
        sent again (duplicate detection drops the copy); waiting only spares that.
        """
        await self._batcher.flush()

    @asynccontextmanager
    async def _connected(self) -> AsyncIterator[None]:
        async with self._repository.engine.connect() as connection:
            self._connection = connection
            try:
                yield
            finally:
                self._connection = None

    async def _write(self, marks: list[Sequence[str]]) -> list[None]:
        connection = self._connection
        assert connection is not None, "the batcher writes inside its hold"
        ids = [event_id for batch in marks for event_id in batch]
        await self._repository.set_published(connection, ids, now=self._clock())
        await connection.commit()
        return [None] * len(marks)
