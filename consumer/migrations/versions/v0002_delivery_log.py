"""Deliveries: what the delivery log reports, the claim's owner and the "logged" mark.

Rows delivered before this revision are marked logged: their lines were appended by the
previous version (or the log was off), and they have no subject to report.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNLOGGED = "status = 'delivered' AND logged_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("subject", sa.String(200)))
        batch.add_column(sa.Column("priority", sa.String(8)))
        batch.add_column(sa.Column("template", sa.String(128)))
        batch.add_column(sa.Column("claimed_by", sa.String(128)))
        batch.add_column(sa.Column("logged_at", sa.DateTime(timezone=True)))
    op.execute(
        "UPDATE deliveries SET logged_at = delivered_at "
        "WHERE status = 'delivered' AND logged_at IS NULL"
    )
    op.create_index(
        "ix_deliveries_unlogged",
        "deliveries",
        ["event_id"],
        postgresql_where=sa.text(_UNLOGGED),
        sqlite_where=sa.text(_UNLOGGED),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_unlogged", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        for column in ("logged_at", "claimed_by", "template", "priority", "subject"):
            batch.drop_column(column)
