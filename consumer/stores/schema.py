"""Table definitions the stores query. Alembic migrations (``consumer/migrations``) own DDL.

Times are ``TIMESTAMP WITH TIME ZONE`` on PostgreSQL; SQLite stores them as naive UTC
text, so readers normalise with :func:`consumer.stores.database.as_utc`.
"""

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

SequenceNumber = BigInteger().with_variant(Integer(), "sqlite")

audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", SequenceNumber, primary_key=True, autoincrement=False),
    Column("event_id", String(128), nullable=False, unique=True),
    Column("source", String(256), nullable=False),
    Column("actor_id", String(128), nullable=False),
    Column("actor_type", String(16), nullable=False),
    Column("action", String(100), nullable=False),
    Column("resource_type", String(128), nullable=False),
    Column("resource_id", String(128), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("tenant", String(128)),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("accepted_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("correlation_id", String(128)),
    Column("event", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_events_actor_id", "actor_id"),
    Index("ix_audit_events_action", "action"),
    Index("ix_audit_events_resource", "resource_type", "resource_id"),
    Index("ix_audit_events_occurred_at", "occurred_at"),
    Index("ix_audit_events_tenant", "tenant"),
)
"""Append-only; ``seq`` is the chain position (1, 2, ...), ``hash`` chains to ``prev_hash``."""

audit_chain_head = Table(
    "audit_chain_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", SequenceNumber, nullable=False),
    Column("hash", String(64), nullable=False),
)
"""One row (``id = 1``): the last appended ``seq`` and ``hash``. Appends lock it."""

consumer_inbox = Table(
    "consumer_inbox",
    metadata,
    Column("handler", String(64), primary_key=True),
    Column("event_id", String(128), primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False),
    Index("ix_consumer_inbox_processed_at", "processed_at"),
)
"""Event ids a handler has applied, written in the same transaction as the effect."""

deliveries = Table(
    "deliveries",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("channel", String(16), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("accepted_at", DateTime(timezone=True), nullable=False),
    Column("claimed_until", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text),
    Column("subject", String(200)),
    Column("priority", String(8)),
    Column("template", String(128)),
    Column("claimed_by", String(128)),
    Column("logged_at", DateTime(timezone=True)),
    Index("ix_deliveries_updated_at", "updated_at"),
    Index(
        "ix_deliveries_unlogged",
        "event_id",
        postgresql_where=text("status = 'delivered' AND logged_at IS NULL"),
        sqlite_where=text("status = 'delivered' AND logged_at IS NULL"),
    ),
)
"""One row per notification event: the idempotency record and the delivery report.

``status``: ``sending`` (claimed by ``claimed_by`` until ``claimed_until``), ``failed``
(transient failure, may be retried), ``delivered``, ``rejected`` (permanent failure).
``subject``, ``priority`` and ``template`` (null for a plain body) are what the delivery
log reports; ``logged_at`` is set once the row's line is in the delivery log (null:
delivered but not logged yet, caught up at start-up). Rows from before revision 0002 have
null ``subject`` and ``priority``.
"""

consumer_outcomes = Table(
    "consumer_outcomes",
    metadata,
    Column("minute", DateTime(timezone=True), primary_key=True),
    Column("queue", String(512), primary_key=True),
    Column("outcome", String(16), primary_key=True),
    Column("reason", String(128), primary_key=True),
    Column("count", BigInteger, nullable=False),
)
"""Consumer outcomes per UTC minute, summed over every replica (issue 26).

``minute`` is the start of the UTC minute the counts were recorded in (by the consumer's
periodic flush, so up to ``CONSUMER_OUTCOME_FLUSH_INTERVAL`` after the outcomes);
``queue`` the source's entity path; ``outcome`` ``completed``, ``dead_lettered`` or
``retried``; ``reason`` the dead-letter reason (``""`` for the other outcomes). Rows are
added to (``count = count + n``), never replaced. ``minute`` leads the key so the range
reads and the prune use it.
"""
