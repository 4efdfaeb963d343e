"""Query plans of the relay's outbox statements while a backlog waits (no statistics yet).

Without fresh statistics both databases believe few rows are ``accepted``; the relay's
statements must still find their rows by key or walk the pending index in order, not
visit (and sort) the whole backlog per batch.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from producer.outbox.database import create_outbox_engine, run_migrations
from producer.outbox.records import NewEvent
from producer.outbox.repository import OutboxRepository
from tests.conftest import AUDIT_QUEUE

BACKLOG = 5000
BODY = '{"id": "x", "padding": "' + "x" * 600 + '"}'
"""About the size of a real audit envelope (table size weighs in the planner's choice)."""


def _rows(count: int) -> list[NewEvent]:
    return [
        NewEvent(
            id=f"plan-{n:05d}",
            event_type="com.example.audit.v1",
            queue=AUDIT_QUEUE,
            source="/tests",
            body=BODY,
        )
        for n in range(count)
    ]


async def _plans(engine: AsyncEngine, statements: list[tuple[str, Any]]) -> list[str]:
    """Replay the captured statements in one transaction, each ``UPDATE`` as ``EXPLAIN``."""
    sqlite = engine.dialect.name == "sqlite"
    plans = []
    async with engine.connect() as connection:
        transaction = await connection.begin()
        for statement, parameters in statements:
            if not statement.lstrip().upper().startswith("UPDATE"):
                await connection.exec_driver_sql(statement, parameters)
                continue
            prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            result = await connection.exec_driver_sql(prefix + statement, parameters)
            column = 3 if sqlite else 0
            plans.append("\n".join(str(row[column]) for row in result))
        await transaction.rollback()
    return plans


async def test_claims_and_marks_do_not_scan_the_backlog(database_url: str) -> None:
    engine = create_outbox_engine(database_url)
    try:
        await run_migrations(engine)
        repository = OutboxRepository(engine, lease=timedelta(seconds=30))
        async with engine.begin() as connection:
            await repository.insert(connection, _rows(BACKLOG), claim=None, now=datetime.now(UTC))
        captured: list[tuple[str, Any]] = []

        def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            captured.append((statement, parameters))

        event.listen(engine.sync_engine, "before_cursor_execute", capture)
        claimed = await repository.claim_pending("relay/1", limit=100, now=datetime.now(UTC))
        await repository.mark_published([e.id for e in claimed[:50]], now=datetime.now(UTC))
        await repository.release([e.id for e in claimed[50:]], "relay/1", error=None)
        await repository.claim_own("relay/2", now=datetime.now(UTC))
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
        statements = [c for c in captured if not c[0].upper().startswith(("BEGIN", "COMMIT"))]

        claim, mark, release, own = await _plans(engine, statements)

        if engine.dialect.name == "sqlite":
            assert "USING INDEX ix_producer_outbox_pending" in claim, claim
            assert "TEMP B-TREE" not in claim, claim
            for plan in (claim, mark, release, own):
                assert "ix_producer_outbox_finished" not in plan, plan
            for plan in (claim, mark):
                assert "sqlite_autoindex_producer_outbox_1 (id=?)" in plan, plan
            assert "ix_producer_outbox_lease_owner" in own, own
        else:
            assert "Sort" not in claim, claim
            assert "Index Scan using ix_producer_outbox_pending" in claim, claim
            for plan in (claim, mark):
                assert "producer_outbox_pkey" in plan, plan
            assert "ix_producer_outbox_lease_owner" in own, own
            for plan in (mark, release, own):
                assert "ix_producer_outbox_pending" not in plan, plan
    finally:
        await engine.dispose()
