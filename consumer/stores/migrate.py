"""Run the consumer's Alembic migrations programmatically.

The Alembic environment is ``consumer/migrations``; its version table is
``consumer_alembic_version``. On PostgreSQL, concurrent replicas starting together
serialise on an advisory lock, so only one runs the DDL.
"""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
VERSION_TABLE = "consumer_alembic_version"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic ``Config`` pointing at ``consumer/migrations`` (no ``alembic.ini`` needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def upgrade(engine: AsyncEngine) -> None:
    """Upgrade the database behind ``engine`` to the latest revision."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)
