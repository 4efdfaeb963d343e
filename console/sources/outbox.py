"""The producer's outbox, read only: one event, the events of an Idempotency-Key, the backlog.

Reads go through the producer's own :class:`~producer.outbox.OutboxRepository`, so the
console depends on its public queries, not on its tables. The engine is a plain one (no
``BEGIN IMMEDIATE`` as the producer's own SQLite engine has), so the console's reads never
take the outbox's write lock.
"""

from datetime import timedelta

from common import pool
from producer.outbox import OutboxRecord, OutboxRepository
from producer.outbox.records import Backlog, IdempotencyKeyUse


class OutboxReader:
    """Read-only queries on the outbox database.

    Args:
        url: SQLAlchemy async URL of the producer's outbox (``PRODUCER_DATABASE_URL``).
    """

    def __init__(self, url: str) -> None:
        self.engine = pool.create_engine(url)
        # The lease only matters to claims, which the console never makes.
        self._repository = OutboxRepository(self.engine, lease=timedelta(seconds=60))

    async def get(self, event_id: str) -> OutboxRecord | None:
        """The event's row with its trace context, or ``None`` (never accepted, or pruned
        after retention)."""
        return await self._repository.get(event_id)

    async def key_uses(self, key: str) -> list[IdempotencyKeyUse]:
        """Every caller's use of Idempotency-Key ``key`` (keys are per caller), newest first."""
        return await self._repository.idempotency_key_uses(key)

    async def backlog(self) -> Backlog:
        """Rows waiting to be published and the oldest one's acceptance time."""
        return await self._repository.backlog()

    async def close(self) -> None:
        await self.engine.dispose()
