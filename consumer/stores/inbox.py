"""Idempotency inbox: which event ids each handler has already applied.

The row is written in the same transaction as the handler's effect, so "effect applied"
and "event seen" commit together. Rows are kept at least as long as the queues'
duplicate-detection window (``CONSUMER_INBOX_RETENTION``) and pruned after. See
https://learn.microsoft.com/azure/service-bus-messaging/duplicate-detection
"""

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from consumer.stores.database import Database
from consumer.stores.schema import consumer_inbox, deliveries


class Inbox:
    """The ``consumer_inbox`` table of one database."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def record(
        self, connection: AsyncConnection, handler: str, event_id: str, at: datetime
    ) -> bool:
        """Insert (handler, event id) inside the caller's transaction.

        Returns:
            ``False`` if the pair was already there (a duplicate delivery).
        """
        dialect = postgresql if self._db.dialect == "postgresql" else sqlite
        statement = (
            dialect.insert(consumer_inbox)
            .values(handler=handler, event_id=event_id, processed_at=at)
            .on_conflict_do_nothing()
        )
        result = await connection.execute(statement)
        return bool(result.rowcount)

    async def record_many(
        self, connection: AsyncConnection, handler: str, event_ids: list[str], at: datetime
    ) -> set[str]:
        """Insert several (handler, event id) pairs in one statement, in the caller's
        transaction.

        Returns:
            The event ids that were new (the others were already recorded).
        """
        if not event_ids:
            return set()
        dialect = postgresql if self._db.dialect == "postgresql" else sqlite
        statement = (
            dialect.insert(consumer_inbox)
            .values([{"handler": handler, "event_id": i, "processed_at": at} for i in event_ids])
            .on_conflict_do_nothing()
            .returning(consumer_inbox.c.event_id)
        )
        result = await connection.execute(statement)
        return {row[0] for row in result}

    async def prune(self, older_than: datetime) -> int:
        """Delete inbox rows and finished delivery records older than ``older_than``.

        Returns:
            Rows deleted.
        """
        async with self._db.write() as connection:
            inbox = await connection.execute(
                delete(consumer_inbox).where(consumer_inbox.c.processed_at < older_than)
            )
            finished = await connection.execute(
                delete(deliveries).where(
                    deliveries.c.updated_at < older_than,
                    deliveries.c.status.in_(("delivered", "rejected")),
                )
            )
        return int(inbox.rowcount or 0) + int(finished.rowcount or 0)


def prune_cutoff(now: datetime, retention: timedelta) -> datetime:
    """The oldest ``processed_at`` kept."""
    return now - retention
