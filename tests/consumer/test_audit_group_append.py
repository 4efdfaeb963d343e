"""Grouped audit appends: concurrent appends commit together, each keeps its own outcome.

Appends that run at the same time are written in one transaction (the chain head read
and written once per group). What must still hold: the chain verifies, every event is
recorded exactly once (also when delivered twice within one group), and an event that
cannot be written fails alone while the others of its group are recorded.
"""

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError

from consumer.stores.audit import GROUP_MAX, AuditQuery, AuditStore
from consumer.stores.database import Database
from consumer.stores.inbox import Inbox
from contracts import AuditEnvelope
from tests.consumer.conftest import audit_envelope


def unwritable(envelope: AuditEnvelope) -> AuditEnvelope:
    """The event with a field the store's NOT NULL constraint refuses (bypasses pydantic)."""
    data = envelope.data.model_copy(update={"action": None})
    return envelope.model_copy(update={"data": data})


async def test_a_hundred_concurrent_appends_form_one_intact_chain(database: Database) -> None:
    store = AuditStore(database)
    envelopes = [audit_envelope(f"user.action{n % 7}", actor=f"u-{n % 5}") for n in range(100)]

    results = await asyncio.gather(*(store.append(e) for e in envelopes))

    assert results == [True] * 100
    assert await store.count() == 100
    report = await store.verify()
    assert report.ok, report
    assert (report.checked, report.head_seq) == (100, 100)
    for envelope in envelopes:
        assert await store.contains(envelope.id)
    # Chain order follows arrival order within the group.
    records = await store.query(AuditQuery(limit=100))
    assert [r.event_id for r in reversed(records)] == [e.id for e in envelopes]


async def test_more_concurrent_appends_than_one_group_holds_chain_across_groups(
    database: Database,
) -> None:
    store = AuditStore(database)
    first = [audit_envelope() for _ in range(5)]
    for envelope in first:  # a chain that already has a head
        assert await store.append(envelope)
    envelopes = [audit_envelope() for _ in range(GROUP_MAX + 30)]

    results = await asyncio.gather(*(store.append(e) for e in envelopes))

    assert all(results)
    report = await store.verify()
    assert report.ok, report
    assert report.head_seq == report.checked == len(first) + len(envelopes)


async def test_the_same_event_twice_in_one_group_is_recorded_once(database: Database) -> None:
    store = AuditStore(database)
    earlier = audit_envelope("user.logout")
    assert await store.append(earlier)
    repeated = audit_envelope("invoice.approve")
    others = [audit_envelope() for _ in range(20)]

    results = await asyncio.gather(
        *(store.append(e) for e in others[:10]),
        store.append(repeated),
        store.append(earlier),  # recorded before this group
        store.append(repeated),
        store.append(repeated),
        *(store.append(e) for e in others[10:]),
    )

    assert results[:10] == [True] * 10
    assert results[10:14] == [True, False, False, False]  # the first copy wins
    assert results[14:] == [True] * 10
    assert await store.count() == 1 + 1 + 20
    report = await store.verify()
    assert report.ok, report
    assert len(await store.query(AuditQuery(action="invoice.approve"))) == 1


async def test_an_event_that_cannot_be_written_fails_alone(database: Database) -> None:
    store = AuditStore(database)
    good = [audit_envelope() for _ in range(12)]
    bad = unwritable(audit_envelope())

    results = await asyncio.gather(
        *(store.append(e) for e in good[:6]),
        store.append(bad),
        *(store.append(e) for e in good[6:]),
        return_exceptions=True,
    )

    assert isinstance(results[6], IntegrityError), results[6]
    assert results[:6] + results[7:] == [True] * 12
    assert not await store.contains(bad.id)
    assert await store.count() == 12
    report = await store.verify()
    assert report.ok, report
    # Its inbox row was rolled back with it: a corrected redelivery is recorded.
    assert await store.append(bad.model_copy(update={"data": audit_envelope().data}))
    assert await store.contains(bad.id)
    assert (await store.verify()).ok


async def test_an_event_already_chained_but_pruned_from_the_inbox_is_not_chained_again(
    database: Database,
) -> None:
    store = AuditStore(database)
    old = audit_envelope("user.login")
    assert await store.append(old)
    # The inbox keeps ids only for the retention window; the chain keeps them forever.
    await Inbox(database).prune(datetime.now(UTC) + timedelta(seconds=1))
    others = [audit_envelope() for _ in range(8)]

    results = await asyncio.gather(
        *(store.append(e) for e in others[:4]),
        store.append(old),  # redelivered long after: unique event id in the chain
        *(store.append(e) for e in others[4:]),
    )

    assert results == [True] * 4 + [False] + [True] * 4
    assert await store.count() == 1 + 8
    report = await store.verify()
    assert report.ok, report
