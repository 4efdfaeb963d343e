"""Running a component's Alembic migrations programmatically (no ``alembic.ini``).

The producer (outbox) and the consumer (stores) each own a migrations folder and a version
table of their own, so both can share one database.
"""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection


def alembic_config(script_location: Path, connection: Connection | None = None) -> Config:
    """Alembic ``Config`` for the migrations in ``script_location``.

    Args:
        script_location: The component's migrations folder (with ``env.py``).
        connection: An open connection the migrations run on (inside its transaction);
            ``env.py`` reads it from ``config.attributes["connection"]``.
    """
    config = Config()
    config.set_main_option("script_location", str(script_location))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade_to_head(connection: Connection, script_location: Path) -> None:
    """Apply every pending migration on ``connection`` (use with ``run_sync``)."""
    command.upgrade(alembic_config(script_location, connection), "head")
