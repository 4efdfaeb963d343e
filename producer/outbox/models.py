"""Outbox tables (SQLAlchemy Core), owned by the producer's Alembic migrations.

Both tables live in their own ``MetaData`` so an application that embeds the producer
keeps its own metadata and migrations; the producer's migrations record their revision in
``producer_alembic_version``.

Row life cycle (``status``)::

    accepted --send--------> published
        |   \\--schedule---> scheduled --cancel--> cancelled
        |--cancel----------> cancelled
        \\--too large-------> failed      (cannot happen for events the API accepted)
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)

OUTBOX_TABLE = "producer_outbox"
IDEMPOTENCY_TABLE = "producer_idempotency_keys"
VERSION_TABLE = "producer_alembic_version"


class OutboxStatus(StrEnum):
    """Stored state of an outbox row."""

    ACCEPTED = "accepted"
    """Committed, not yet on Service Bus."""
    PUBLISHED = "published"
    """Sent; Service Bus acknowledged it."""
    SCHEDULED = "scheduled"
    """Scheduled with ``schedule_messages``; becomes active at ``deliver_at``."""
    CANCELLED = "cancelled"
    """Cancelled before it was sent, or its scheduled message was cancelled."""
    FAILED = "failed"
    """Can never be sent (larger than the entity's maximum message size)."""


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC ``datetime`` in Python; ``timestamptz`` on PostgreSQL, UTC text on SQLite.

    Binding a naive datetime raises ``ValueError``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

outbox = Table(
    OUTBOX_TABLE,
    metadata,
    Column("id", String(128), primary_key=True),
    Column("event_type", String(128), nullable=False),
    Column("queue", String(260), nullable=False),
    Column("source", String(256), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("accepted_at", UtcDateTime, nullable=False),
    Column("deliver_at", UtcDateTime, nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("sequence_number", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("last_error", Text, nullable=True),
    Column("lease_owner", String(255), nullable=True),
    Column("lease_until", UtcDateTime, nullable=True),
    # W3C trace context (JSON) of the event's creation span, put on the message at send.
    Column("trace_context", Text, nullable=True),
    Index(
        "ix_producer_outbox_pending",
        "accepted_at",
        postgresql_where=text("status = 'accepted'"),
        sqlite_where=text("status = 'accepted'"),
    ),
    Index("ix_producer_outbox_lease_owner", "lease_owner"),
    Index("ix_producer_outbox_finished", "status", "finished_at"),
)

idempotency_keys = Table(
    IDEMPOTENCY_TABLE,
    metadata,
    Column("principal", String(256), nullable=False),
    Column("key", String(255), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("event_ids", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("principal", "key"),
    Index("ix_producer_idempotency_created", "created_at"),
)
