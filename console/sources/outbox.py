"""The producer's outbox, read only: one event, the events of an Idempotency-Key, the backlog.

Reads go through the producer's own :class:`~producer.outbox.OutboxRepository` and table
definitions. The engine is a plain one (no ``BEGIN IMMEDIATE`` as the producer's own
SQLite engine has), so the console's reads never take the outbox's write lock.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from common import pool
from producer.outbox import OutboxRecord, OutboxRepository
from producer.outbox.models import idempotency_keys, outbox
from producer.outbox.records import Backlog


@dataclass(frozen=True)
class OutboxEntry:
    """An outbox row and the W3C trace context stored with it.

    Attributes:
        record: The row as the producer's ``GET /v1/events/{id}`` sees it.
        traceparent: W3C ``traceparent`` of the event's ``create <queue>`` span, if traced.
    """

    record: OutboxRecord
    traceparent: str | None

    @property
    def trace_id(self) -> str | None:
        """The 32-hex-digit trace id in ``traceparent`` (``00-<trace id>-<span id>-<flags>``)."""
        parts = (self.traceparent or "").split("-")
        return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


@dataclass(frozen=True)
class KeyUse:
    """One use of an Idempotency-Key: by whom, when, and the events it produced."""

    principal: str
    event_ids: list[str]
    created_at: datetime


class OutboxReader:
    """Read-only queries on the outbox database.

    Args:
        url: SQLAlchemy async URL of the producer's outbox (``PRODUCER_DATABASE_URL``).
    """

    def __init__(self, url: str) -> None:
        self.engine = pool.create_engine(url)
        # The lease only matters to claims, which the console never makes.
        self._repository = OutboxRepository(self.engine, lease=timedelta(seconds=60))

    async def get(self, event_id: str) -> OutboxEntry | None:
        """The event's row, or ``None`` (never accepted, or pruned after retention)."""
        record = await self._repository.get(event_id)
        if record is None:
            return None
        async with self.engine.connect() as connection:
            stored = await connection.scalar(
                select(outbox.c.trace_context).where(outbox.c.id == event_id)
            )
        traceparent = None
        if stored:
            try:
                traceparent = json.loads(stored).get("traceparent")
            except (ValueError, AttributeError):
                traceparent = None
        return OutboxEntry(record, traceparent if isinstance(traceparent, str) else None)

    async def key_uses(self, key: str) -> list[KeyUse]:
        """Every caller's use of Idempotency-Key ``key`` (keys are per caller), newest first."""
        statement = (
            select(
                idempotency_keys.c.principal,
                idempotency_keys.c.event_ids,
                idempotency_keys.c.created_at,
            )
            .where(idempotency_keys.c.key == key)
            .order_by(idempotency_keys.c.created_at.desc())
        )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
        return [KeyUse(row[0], list(json.loads(row[1])), row[2]) for row in rows]

    async def backlog(self) -> Backlog:
        """Rows waiting to be published and the oldest one's acceptance time."""
        return await self._repository.backlog()

    async def close(self) -> None:
        await self.engine.dispose()
