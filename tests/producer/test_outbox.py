"""The outbox on SQLite and PostgreSQL: migrations, claims, leases, pruning, the relay."""

import asyncio
import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import AuditEvent, new_envelope
from producer import ProducerSettings, create_app, open_event_publisher
from producer.errors import DuplicateEventError
from producer.outbox.database import create_outbox_engine, pending_migrations, run_migrations
from producer.outbox.models import OutboxStatus, metadata, outbox
from producer.outbox.records import NewEvent
from producer.outbox.repository import OutboxRepository
from tests.conftest import AUDIT_QUEUE, NOTIFICATIONS_QUEUE
from tests.producer.conftest import (
    AUDIT,
    NOTIFICATION,
    Caller,
    outbox_row,
    receive,
    unreachable_connection_string,
    wait_until,
)
from tests.schema_support import schema_differences

LEASE = timedelta(seconds=30)


def now() -> datetime:
    return datetime.now(UTC)


def audit_row(number: int) -> NewEvent:
    envelope = new_envelope(
        AuditEvent.model_validate({**AUDIT, "resource": {"type": "invoice", "id": f"I-{number}"}}),
        source="/tests",
    )
    return outbox_row(envelope)


async def migrated(url: str) -> AsyncEngine:
    engine = create_outbox_engine(url)
    await run_migrations(engine)
    return engine


async def insert(
    repository: OutboxRepository, rows: list[NewEvent], *, claim: str | None, at: datetime
) -> None:
    async with repository.engine.begin() as connection:
        await repository.insert(connection, rows, claim=claim, now=at)


async def statuses(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(outbox.c.id, outbox.c.status))
        return {row.id: row.status for row in rows}


async def test_migrations_are_idempotent_with_their_own_version_table(database_url: str) -> None:
    engine = await migrated(database_url)
    try:
        await run_migrations(engine)  # again: nothing to do
        await asyncio.gather(run_migrations(engine), run_migrations(engine))

        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert {"producer_outbox", "producer_idempotency_keys", "producer_alembic_version"} <= (
            tables
        )
        assert "alembic_version" not in tables
        assert await pending_migrations(engine) is False
        async with engine.connect() as connection:
            assert await connection.run_sync(schema_differences, metadata) == []
    finally:
        await engine.dispose()


async def test_concurrent_claims_never_overlap(database_url: str) -> None:
    engine = await migrated(database_url)
    repository = OutboxRepository(engine, lease=LEASE)
    rows = [audit_row(n) for n in range(60)]
    await insert(repository, rows, claim=None, at=now())
    try:
        claims = await asyncio.gather(
            *(repository.claim_pending(f"replica-{n}/c", limit=20, now=now()) for n in range(5))
        )

        claimed = [event.id for batch in claims for event in batch]
        assert len(claimed) == len(set(claimed)) == 60
        assert await repository.claim_pending("late/c", limit=20, now=now()) == []
    finally:
        await engine.dispose()


async def test_a_dead_claims_rows_are_taken_over_after_the_lease(database_url: str) -> None:
    engine = await migrated(database_url)
    repository = OutboxRepository(engine, lease=LEASE)
    crashed = [audit_row(n) for n in range(3)]
    alive = [audit_row(n) for n in range(3, 5)]
    await insert(repository, crashed, claim="dead/1", at=now() - LEASE - timedelta(seconds=1))
    await insert(repository, alive, claim="alive/1", at=now())
    try:
        taken = await repository.claim_pending("relay/1", limit=10, now=now())

        assert {e.id for e in taken} == {r.id for r in crashed}
        assert await repository.claim_own("dead/1", now=now()) == []
        assert {e.id for e in await repository.claim_own("alive/1", now=now())} == {
            r.id for r in alive
        }
        backlog = await repository.backlog()
        assert backlog.count == 5
    finally:
        await engine.dispose()


async def test_operators_read_an_events_trace_and_every_callers_use_of_a_key(
    database_url: str,
) -> None:
    """The console's two reads, through the repository's public queries only."""
    engine = await migrated(database_url)
    repository = OutboxRepository(engine, lease=LEASE)
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    traced = dataclasses.replace(
        audit_row(1), trace_context=json.dumps({"traceparent": traceparent})
    )
    untraced = audit_row(2)
    await insert(repository, [traced, untraced], claim=None, at=now())
    try:
        async with engine.begin() as connection:
            for principal, ids, at in (
                ("/clients/a", [traced.id], now() - timedelta(minutes=1)),
                ("/clients/b", [untraced.id], now()),
            ):
                await repository.insert_idempotency_key(
                    connection, principal, "order-7", fingerprint="f", event_ids=ids, now=at
                )

        record = await repository.get(traced.id)
        assert record is not None
        assert record.traceparent == traceparent
        assert record.trace_id == "0af7651916cd43dd8448eb211c80319c"
        plain = await repository.get(untraced.id)
        assert plain is not None
        assert plain.traceparent is None
        assert plain.trace_id is None

        uses = await repository.idempotency_key_uses("order-7")
        assert [(u.principal, u.event_ids) for u in uses] == [
            ("/clients/b", [untraced.id]),
            ("/clients/a", [traced.id]),
        ]
        assert await repository.idempotency_key_uses("unknown") == []
    finally:
        await engine.dispose()


