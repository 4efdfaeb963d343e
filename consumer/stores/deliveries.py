"""Delivery records: the notification handlers' idempotency and their delivery report.

A notification's side effect (an e-mail, an HTTP call) cannot share a transaction with
the database, so delivery is a claim protocol keyed on the EVENT id:

1. :meth:`DeliveryStore.claim` marks the event ``sending`` until a lease expires; a
   second delivery of the same event meanwhile sees ``IN_PROGRESS`` and backs off, and
   one that finds ``delivered`` skips the effect.
2. After the attempt, :meth:`mark_delivered`, :meth:`mark_failed` (transient, may be
   retried) or :meth:`mark_rejected` (permanent) release the claim.

So an event is delivered at most once, except when a process dies between sending and
recording (then, after the lease, the next delivery sends again: at-least-once there;
webhook receivers dedupe on the ``webhook-id`` header, which is the event id).
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, insert, select, update

from consumer.stores.database import Database, as_utc
from consumer.stores.schema import deliveries
from contracts import NotificationEnvelope


class Claim(StrEnum):
    """Outcome of :meth:`DeliveryStore.claim`."""

    CLAIMED = "claimed"
    """Go ahead and deliver, then mark the outcome."""
    ALREADY_DELIVERED = "already_delivered"
    """Delivered before: skip the effect."""
    IN_PROGRESS = "in_progress"
    """Another delivery of the same event holds an unexpired claim: try again later."""


class DeliveryStatus(StrEnum):
    SENDING = "sending"
    FAILED = "failed"
    DELIVERED = "delivered"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Delivery:
    """One row of ``deliveries`` (times aware UTC)."""

    event_id: str
    channel: str
    recipient: str
    status: str
    attempts: int
    accepted_at: datetime
    delivered_at: datetime | None
    last_error: str | None


class DeliveryStore:
    """The ``deliveries`` table.

    Args:
        database: The consumer's database.
        lease: How long a claim holds off a concurrent duplicate (should exceed the
            longest delivery attempt: the maximum processing time).
    """

    def __init__(self, database: Database, lease: timedelta = timedelta(minutes=5)) -> None:
        self._db = database
        self._lease = lease

    async def claim(self, envelope: NotificationEnvelope) -> Claim:
        """Claim the event for delivery (see the module docstring)."""
        now = datetime.now(UTC)
        async with self._db.write() as connection:
            row = (
                await connection.execute(
                    select(deliveries.c.status, deliveries.c.claimed_until)
                    .where(deliveries.c.event_id == envelope.id)
                    .with_for_update()
                )
            ).one_or_none()
            if row is None:
                await connection.execute(
                    insert(deliveries).values(
                        event_id=envelope.id,
                        channel=envelope.data.channel.value,
                        recipient=envelope.data.recipient,
                        status=DeliveryStatus.SENDING.value,
                        attempts=1,
                        accepted_at=envelope.time,
                        claimed_until=now + self._lease,
                        updated_at=now,
                    )
                )
                return Claim.CLAIMED
            if row.status == DeliveryStatus.DELIVERED:
                return Claim.ALREADY_DELIVERED
            if (
                row.status == DeliveryStatus.SENDING
                and row.claimed_until is not None
                and as_utc(row.claimed_until) > now
            ):
                return Claim.IN_PROGRESS
            await connection.execute(
                update(deliveries)
                .where(deliveries.c.event_id == envelope.id)
                .values(
                    status=DeliveryStatus.SENDING.value,
                    attempts=deliveries.c.attempts + 1,
                    claimed_until=now + self._lease,
                    updated_at=now,
                )
            )
            return Claim.CLAIMED

    async def mark_delivered(self, event_id: str) -> None:
        now = datetime.now(UTC)
        await self._finish(
            event_id, DeliveryStatus.DELIVERED, None, delivered_at=now, updated_at=now
        )

    async def mark_failed(self, event_id: str, error: str) -> None:
        """Transient failure: release the claim so a retry may claim again."""
        await self._finish(event_id, DeliveryStatus.FAILED, error, updated_at=datetime.now(UTC))

    async def mark_rejected(self, event_id: str, error: str) -> None:
        """Permanent failure (the message is dead-lettered; a DLQ replay may claim again)."""
        await self._finish(event_id, DeliveryStatus.REJECTED, error, updated_at=datetime.now(UTC))

    async def _finish(
        self, event_id: str, status: DeliveryStatus, error: str | None, **values: object
    ) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                update(deliveries)
                .where(deliveries.c.event_id == event_id)
                .values(status=status.value, claimed_until=None, last_error=error, **values)
            )

    async def get(self, event_id: str) -> Delivery | None:
        async with self._db.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(
                        deliveries.c.event_id,
                        deliveries.c.channel,
                        deliveries.c.recipient,
                        deliveries.c.status,
                        deliveries.c.attempts,
                        deliveries.c.accepted_at,
                        deliveries.c.delivered_at,
                        deliveries.c.last_error,
                    ).where(deliveries.c.event_id == event_id)
                )
            ).one_or_none()
        if row is None:
            return None
        return Delivery(
            event_id=row.event_id,
            channel=row.channel,
            recipient=row.recipient,
            status=row.status,
            attempts=row.attempts,
            accepted_at=as_utc(row.accepted_at),
            delivered_at=as_utc(row.delivered_at) if row.delivered_at else None,
            last_error=row.last_error,
        )

    async def count(self, status: DeliveryStatus | None = DeliveryStatus.DELIVERED) -> int:
        statement = select(func.count()).select_from(deliveries)
        if status is not None:
            statement = statement.where(deliveries.c.status == status.value)
        async with self._db.engine.connect() as connection:
            total = await connection.scalar(statement)
        return int(total or 0)
