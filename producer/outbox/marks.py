"""Recording ``published`` for sent rows, many sends to one transaction.

Every send of the fast path and of the relay loops used to record its rows in a
transaction of its own. On SQLite, where the outbox has one connection, that second
transaction per event took the connection from the next group commit: at 300 events/s
each event waited behind the marks of the ones before it. :class:`PublishedMarks`
coalesces the marks waiting at any moment into one ``UPDATE``, and on SQLite the group
commit (:class:`producer.group_commit.GroupCommit`) takes the waiting marks into the
transaction it commits anyway, so under steady load marks cost no transaction at all.

A caller still returns only once its rows are recorded, so nothing about leases or
retries changes: rows stay leased to their claim until the transaction that marks them
has committed.
"""

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from common.futures import fail, resolve
from producer.outbox.repository import OutboxRepository


@dataclass
class Marks:
    """Marks taken by one writer: the rows' ids and the callers waiting for them."""

    ids: list[str] = field(default_factory=list)
    waiters: list["asyncio.Future[None]"] = field(default_factory=list)

    def committed(self) -> None:
        """The transaction holding these marks committed."""
        for waiter in self.waiters:
            resolve(waiter, None)

    def failed(self, exc: BaseException) -> None:
        """Writing these marks failed; each caller gets ``exc``."""
        for waiter in self.waiters:
            fail(waiter, exc)


class PublishedMarks:
    """Coalesces ``accepted`` -> ``published`` updates of concurrent sends.

    Args:
        repository: The outbox.
        clock: Returns the current aware UTC time (the rows' ``finished_at``).
    """

    def __init__(self, repository: OutboxRepository, clock: Callable[[], datetime]) -> None:
        self._repository = repository
        self._clock = clock
        self._waiting = Marks()
        self._flusher: asyncio.Task[None] | None = None

    async def mark(self, ids: Sequence[str]) -> None:
        """Record ``ids`` as published; returns once that is committed.

        Raises:
            Exception: what the database raised (the rows stay leased to their claim).
        """
        if not ids:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.ids.extend(ids)
        self._waiting.waiters.append(done)
        self._ensure_flusher()
        # Shielded: a caller cancelled mid-write must not cancel the others' marks.
        await asyncio.shield(done)

    def take(self) -> Marks | None:
        """Hand the waiting marks to a writer that records them in its own transaction.

        The writer must call :meth:`Marks.committed` after its commit, or
        :meth:`give_back` if the transaction failed.
        """
        if not self._waiting.ids:
            return None
        taken, self._waiting = self._waiting, Marks()
        return taken

    def give_back(self, marks: Marks) -> None:
        """Return marks a writer could not commit; they are written on their own."""
        marks.ids.extend(self._waiting.ids)
        marks.waiters.extend(self._waiting.waiters)
        self._waiting = marks
        self._ensure_flusher()

    async def wait_flushed(self) -> None:
        """Return once no marks are waiting or being written (shutdown).

        Rows whose marks are never written are not lost: they stay ``accepted`` and are
        sent again (duplicate detection drops the copy); waiting only spares that.
        """
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait({self._flusher})

    def _ensure_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush(), name="outbox-published-marks"
            )

    async def _flush(self) -> None:
        while self._waiting.ids:
            marks: Marks | None = None
            try:
                # Take the marks only once a connection is ours: while this waits for
                # SQLite's one connection, a group commit holding it takes them into its
                # transaction.
                async with self._repository.engine.connect() as connection:
                    marks = self.take()
                    if marks is None:
                        return
                    await self._repository.set_published(connection, marks.ids, now=self._clock())
                    await connection.commit()
            except BaseException as exc:
                (marks or self.take() or Marks()).failed(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            marks.committed()
