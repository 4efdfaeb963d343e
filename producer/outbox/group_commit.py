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
arrive meanwhile form the next group, and the two cohorts then alternate for good, each
group holding only part of the clients (docs/benchmarks/findings.md §14.22). So when the
requests waiting are fewer than the group size last reached, the committer waits up to
``linger`` for the rest; when the wait runs out, it commits what it has and aims no higher
than that next time. Requests arriving alone (no larger group seen since the last time a
wait ran out) never wait. The same trade-off as Kafka's ``linger.ms`` for producer batches
(https://kafka.apache.org/documentation/#producerconfigs_linger.ms) and PostgreSQL's
``commit_delay`` (https://www.postgresql.org/docs/current/wal-configuration.html), with a
target that follows the load instead of a fixed one.
"""

from collections.abc import Callable
from dataclasses import dataclass

from azure.servicebus import ServiceBusMessage
from sqlalchemy.exc import IntegrityError

from common.batching import Batcher, Failed, one_by_one
from contracts._types import utc_now
from producer.errors import OutboxUnavailableError
from producer.outbox.marks import PublishedMarks
from producer.outbox.records import NewEvent
from producer.outbox.relay import PublishStats
from producer.outbox.repository import OutboxRepository

Messages = dict[str, ServiceBusMessage]
"""The prepared Service Bus message of each row, by event id."""
NewClaim = Callable[[], str | None]
"""Returns the claim to insert a group's rows under (``None``: leave them to the relay)."""
OnCommitted = Callable[[str | None, list[NewEvent], Messages], None]
"""Called with the claim, the committed rows and their messages after each commit."""


@dataclass(frozen=True, slots=True)
class _Request:
    """One caller's rows (all or none of them commit) and their prepared messages."""

    rows: list[NewEvent]
    messages: Messages


def _rows(request: _Request) -> int:
    return len(request.rows)


class GroupCommit:
    """Commits the rows of concurrent requests in one transaction, then hands them on.

    Built on :class:`common.batching.Batcher` (its ``linger`` is the adaptive wait the
    module docstring describes).

    Args:
        repository: The outbox.
        marks: The relay's pending ``published`` marks (taken along on SQLite).
        stats: Counters (``commit_groups``, ``grouped_events``).
        new_claim: Called once per group before its transaction.
        on_committed: Called once per committed group (its rows that committed), e.g. to
            publish them; never awaited, so it must not block.
        max_rows: Most rows per transaction (a request with more goes alone).
        linger: Longest wait, in seconds, for the rest of a group smaller than the last
            one reached (see the module docstring); 0 commits whatever is waiting at once.
    """

    def __init__(
        self,
        repository: OutboxRepository,
        marks: PublishedMarks,
        stats: PublishStats,
        *,
        new_claim: NewClaim,
        on_committed: OnCommitted,
        max_rows: int = 500,
        linger: float = 0.0,
    ) -> None:
        self._repository = repository
        self._marks = marks
        self._stats = stats
        self._new_claim = new_claim
        self._on_committed = on_committed
        # One more turn of the event loop before a group lets requests that are ready to
        # commit join it instead of waiting for the next one.
        self._batcher: Batcher[_Request, None] = Batcher(
            self._commit,
            max_size=max_rows,
            size=_rows,
            linger=linger,
            yield_turns=1,
            name="outbox-group-commit",
        )

    async def insert(self, rows: list[NewEvent], messages: Messages) -> None:
        """Return once ``rows`` are committed, all in one transaction.

        Raises:
            sqlalchemy.exc.IntegrityError: one of the rows' ids is already in the outbox
                (only this request fails; the others of its group commit).
            OutboxUnavailableError: the publisher closed before the rows were committed.
            Exception: what the transaction raised (every request of the group gets it).
        """
        await self._batcher.submit(_Request(rows, messages))

    async def close(self) -> None:
        """Stop committing (after the HTTP server stopped sending requests).

        Requests still waiting for a group then fail with ``OutboxUnavailableError``
        (nothing of theirs was committed), so a library caller publishing during shutdown
        gets an answer instead of waiting forever.
        """
        await self._batcher.aclose(
            OutboxUnavailableError("the publisher closed before the event was committed")
        )

    async def _commit(self, group: list[_Request]) -> list[Failed | None]:
        claim = self._new_claim()
        attempts = 0 if claim is None else 1
        outcomes: list[Failed | None]
        try:
            await self._insert([row for request in group for row in request.rows], claim, attempts)
            outcomes = [None] * len(group)
        except IntegrityError:
            # A duplicate id somewhere in the group: commit each request alone, so only
            # the request that carries it fails.
            outcomes = await one_by_one(
                group, lambda request: self._insert(request.rows, claim, attempts)
            )
        committed = [
            request
            for request, outcome in zip(group, outcomes, strict=True)
            if not isinstance(outcome, Failed)
        ]
        if committed:
            self._on_committed(
                claim,
                [row for request in committed for row in request.rows],
                {k: v for request in committed for k, v in request.messages.items()},
            )
        return outcomes

    async def _insert(self, rows: list[NewEvent], claim: str | None, attempts: int) -> None:
        """One transaction: ``rows`` and, on SQLite, the ``published`` marks waiting now.

        On SQLite every write waits for the one connection, so taking the marks along
        saves the transaction of their own that would hold it between two group commits.
        On PostgreSQL the marks are written on another connection in parallel; taking them
        along would only lengthen the transaction the requests are waiting for.
        """
        marks = None
        try:
            async with self._repository.engine.begin() as connection:
                now = utc_now()
                await self._repository.insert(
                    connection, rows, claim=claim, now=now, attempts=attempts
                )
                if connection.dialect.name == "sqlite":
                    marks = self._marks.take()
                if marks is not None:
                    await self._repository.set_published(connection, marks.ids, now=now)
        except BaseException:
            if marks is not None:
                self._marks.give_back(marks)
            raise
        stats = self._stats
        stats.commit_groups += 1
        stats.grouped_events += len(rows)
        if marks is not None:
            marks.committed()
