"""Run the consumer's Alembic migrations programmatically.

The Alembic environment is ``consumer/migrations``; its version table is
``consumer_alembic_version``. On PostgreSQL, concurrent replicas starting together
serialise on an advisory lock, so only one runs the DDL.
"""

from pathlib import Path

from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from common.migrations import alembic_config as common_alembic_config
from common.migrations import upgrade_to_head

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
VERSION_TABLE = "consumer_alembic_version"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic ``Config`` pointing at ``consumer/migrations``."""
    return common_alembic_config(MIGRATIONS, connection)


async def upgrade(engine: AsyncEngine) -> None:
    """Upgrade the database behind ``engine`` to the latest revision."""
    async with engine.begin() as connection:
        await connection.run_sync(upgrade_to_head, MIGRATIONS)
