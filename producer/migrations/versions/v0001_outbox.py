"""Outbox and idempotency-key tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from producer.outbox.models import UtcDateTime

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "producer_outbox",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("queue", sa.String(260), nullable=False),
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("accepted_at", UtcDateTime, nullable=False),
        sa.Column("deliver_at", UtcDateTime, nullable=True),
        sa.Column("finished_at", UtcDateTime, nullable=True),
        sa.Column("sequence_number", sa.BigInteger, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_until", UtcDateTime, nullable=True),
    )
    op.create_index(
        "ix_producer_outbox_pending",
        "producer_outbox",
        ["accepted_at"],
        postgresql_where=sa.text("status = 'accepted'"),
        sqlite_where=sa.text("status = 'accepted'"),
    )
    op.create_index("ix_producer_outbox_lease_owner", "producer_outbox", ["lease_owner"])
    op.create_index("ix_producer_outbox_finished", "producer_outbox", ["status", "finished_at"])
    op.create_table(
        "producer_idempotency_keys",
        sa.Column("principal", sa.String(256), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("event_ids", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("principal", "key"),
    )
    op.create_index("ix_producer_idempotency_created", "producer_idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_table("producer_idempotency_keys")
    op.drop_table("producer_outbox")
