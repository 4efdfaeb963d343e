"""The transactional outbox: tables, database set-up, queries, relay and pruning."""

from producer.outbox.database import create_outbox_engine, run_migrations
from producer.outbox.models import OutboxStatus
from producer.outbox.records import OutboxRecord
from producer.outbox.repository import OutboxRepository

__all__ = [
    "OutboxRecord",
    "OutboxRepository",
    "OutboxStatus",
    "create_outbox_engine",
    "run_migrations",
]
