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

The lease only has to outlive one live attempt (the handler bounds an attempt by the
channel's timeout), so a claim left by a killed process blocks redeliveries briefly. A
claim records its owner (:attr:`DeliveryStore.owner`): when the owning process itself
gets the event again and has no attempt running for it (the last one was cancelled at
the processing deadline or at shutdown), it takes the claim over at once instead of
waiting out its own lease.

Delivered rows also feed the delivery log (:mod:`consumer.handlers.delivery_log`):
:meth:`unlogged` lists delivered rows whose line is not written yet, :meth:`mark_logged`
records that it is.
"""

import os
import socket
import uuid
from collections.abc import Iterable
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


@dataclass(frozen=True)
class DeliveredRecord:
    """A delivered notification as the delivery log reports it (times aware UTC;
    ``subject`` and ``priority`` are ``None`` for rows older than revision 0002)."""

    event_id: str
    channel: str
    recipient: str
    subject: str | None
    priority: str | None
    template: str | None
    accepted_at: datetime
    delivered_at: datetime


DEFAULT_LEASE = timedelta(seconds=40)
"""The shipped settings' lease: the 10 s channel timeouts plus 30 s to record the outcome
(see ``ConsumerSettings.delivery_claim_lease``)."""


_MARK_CHUNK = 500
"""Event ids per ``mark_logged`` statement (SQLite allows 32,766 bound parameters)."""


def _new_owner() -> str:
    # Host and pid say who holds a claim; the random part tells a restarted process (same
    # pid in a new container) from the one that died holding the claim.
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class DeliveryStore:
    """The ``deliveries`` table.

    Args:
        database: The consumer's database.
        lease: How long a claim holds off other deliveries of the event; must exceed the
            longest delivery attempt plus the time to record its outcome.
        owner: This process's claim owner id (default: host, pid and a random suffix).
    """

    def __init__(
        self, database: Database, lease: timedelta = DEFAULT_LEASE, owner: str | None = None
    ) -> None:
        self._db = database
        self.lease = lease
        self.owner = owner or _new_owner()
        self._attempting: set[str] = set()  # event ids with an attempt running here

    async def claim(self, envelope: NotificationEnvelope) -> Claim:
        """Claim the event for delivery (see the module docstring).

        A ``CLAIMED`` event must be finished with one of the ``mark_*`` methods, or
        :meth:`abandon` when the attempt ends without an outcome (cancelled).
        """
        now = datetime.now(UTC)
        data = envelope.data
        async with self._db.write() as connection:
            row = (
                await connection.execute(
                    select(deliveries.c.status, deliveries.c.claimed_until, deliveries.c.claimed_by)
                    .where(deliveries.c.event_id == envelope.id)
                    .with_for_update()
                )
            ).one_or_none()
            if row is None:
                await connection.execute(
                    insert(deliveries).values(
                        event_id=envelope.id,
                        channel=data.channel.value,
                        recipient=data.recipient,
                        subject=data.subject,
                        priority=data.priority.value,
                        template=data.template,
                        status=DeliveryStatus.SENDING.value,
                        attempts=1,
                        accepted_at=envelope.time,
                        claimed_until=now + self.lease,
                        claimed_by=self.owner,
                        updated_at=now,
                    )
                )
                self._attempting.add(envelope.id)
                return Claim.CLAIMED
            if row.status == DeliveryStatus.DELIVERED:
                return Claim.ALREADY_DELIVERED
            if (
                row.status == DeliveryStatus.SENDING
                and row.claimed_until is not None
                and as_utc(row.claimed_until) > now
                and not self._own_stale_claim(envelope.id, row.claimed_by)
            ):
                return Claim.IN_PROGRESS
            await connection.execute(
                update(deliveries)
                .where(deliveries.c.event_id == envelope.id)
                .values(
                    status=DeliveryStatus.SENDING.value,
                    attempts=deliveries.c.attempts + 1,
                    claimed_until=now + self.lease,
                    claimed_by=self.owner,
                    updated_at=now,
                )
            )
            self._attempting.add(envelope.id)
            return Claim.CLAIMED

    def _own_stale_claim(self, event_id: str, claimed_by: str | None) -> bool:
        """Our own claim, with no attempt of ours running: its attempt was cancelled."""
        return claimed_by == self.owner and event_id not in self._attempting

    def abandon(self, event_id: str) -> None:
        """The attempt ended without an outcome (cancelled; the message may have gone out).

        The claim stays, so other processes wait for its lease; this process may take it
        over at once on its next delivery of the event.
        """
        self._attempting.discard(event_id)

    async def mark_delivered(self, event_id: str) -> datetime:
        """Record the delivery; returns its time (aware UTC)."""
        now = datetime.now(UTC)
        await self._finish(
            event_id, DeliveryStatus.DELIVERED, None, delivered_at=now, updated_at=now
        )
        return now

    async def mark_failed(self, event_id: str, error: str) -> None:
        """Transient failure: release the claim so a retry may claim again."""
        await self._finish(event_id, DeliveryStatus.FAILED, error, updated_at=datetime.now(UTC))

    async def mark_rejected(self, event_id: str, error: str) -> None:
        """Permanent failure (the message is dead-lettered; a DLQ replay may claim again)."""
        await self._finish(event_id, DeliveryStatus.REJECTED, error, updated_at=datetime.now(UTC))

    async def _finish(
        self, event_id: str, status: DeliveryStatus, error: str | None, **values: object
    ) -> None:
        try:
            async with self._db.write() as connection:
                await connection.execute(
                    update(deliveries)
                    .where(deliveries.c.event_id == event_id)
                    .values(
                        status=status.value,
                        claimed_until=None,
                        claimed_by=None,
                        last_error=error,
                        **values,
                    )
                )
        finally:
            self._attempting.discard(event_id)

    async def unlogged(self) -> list[DeliveredRecord]:
        """Delivered rows whose delivery-log line is not recorded as written, oldest first."""
        columns = [
            deliveries.c.event_id,
            deliveries.c.channel,
            deliveries.c.recipient,
            deliveries.c.subject,
            deliveries.c.priority,
            deliveries.c.template,
            deliveries.c.accepted_at,
            deliveries.c.delivered_at,
        ]
        statement = (
            select(*columns)
            .where(
                deliveries.c.status == DeliveryStatus.DELIVERED.value,
                deliveries.c.logged_at.is_(None),
            )
            .order_by(deliveries.c.delivered_at, deliveries.c.event_id)
        )
        async with self._db.engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
        return [
            DeliveredRecord(
                event_id=row.event_id,
                channel=row.channel,
                recipient=row.recipient,
                subject=row.subject,
                priority=row.priority,
                template=row.template,
                accepted_at=as_utc(row.accepted_at),
                delivered_at=as_utc(row.delivered_at or row.accepted_at),
            )
            for row in rows
        ]

    async def mark_logged(self, event_ids: Iterable[str]) -> None:
        """Record that these events' lines are in the delivery log."""
        ids = list(event_ids)
        now = datetime.now(UTC)
        for start in range(0, len(ids), _MARK_CHUNK):
            async with self._db.write() as connection:
                await connection.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.event_id.in_(ids[start : start + _MARK_CHUNK]),
                        deliveries.c.logged_at.is_(None),
                    )
                    .values(logged_at=now)
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
