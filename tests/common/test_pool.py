"""Pinging idle pooled connections only (common.pool), against the real PostgreSQL.

A connection whose server process went away while it sat idle is replaced before use,
so the caller never sees the failure; one back in use within the idle window is not
pinged (that per-transaction ping is what the module saves), so it fails once, and the
pool then replaces the rest.
"""

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from common.pool import ping_when_idle
from tests.producer.conftest import POSTGRES_ADMIN_URL


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(pid: int) -> None:
    admin = create_async_engine(POSTGRES_ADMIN_URL, poolclass=NullPool)
    try:
        async with admin.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await admin.dispose()


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(POSTGRES_ADMIN_URL, pool_size=1, max_overflow=0)
    try:
        await _backend_pid(engine)
    except OSError as exc:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    yield engine
    await engine.dispose()


async def test_an_idle_connection_that_died_is_replaced_before_use(engine: AsyncEngine) -> None:
    ping_when_idle(engine, idle_seconds=0)
    pid = await _backend_pid(engine)
    await _terminate(pid)

    assert await _backend_pid(engine) != pid


async def test_a_recently_used_connection_is_not_pinged(engine: AsyncEngine) -> None:
    ping_when_idle(engine, idle_seconds=3600)
    pid = await _backend_pid(engine)
    await _terminate(pid)

    with pytest.raises(DBAPIError) as failed:
        await _backend_pid(engine)
    assert failed.value.connection_invalidated
    assert await _backend_pid(engine) != pid