async def test_pruning_keeps_what_is_pending_or_still_scheduled(database_url: str) -> None:
    engine = await migrated(database_url)
    repository = OutboxRepository(engine, lease=LEASE)
    old = now() - timedelta(days=10)
    published, pending, scheduled_later, scheduled_past, fresh = (audit_row(n) for n in range(5))
    await insert(
        repository,
        [published, pending, scheduled_later, scheduled_past, fresh],
        claim=None,
        at=old,
    )
    await repository.mark_published([published.id], now=old)
    await repository.mark_published([fresh.id], now=now())
    await repository.mark_scheduled({scheduled_later.id: 7}, now=old)
    await repository.mark_scheduled({scheduled_past.id: 8}, now=old)
    async with engine.begin() as connection:
        for row_id, at in (
            (scheduled_later.id, now() + timedelta(days=1)),
            (scheduled_past.id, old),
        ):
            await connection.execute(
                outbox.update().where(outbox.c.id == row_id).values(deliver_at=at)
            )
        await repository.insert_idempotency_key(
            connection, "/p", "old", fingerprint="f", event_ids=["x"], now=old
        )
        await repository.insert_idempotency_key(
            connection, "/p", "new", fingerprint="f", event_ids=["y"], now=now()
        )
    try:
        deleted = await repository.prune(
            finished_before=now() - timedelta(days=7), keys_before=now() - timedelta(days=1)
        )

        assert deleted == (2, 1)
        assert set(await statuses(engine)) == {pending.id, scheduled_later.id, fresh.id}
    finally:
        await engine.dispose()


async def test_the_relay_publishes_rows_a_crashed_process_left(
    database_url: str,
    connection_string: str,
    make_settings: Callable[..., ProducerSettings],
) -> None:
    settings = make_settings(connection_string, database_url=database_url, relay_lease=5)
    engine = await migrated(database_url)
    repository = OutboxRepository(engine, lease=timedelta(seconds=5))
    unclaimed = [audit_row(n) for n in range(5)]
    expired = [audit_row(n) for n in range(5, 8)]
    await insert(repository, unclaimed, claim=None, at=now())
    await insert(repository, expired, claim="crashed/1", at=now() - timedelta(seconds=6))
    try:
        async with open_event_publisher(settings) as publisher:
            messages = await asyncio.to_thread(receive, connection_string, AUDIT_QUEUE, 8)
            assert sorted(str(m.message_id) for m in messages) == sorted(
                r.id for r in unclaimed + expired
            )
            for _ in range(100):
                if set((await statuses(engine)).values()) == {OutboxStatus.PUBLISHED.value}:
                    break
                await asyncio.sleep(0.1)
            assert set((await statuses(engine)).values()) == {OutboxStatus.PUBLISHED.value}
            assert publisher.stats.published == 8
    finally:
        await engine.dispose()


async def test_a_reused_envelope_id_is_refused(
    shared_connection_string: str, make_settings: Callable[..., ProducerSettings]
) -> None:
    settings = make_settings(shared_connection_string)
    envelope = new_envelope(AuditEvent.model_validate(AUDIT), source="/tests")
    async with open_event_publisher(settings) as publisher:
        first = await publisher.publish(envelope)

        with pytest.raises(DuplicateEventError):
            await publisher.publish(envelope)
        assert first.id == envelope.id


def test_while_service_bus_is_down_events_are_accepted_and_kept(
    connection_string: str,
    make_settings: Callable[..., ProducerSettings],
    caller: Caller,
) -> None:
    down = make_settings(unreachable_connection_string(), servicebus_operation_timeout=3)
    with TestClient(create_app(down)) as client:
        ids = [
            client.post("/v1/audit-events", json=AUDIT, headers=caller.headers).json()["id"]
            for _ in range(6)
        ]
        cancelled = client.post("/v1/notifications", json=NOTIFICATION, headers=caller.headers)
        kept = client.post("/v1/notifications", json=NOTIFICATION, headers=caller.headers)
        assert cancelled.status_code == kept.status_code == 202

        def unready() -> bool:
            body = client.get("/readyz").json()
            return body["checks"]["servicebus"]["reachable"] is False

        assert wait_until(unready, timeout=30)
        readiness = client.get("/readyz")
        assert readiness.status_code == 503
        assert readiness.json()["checks"]["outbox"]["backlog"] == 8
        assert readiness.json()["checks"]["database"]["ok"] is True
        # The relay may hold the row's lease for a failing send attempt right now; the API
        # then answers 409 cancellation-pending and a client retries, as this one does.
        cancel_url = f"/v1/notifications/{cancelled.json()['id']}"
        answers: list[Any] = []

        def cancel() -> bool:
            answers.append(client.delete(cancel_url, headers=caller.headers))
            return bool(answers[-1].status_code != 409)

        assert wait_until(cancel, timeout=60)
        assert answers[-1].status_code == 200, answers[-1].text
        assert answers[-1].json()["status"] == "cancelled"
        status = client.get(f"/v1/events/{ids[0]}", headers=caller.headers).json()
        assert status["status"] == "accepted"
        assert status["attempts"] >= 1
    # Shut down: the rows stay. A producer that can reach Service Bus publishes them.
    with TestClient(create_app(make_settings(connection_string))) as client:
        audits = receive(connection_string, AUDIT_QUEUE, 6)
        notifications = receive(connection_string, NOTIFICATIONS_QUEUE, 2, timeout=2)
        assert sorted(str(m.message_id) for m in audits) == sorted(ids)
        assert [str(m.message_id) for m in notifications] == [kept.json()["id"]]
        assert wait_until(lambda: client.get("/readyz").json()["checks"]["outbox"]["backlog"] == 0)
        body = json.loads(b"".join(audits[0].body))
        assert body["source"] == caller.source
