"""What the outbox holds and hands out: rows as inserted, claimed, stored and counted.

Plain frozen dataclasses, kept apart from the queries (:mod:`producer.outbox.repository`)
so that the publisher, the relay and the group commit can name them without the SQL.
All times are aware UTC datetimes.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from producer.outbox.models import OutboxStatus


@dataclass(frozen=True)
class NewEvent:
    """An event to insert into the outbox.

    Attributes:
        id: Event id (also the Service Bus message id).
        event_type: CloudEvents ``type``.
        queue: Destination queue.
        source: The authenticated caller (CloudEvents ``source``).
        body: The JSON envelope, as sent.
        deliver_at: Scheduled enqueue time, or ``None`` to send at once.
        trace_context: JSON W3C headers of the event's creation span, if traced.
    """

    id: str
    event_type: str
    queue: str
    source: str
    body: str
    deliver_at: datetime | None = None
    trace_context: str | None = None


@dataclass(frozen=True)
class ClaimedEvent:
    """A row this process holds a lease on and must publish."""

    id: str
    queue: str
    body: str
    deliver_at: datetime | None
    trace_context: str | None = None

    @classmethod
    def of(cls, row: "Row[Any] | NewEvent") -> "ClaimedEvent":
        """The publishable part of a claimed row, or of a row this process just inserted."""
        return cls(
            id=row.id,
            queue=row.queue,
            body=row.body,
            deliver_at=row.deliver_at,
            trace_context=row.trace_context,
        )


@dataclass(frozen=True)
class OutboxRecord:
    """A row as stored (see :mod:`producer.outbox.models` for the state machine).

    ``trace_context`` is the JSON W3C headers of the event's ``create <queue>`` span
    (``None`` when it was not traced); :attr:`traceparent` and :attr:`trace_id` read it.
    """

    id: str
    event_type: str
    queue: str
    source: str
    status: OutboxStatus
    accepted_at: datetime
    deliver_at: datetime | None
    finished_at: datetime | None
    sequence_number: int | None
    attempts: int
    last_error: str | None
    lease_until: datetime | None
    trace_context: str | None = None

    @property
    def traceparent(self) -> str | None:
        """The W3C ``traceparent`` stored with the event, if traced and well formed JSON."""
        if not self.trace_context:
            return None
        try:
            headers = json.loads(self.trace_context)
        except ValueError:
            return None
        value = headers.get("traceparent") if isinstance(headers, dict) else None
        return value if isinstance(value, str) else None

    @property
    def trace_id(self) -> str | None:
        """The 32-hex-digit trace id of :attr:`traceparent` (``00-<trace id>-<span>-<flags>``)."""
        parts = (self.traceparent or "").split("-")
        return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


@dataclass(frozen=True)
class Backlog:
    """Rows waiting to be published.

    Attributes:
        count: Rows in ``accepted``.
        oldest_accepted_at: When the oldest of them was accepted (``None`` if none).
    """

    count: int
    oldest_accepted_at: datetime | None


@dataclass(frozen=True)
class IdempotencyRecord:
    """What a caller's ``Idempotency-Key`` was first used for."""

    fingerprint: str
    event_ids: list[str]
    created_at: datetime


@dataclass(frozen=True)
class IdempotencyKeyUse:
    """One caller's use of an ``Idempotency-Key`` (keys are scoped per caller).

    Attributes:
        principal: The caller (its CloudEvents ``source``).
        event_ids: The events the request produced.
        created_at: When the key was first used (aware UTC).
    """

    principal: str
    event_ids: list[str]
    created_at: datetime
