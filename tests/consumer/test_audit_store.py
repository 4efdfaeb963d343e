"""Audit store: hash chain, idempotency, concurrency, tamper detection (SQLite and PostgreSQL)."""

import asyncio

from sqlalchemy import text

from consumer.stores.audit import AuditQuery, AuditStore
from consumer.stores.database import Database
from tests.consumer.conftest import audit_envelope


async def test_concurrent_appends_form_one_valid_chain(database: Database) -> None:
    store = AuditStore(database)
    envelopes = [audit_envelope(actor=f"u-{n % 3}") for n in range(40)]

    results = await asyncio.gather(*(store.append(e) for e in envelopes + envelopes[:10]))

    assert sum(results) == 40  # the 10 repeats were recognised as duplicates
    assert await store.count() == 40
    report = await store.verify()
    assert report.ok, report
    assert report.checked == 40
    assert report.head_seq == 40


async def test_two_stores_on_one_database_chain_correctly(database: Database) -> None:
    """Two engines stand in for two replicas appending to the same chain."""
    other = Database(database.url)
    try:
        first, second = AuditStore(database), AuditStore(other)
        await asyncio.gather(
            *(first.append(audit_envelope()) for _ in range(15)),
            *(second.append(audit_envelope()) for _ in range(15)),
        )
    finally:
        await other.close()
    assert (await AuditStore(database).verify()).ok
    assert await AuditStore(database).count() == 30


async def test_verify_detects_an_edited_row(database: Database) -> None:
    store = AuditStore(database)
    envelopes = [audit_envelope() for _ in range(5)]
    for envelope in envelopes:
        assert await store.append(envelope)
    async with database.engine.begin() as connection:
        await connection.execute(
            text("UPDATE audit_events SET action = 'user.logout' WHERE seq = 3")
        )

    report = await store.verify()

    assert not report.ok
    assert report.first_bad_seq == 3
    assert report.first_bad_event_id == envelopes[2].id
    assert "edited" in (report.problem or "")
    assert report.checked == 2


async def test_verify_detects_a_deleted_row(database: Database) -> None:
    store = AuditStore(database)
    for _ in range(4):
        await store.append(audit_envelope())
    async with database.engine.begin() as connection:
        await connection.execute(text("DELETE FROM audit_events WHERE seq = 2"))

    report = await store.verify()

    assert not report.ok
    assert report.first_bad_seq == 3
    assert "missing" in (report.problem or "")


async def test_verify_detects_a_truncated_tail(database: Database) -> None:
    store = AuditStore(database)
    for _ in range(3):
        await store.append(audit_envelope())
    async with database.engine.begin() as connection:
        await connection.execute(text("DELETE FROM audit_events WHERE seq = 3"))

    report = await store.verify()

    assert not report.ok
    assert "chain head" in (report.problem or "")


async def test_query_filters(database: Database) -> None:
    store = AuditStore(database)
    await store.append(audit_envelope("invoice.approve", actor="alice"))
    await store.append(audit_envelope("invoice.void", actor="bob"))
    await store.append(audit_envelope("user.login", actor="alice"))

    by_actor = await store.query(AuditQuery(actor="alice"))
    by_prefix = await store.query(AuditQuery(action="invoice.*"))
    by_resource = await store.query(AuditQuery(resource="session:s-1", limit=2))

    assert [r.action for r in by_actor] == ["user.login", "invoice.approve"]  # newest first
    assert {r.actor_id for r in by_prefix} == {"alice", "bob"}
    assert len(by_resource) == 2
