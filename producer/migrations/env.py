"""Alembic environment for the producer's outbox.

Normally run through :func:`producer.outbox.database.run_migrations`, which hands over an
open connection in ``config.attributes["connection"]``. Run from the ``alembic`` command
line (e.g. to autogenerate a revision) it connects to the URL given as ``-x url=...``.
Only the producer's own tables are compared, and the revision is recorded in
``producer_alembic_version`` so the producer can share a database with the consumer or
with an application that has its own Alembic history.
"""

import asyncio

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from producer.outbox.models import VERSION_TABLE, metadata


def _include_name(name: str | None, type_: str, parent_names: object) -> bool:
    return type_ != "table" or name in metadata.tables


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        include_name=_include_name,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_url(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


_connection = context.config.attributes.get("connection")
if _connection is not None:
    _run(_connection)
else:
    _url = context.get_x_argument(as_dictionary=True).get("url")
    if not _url:
        raise SystemExit("pass the database URL: alembic -x url=sqlite+aiosqlite:///x.db ...")
    asyncio.run(_run_from_url(_url))
