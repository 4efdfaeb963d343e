"""The check both apps' migration tests make: do the migrations build exactly the models?"""

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, MetaData


def schema_differences(connection: Connection, metadata: MetaData) -> list[Any]:
    """What Alembic's autogenerate would change to make ``connection``'s database match
    ``metadata``, looking only at ``metadata``'s own tables (the other app's and the version
    tables share the database). Use with ``await connection.run_sync(schema_differences,
    metadata)``."""
    context = MigrationContext.configure(
        connection,
        opts={"include_name": lambda name, kind, _: kind != "table" or name in metadata.tables},
    )
    differences: list[Any] = compare_metadata(context, metadata)
    return differences
