"""Consumer outcomes per UTC minute (``consumer_outcomes``), summed over every replica.

Each consumer process adds what its counters grew by since its last flush
(:class:`consumer.outcome_recorder.OutcomeRecorder`) to the rows of the current minute,
with an additive upsert (``INSERT ... ON CONFLICT DO UPDATE SET count = count + n``), so
replicas scaled out by KEDA and restarts add up instead of overwriting each other. The
console reads the rows to chart outcomes per minute where it cannot reach the replicas'
``/status``.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from consumer.stores.database import Database, as_utc
from consumer.stores.schema import consumer_outcomes

OUTCOMES: Final = ("completed", "dead_lettered", "retried")
"""Outcomes recorded: completions after success (duplicates included; the original of a
delayed retry is counted once, as a retry, as the ``servicebus_events.consumer.outcomes``
metric does), dead-letterings by the consumer, and retries (in-process and scheduled
re-sends)."""

REASON_LENGTH: Final = 128
"""Longest dead-letter reason kept (longer ones are cut)."""

OutcomeKey = tuple[str, str, str]
"""``(queue, outcome, reason)``; ``reason`` is ``""`` except for ``dead_lettered``."""


@dataclass(frozen=True)
class OutcomeCount:
    """One row: ``count`` outcomes recorded in the UTC minute starting at ``minute``.

    Attributes:
        minute: Start of the minute (aware UTC, seconds 0).
        queue: The source's entity path.
        outcome: One of :data:`OUTCOMES`.
        reason: Dead-letter reason (``""`` for the other outcomes).
        count: Outcomes, summed over every consumer process.
    """

    minute: datetime
    queue: str
    outcome: str
    reason: str
    count: int


def minute_of(at: datetime) -> datetime:
    """The start of ``at``'s minute (``at`` aware UTC)."""
    return at.replace(second=0, microsecond=0)


class OutcomeStore:
    """The ``consumer_outcomes`` table of one database (SQLite or PostgreSQL).

    Args:
        database: The consumer's database (``CONSUMER_AUDIT_STORE_URL``), migrated.
    """

    def __init__(self, database: Database) -> None:
        self._db = database

    async def add(self, minute: datetime, counts: Mapping[OutcomeKey, int]) -> None:
        """Add ``counts`` to the rows of ``minute``, in one transaction.

        Args:
            minute: Start of a UTC minute (:func:`minute_of`).
            counts: Outcomes to add per key; zero counts are skipped.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the write failed; nothing was added.
            OSError: the database is unreachable; nothing was added.
        """
        rows = [
            {
                "minute": minute,
                "queue": queue,
                "outcome": outcome,
                "reason": reason,
                "count": count,
            }
            for (queue, outcome, reason), count in _merged(counts).items()
            if count
        ]
        if not rows:
            return
        dialect = postgresql if self._db.dialect == "postgresql" else sqlite
        statement = dialect.insert(consumer_outcomes).values(rows)
        statement = statement.on_conflict_do_update(
            index_elements=[
                consumer_outcomes.c.minute,
                consumer_outcomes.c.queue,
                consumer_outcomes.c.outcome,
                consumer_outcomes.c.reason,
            ],
            set_={"count": consumer_outcomes.c.count + statement.excluded.count},
        )
        async with self._db.write() as connection:
            await connection.execute(statement)

    async def since(self, start: datetime) -> list[OutcomeCount]:
        """The rows of ``start``'s minute and after, oldest first.

        Args:
            start: Aware UTC; the rows of the minute it falls in are included.
        """
        table = consumer_outcomes.c
        query = (
            select(table.minute, table.queue, table.outcome, table.reason, table.count)
            .where(table.minute >= minute_of(start))
            .order_by(table.minute)
        )
        async with self._db.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [
            OutcomeCount(as_utc(minute), queue, outcome, reason, int(count))
            for minute, queue, outcome, reason, count in rows
        ]

    async def prune(self, before: datetime) -> int:
        """Delete the minutes that started before ``before`` (aware UTC).

        Returns:
            Rows deleted.
        """
        async with self._db.write() as connection:
            result = await connection.execute(
                delete(consumer_outcomes).where(consumer_outcomes.c.minute < before)
            )
        return int(result.rowcount or 0)


def _merged(counts: Mapping[OutcomeKey, int]) -> dict[OutcomeKey, int]:
    """``counts`` with reasons cut to :data:`REASON_LENGTH`, keys that then collide summed
    (one statement may not touch a row twice on PostgreSQL)."""
    merged: dict[OutcomeKey, int] = {}
    for (queue, outcome, reason), count in counts.items():
        key = (queue, outcome, reason[:REASON_LENGTH])
        merged[key] = merged.get(key, 0) + count
    return merged
