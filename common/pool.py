"""Engines for server databases whose pool pings only connections idle long enough to be stale.

SQLAlchemy's ``pool_pre_ping`` pings on *every* checkout: with asyncpg, a round trip to the
server, and the CPU it takes, on every transaction. Under load a pooled connection is back
in use within milliseconds and cannot have gone stale unnoticed, so the ping bought nothing
there and cost a measurable share of the producer's accept rate on PostgreSQL
(docs/benchmarks/findings.md §14.16). This keeps the ping for connections that sat in the
pool for ``idle_seconds`` or more (after a quiet spell, a database restart, a failover, an
idle timeout in a proxy), with the pool's documented recovery: a ``DisconnectionError``
raised from the ``checkout`` event makes the pool discard that connection and check out
another, up to three times
(https://docs.sqlalchemy.org/en/20/core/pooling.html#disconnect-handling-pessimistic,
"custom/legacy pessimistic ping").

A connection that dies while in use, or within ``idle_seconds`` of its last use, fails the
statement that uses it, as with no ping at all; SQLAlchemy then invalidates the whole pool
so the other connections are replaced on their next checkout
(https://docs.sqlalchemy.org/en/20/core/pooling.html#disconnect-handling-optimistic).

Use it through :func:`create_engine` (the outbox and the consumer's stores on PostgreSQL).
"""

import time
from typing import Any

from azure.core.credentials import TokenCredential
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext import asyncio as sqlalchemy_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from common.postgres_entra import enable_entra_sign_in, entra_connect_args, signs_in_with_entra

IDLE_SECONDS = 5.0
"""Default: connections idle at least this long (seconds) are pinged before use."""

_LAST_CHECKIN = "common.pool.last_checkin"


def create_engine(
    url: str | URL, *, entra_credential: TokenCredential | None = None, **kwargs: Any
) -> AsyncEngine:
    """An async engine for a server database (e.g. ``postgresql+asyncpg://``).

    Pooled connections idle for :data:`IDLE_SECONDS` or more are pinged before use
    (:func:`ping_when_idle`), unless ``pool_pre_ping=True`` in ``kwargs`` asks for
    SQLAlchemy's ping on every checkout. A URL to Azure Database for PostgreSQL with a
    user and no password signs in with Microsoft Entra ID (:mod:`common.postgres_entra`).

    Args:
        url: SQLAlchemy async URL.
        entra_credential: Sign in with this credential's Entra tokens, whatever the host
            (default: ``DefaultAzureCredential`` when the URL calls for it, else none).
        **kwargs: Passed to :func:`sqlalchemy.ext.asyncio.create_async_engine`.
    """
    parsed = make_url(url)
    entra = entra_credential is not None or signs_in_with_entra(parsed)
    if entra:
        kwargs["connect_args"] = {
            **kwargs.get("connect_args", {}),
            **entra_connect_args(entra_credential),
        }
    # Looked up per call, not imported by name: OpenTelemetry's SQLAlchemy instrumentation
    # wraps it after this module is imported, and the store spans come from that wrapper.
    engine = sqlalchemy_asyncio.create_async_engine(parsed, **kwargs)
    if entra:
        enable_entra_sign_in(engine)
    if not kwargs.get("pool_pre_ping", False):
        ping_when_idle(engine)
    return engine


def ping_when_idle(engine: AsyncEngine, idle_seconds: float = IDLE_SECONDS) -> None:
    """Ping ``engine``'s pooled connections on checkout after ``idle_seconds`` of idleness.

    Use instead of ``pool_pre_ping=True`` (not with it). A freshly opened connection is not
    pinged.

    Raises (from the checkout, inside ``engine.connect()`` / ``engine.begin()``):
        sqlalchemy.exc.OperationalError / DBAPIError: no live connection could be opened.
    """
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_LAST_CHECKIN] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(
        dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        last = record.info.get(_LAST_CHECKIN)
        if last is None or time.monotonic() - last < idle_seconds:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(f"idle connection failed its ping: {exc}") from exc
        if not alive:
            raise DisconnectionError("idle connection failed its ping")
