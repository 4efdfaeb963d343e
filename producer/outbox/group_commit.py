"""Group commit: the outbox rows of concurrent requests in one transaction.

Each request still gets its answer only after the transaction holding its rows has
committed, so nothing about durability changes; but N concurrent requests cost one
``BEGIN/INSERT/COMMIT`` (and one fsync) instead of N, and the committed rows are then
published in one ``ServiceBusMessageBatch`` send and one ``UPDATE``. Those costs are paid
per group, so the fewer requests a group holds, the more CPU each request costs
(docs/benchmarks/findings.md, section 12).

Why groups can wait a little (the *linger*, ``PRODUCER_GROUP_COMMIT_LINGER``, 5 ms by
default; its setting says why): under a steady load of N concurrent clients the
requests split into cohorts. While one cohort's transaction commits, the requests that
arrive meanwhile form the next group, and the two cohorts then alternate for good: at
eight clients, groups of 3 and 5 instead of 8. So when the requests waiting are fewer than
the group size last reached, the committer waits up to ``linger`` for the rest; when the
wait runs out, it commits what it has and aims no higher than that next time. Requests
arriving alone (no larger group seen since the last time a wait ran out) never wait. The
same trade-off as Kafka's ``linger.ms`` for producer batches
(https://kafka.apache.org/documentation/#producerconfigs_linger.ms) and PostgreSQL's
``commit_delay`` (https://www.postgresql.org/docs/current/wal-configuration.html), with a
target that follows the load instead of a fixed one.
"""

import asyncio
from collections import deque
from contextlib import suppress
from typing import TYPE_CHECKING

from azure.servicebus import ServiceBusMessage
from sqlalchemy.exc import IntegrityError

from common.futures import fail, resolve
from producer.errors import OutboxUnavailableError
from producer.outbox.relay import utc_now
from producer.outbox.repository import NewEvent

if TYPE_CHECKING:
    from producer.publisher import EventPublisher

_Request = tuple[list[NewEvent], dict[str, ServiceBusMessage], asyncio.Future[None]]


class GroupCommit:
    """Commits the rows of concurrent requests in one transaction, then publishes them.

    Args:
        publisher: Owner (repository, relay, transport health, stats, task tracking).
        max_rows: Most rows per transaction.
        linger: Longest wait, in seconds, for the rest of a group smaller than the last
            one reached (see the module docstring); 0 commits whatever is waiting at once.
    """

    def __init__(
        self, publisher: "EventPublisher", max_rows: int = 500, linger: float = 0.0
    ) -> None:
        self._publisher = publisher
        self._max_rows = max_rows
        self._linger = linger
        self._target = 1
        """Rows a group waits for (at most ``linger``): the size last reached."""
        self._pending: deque[_Request] = deque()
        self._pending_rows = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def insert(self, rows: list[NewEvent], messages: dict[str, ServiceBusMessage]) -> None:
        """Return once ``rows`` are committed (raises what the insert raised)."""
        loop = asyncio.get_running_loop()
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="outbox-group-commit")
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((rows, messages, done))
        self._pending_rows += len(rows)
        self._wake.set()
        await asyncio.shield(done)

    async def close(self) -> None:
        """Stop the committer task (after the HTTP server stopped sending requests).

        Requests still waiting for a group then fail with ``OutboxUnavailableError``
        (nothing of theirs was committed), so a library caller publishing during shutdown
        gets an answer instead of waiting forever.
        """
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        while self._pending:
            rows, _, done = self._pending.popleft()
            self._pending_rows -= len(rows)
            fail(
                done, OutboxUnavailableError("the publisher closed before the event was committed")
            )

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            # One more turn of the event loop lets requests that are ready to commit join
            # this group instead of waiting for the next one.
            await asyncio.sleep(0)
            self._wake.clear()
            while self._pending:
                if self._linger:
                    await self._wait_for_group()
                await self._commit(self._take_group())

    async def _wait_for_group(self) -> None:
        """Wait up to ``linger`` until ``_target`` rows are pending; adjust the target."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger
        ran_out = False
        while self._pending_rows < self._target:
            self._wake.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._wake.wait()
            except TimeoutError:
                ran_out = True
                break
        reached = min(self._pending_rows, self._max_rows)
        self._target = max(1, reached if ran_out else max(self._target, reached))

    def _take_group(self) -> list[_Request]:
        group = [self._pending.popleft()]
        size = len(group[0][0])
        while self._pending and size + len(self._pending[0][0]) <= self._max_rows:
            group.append(self._pending.popleft())
            size += len(group[-1][0])
        self._pending_rows -= size
        return group

    async def _commit(self, group: list[_Request]) -> None:
        publisher = self._publisher
        reachable = publisher.transport.health.reachable is not False
        claim = publisher.relay.new_claim() if reachable else None
        attempts = 0 if claim is None else 1
        failed: set[int] = set()
        try:
            await self._insert([row for item in group for row in item[0]], claim, attempts)
        except IntegrityError:
            # A duplicate id somewhere in the group: commit each request alone, so only
            # the request that carries it fails.
            for index, item in enumerate(group):
                try:
                    await self._insert(item[0], claim, attempts)
                except Exception as exc:
                    failed.add(index)
                    fail(item[2], exc)
                else:
                    resolve(item[2], None)
        except BaseException as exc:
            for item in group:
                fail(item[2], exc)
            if not isinstance(exc, Exception):
                raise
            return
        else:
            for item in group:
                resolve(item[2], None)
        committed = [
            row for index, item in enumerate(group) if index not in failed for row in item[0]
        ]
        if not committed:
            return
        if claim is None or publisher.relay.stopping:
            publisher.relay.notify()
            return
        messages = {k: v for item in group for k, v in item[1].items()}
        publisher._spawn(publisher.relay.publish_inserted(claim, committed, messages))

    async def _insert(self, rows: list[NewEvent], claim: str | None, attempts: int) -> None:
        """One transaction: ``rows`` and, on SQLite, the ``published`` marks waiting now.

        On SQLite every write waits for the one connection, so taking the marks along
        saves the transaction of their own that would hold it between two group commits.
        On PostgreSQL the marks are written on another connection in parallel; taking them
        along would only lengthen the transaction the requests are waiting for.
        """
        marks_queue = self._publisher.relay.marks
        marks = None
        try:
            async with self._publisher.repository.engine.begin() as connection:
                now = utc_now()
                await self._publisher.repository.insert(
                    connection, rows, claim=claim, now=now, attempts=attempts
                )
                if connection.dialect.name == "sqlite":
                    marks = marks_queue.take()
                if marks is not None:
                    await self._publisher.repository.set_published(connection, marks.ids, now=now)
        except BaseException:
            if marks is not None:
                marks_queue.give_back(marks)
            raise
        stats = self._publisher.stats
        stats.commit_groups += 1
        stats.grouped_events += len(rows)
        if marks is not None:
            marks.committed()
