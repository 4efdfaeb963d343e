"""The consumer's Alembic migrations, on SQLite and PostgreSQL: a store from an earlier
revision upgrades with its rows kept, and the result is exactly the tables the stores
query (``consumer.stores.schema``)."""

from alembic import command
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, select, text

from consumer.stores.database import Database
from consumer.stores.migrate import MIGRATIONS, VERSION_TABLE, alembic_config
from consumer.stores.schema import consumer_inbox, metadata
from tests.schema_support import schema_differences


def to_revision(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


def down_to(connection: Connection, revision: str) -> None:
    command.downgrade(alembic_config(connection), revision)


def current(connection: Connection) -> str | None:
    return MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE}
    ).get_current_revision()


def tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_a_0002_store_upgrades_to_outcomes_keeping_its_rows(store_url: str) -> None:
    assert MIGRATIONS.is_dir()
    database = Database(store_url)
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(to_revision, "0002")
            assert "consumer_outcomes" not in await connection.run_sync(tables)
            await connection.execute(
                text(
                    "INSERT INTO consumer_inbox (handler, event_id, processed_at) "
                    "VALUES ('audit', 'e-1', CURRENT_TIMESTAMP)"
                )
            )

        await database.migrate()
        await database.migrate()  # again: nothing to do

        async with database.engine.connect() as connection:
            assert await connection.run_sync(current) == "0003"
            assert "consumer_outcomes" in await connection.run_sync(tables)
            assert await connection.run_sync(schema_differences, metadata) == []
            kept = await connection.scalars(select(consumer_inbox.c.event_id))
            assert list(kept) == ["e-1"]
        async with database.engine.begin() as connection:
            await connection.run_sync(down_to, "0002")
            assert "consumer_outcomes" not in await connection.run_sync(tables)
        await database.migrate()
        async with database.engine.connect() as connection:
            assert await connection.run_sync(current) == "0003"
    finally:
        await database.close()
