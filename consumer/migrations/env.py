"""Alembic environment for the consumer's tables.

Run through :func:`consumer.stores.migrate.upgrade`, which passes an open connection in
``config.attributes["connection"]``.
"""

from alembic import context
from sqlalchemy import text

from consumer.stores.migrate import VERSION_TABLE
from consumer.stores.schema import metadata

_ADVISORY_LOCK_KEY = 0x636F6E73756D6572  # "consumer"


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through consumer.stores.migrate.upgrade()")
    if connection.dialect.name == "postgresql":
        # Replicas starting together: the first runs the DDL, the others wait and find
        # the schema current.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) mode is not supported")
run_migrations_online()
