"""The relay publishing stored rows, and publishing while Service Bus stops answering.

* The relay builds each message from the stored JSON body without validating the
  envelope again: a row it cannot read ends up ``failed`` (never retried, never blocking
  the rows claimed with it), and the messages it builds look exactly like the fast path's.
* Sends queued behind a send that fails fail with it, with the same error, and their rows
  go back to the relay, which publishes everything once Service Bus answers again.

Service Bus "stops answering" by freezing the emulator process (``SIGSTOP``): connections
stay open and nothing is answered, so a send can only end by its operation timeout.
"""

import asyncio
import dataclasses
import inspect
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient

from common.messaging import TRACE_KEYS
from contracts import (
    AUDIT_EVENT_TYPE,
    AuditEvent,
    EventEnvelope,
    NotificationEvent,
    new_envelope,
)
from producer import ProducerSettings, open_event_publisher
from producer.outbox.database import create_outbox_engine, run_migrations
from producer.outbox.models import OutboxStatus
from producer.outbox.records import NewEvent
from producer.outbox.repository import OutboxRepository
from producer.publisher import EventPublisher
from producer.transport import ServiceBusTransport
from tests.conftest import AUDIT_QUEUE, NOTIFICATIONS_QUEUE
from tests.producer.conftest import (
    AUDIT,
    NOTIFICATION,
    outbox_row,
    receive,
    unreachable_connection_string,
)
from tests.producer.faults import Emulator


def audit(label: str, correlation_id: str | None = None) -> EventEnvelope:
    event = AuditEvent.model_validate({**AUDIT, "resource": {"type": "invoice", "id": label}})
    return new_envelope(
        event, source="/tests", subject=f"invoice/{label}", correlationid=correlation_id
    )


def notification(correlation_id: str) -> EventEnvelope:
    event = NotificationEvent.model_validate(NOTIFICATION)
    return new_envelope(event, source="/tests", correlationid=correlation_id)


async def wait_for(check: Callable[[], Any], within: float = 30) -> bool:
    """Poll the coroutine function ``check`` until it returns true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.1)
    return False


async def statuses(publisher: EventPublisher, ids: list[str]) -> dict[str, OutboxStatus]:
    return {i: (await publisher.get(i)).status for i in ids}


@pytest.fixture
async def repository(database_url: str) -> AsyncIterator[OutboxRepository]:
    """The migrated outbox the producer under test will use (rows can be put in first)."""
    engine = create_outbox_engine(database_url)
    await run_migrations(engine)
    try:
        yield OutboxRepository(engine, lease=timedelta(seconds=30))
    finally:
        await engine.dispose()


async def put(repository: OutboxRepository, rows: list[NewEvent]) -> None:
    """Commit rows as a crashed or unreachable producer leaves them: for the relay."""
    async with repository.engine.begin() as connection:
        await repository.insert(connection, rows, claim=None, now=datetime.now(UTC))


# -- unreadable rows ---------------------------------------------------------------------

CORRUPT_BODIES: dict[str, Callable[[str], str]] = {
    "not-json": lambda _: '{"id": "truncated',
    "without-id": lambda _: json.dumps({"type": AUDIT_EVENT_TYPE, "schemaversion": "1"}),
    "without-type": lambda i: json.dumps({"id": i, "schemaversion": "1"}),
    "without-schemaversion": lambda i: json.dumps({"id": i, "type": AUDIT_EVENT_TYPE}),
    "json-null": lambda _: "null",
    "json-array": lambda i: json.dumps([i, AUDIT_EVENT_TYPE]),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPT_BODIES))
async def test_an_unreadable_row_fails_alone_and_the_relay_keeps_publishing(
    corruption: str,
    database_url: str,
    repository: OutboxRepository,
    connection_string: str,
    make_settings: Callable[..., ProducerSettings],
) -> None:
    good = [outbox_row(audit(f"R-{n}")) for n in range(4)]
    corrupt_id = f"corrupt-{uuid.uuid4().hex[:8]}"
    corrupt = NewEvent(
        id=corrupt_id,
        event_type=AUDIT_EVENT_TYPE,
        queue=AUDIT_QUEUE,
        source="/tests",
        body=CORRUPT_BODIES[corruption](corrupt_id),
    )
    # One commit, so the relay claims them together (oldest first: the corrupt row in
    # the middle).
    await put(repository, [*good[:2], corrupt, *good[2:]])
    settings = make_settings(connection_string, database_url=database_url)
    async with open_event_publisher(settings) as publisher:
        good_ids = [r.id for r in good]
        messages = await asyncio.to_thread(receive, connection_string, AUDIT_QUEUE, 4)
        assert sorted(str(m.message_id) for m in messages) == sorted(good_ids)

        async def settled() -> bool:
            found = await statuses(publisher, [*good_ids, corrupt_id])
            return found[corrupt_id] is OutboxStatus.FAILED and set(found[i] for i in good_ids) == {
                OutboxStatus.PUBLISHED
            }

        assert await wait_for(settled), await statuses(publisher, [*good_ids, corrupt_id])
        record = await publisher.get(corrupt_id)
        assert "stored envelope cannot be sent" in (record.last_error or "")
        assert record.finished_at is not None
        assert publisher.stats.unpublishable == 1
        assert publisher.stats.publish_failed == 0
        # The relay is still running: a row left to it later is published too.
        later = outbox_row(audit("R-later"))
        await put(repository, [later])
        publisher.relay.notify()
        [message] = await asyncio.to_thread(receive, connection_string, AUDIT_QUEUE, 1)
        assert message.message_id == later.id
        assert (await publisher.get(corrupt_id)).status is OutboxStatus.FAILED
        assert publisher.stats.published == 5
    # Nothing else (the corrupt row in particular) was ever sent.
    assert await asyncio.to_thread(receive, connection_string, AUDIT_QUEUE, 1, timeout=2) == []


# -- the relay's messages look like the fast path's --------------------------------------


def _properties(message: ServiceBusReceivedMessage) -> dict[bytes, Any]:
    """Application properties, except per-event trace context (its values differ)."""
    return {
        k if isinstance(k, bytes) else k.encode(): v
        for k, v in (message.application_properties or {}).items()
        if (k if isinstance(k, bytes) else k.encode()) not in set(TRACE_KEYS.values())
    }


def _trace_keys(message: ServiceBusReceivedMessage) -> set[bytes]:
    keys = {k if isinstance(k, bytes) else k.encode() for k in message.application_properties or {}}
    return keys & set(TRACE_KEYS.values())


def _attributes(message: ServiceBusReceivedMessage) -> dict[str, Any]:
    return {
        "subject": message.subject,
        "content_type": message.content_type,
        "application_properties": _properties(message),
        "trace_keys": _trace_keys(message),
        "scheduled": message.scheduled_enqueue_time_utc,
    }


async def test_relay_messages_carry_the_same_attributes_as_the_fast_path(
    tmp_path: Path, connection_string: str, make_settings: Callable[..., ProducerSettings]
) -> None:
    relayed = {AUDIT_QUEUE: audit("A-relay", "corr-relay"), NOTIFICATIONS_QUEUE: notification("n")}
    fast = {AUDIT_QUEUE: audit("A-fast", "corr-fast"), NOTIFICATIONS_QUEUE: notification("m")}
    # Accepted while Service Bus is unreachable: left in the outbox for the relay.
    down = make_settings(
        unreachable_connection_string(), servicebus_operation_timeout=2, shutdown_grace=1
    )
    async with open_event_publisher(down) as publisher:
        for envelope in relayed.values():
            await publisher.publish(envelope)
    up = make_settings(connection_string)
    async with open_event_publisher(up) as publisher:
        for envelope in fast.values():
            await publisher.publish(envelope)  # published from memory right after commit
        for queue in (AUDIT_QUEUE, NOTIFICATIONS_QUEUE):
            messages = await asyncio.to_thread(receive, connection_string, queue, 2)
            by_id = {str(m.message_id): m for m in messages}
            assert set(by_id) == {relayed[queue].id, fast[queue].id}
            from_relay, from_fast = by_id[relayed[queue].id], by_id[fast[queue].id]
            assert _attributes(from_relay) == _attributes(from_fast)
            assert from_relay.correlation_id == relayed[queue].correlationid
            assert from_fast.correlation_id == fast[queue].correlationid
            assert _properties(from_relay)[b"eventType"] == relayed[queue].type.encode()
            for envelope, message in ((relayed[queue], from_relay), (fast[queue], from_fast)):
                body = json.loads(b"".join(message.body))
                assert body == json.loads(envelope.model_dump_json(exclude_none=True))
        relay_record = await publisher.get(relayed[AUDIT_QUEUE].id)
        assert relay_record.attempts >= 2  # the failed fast path, then the relay


async def test_a_row_due_within_the_schedule_threshold_keeps_its_scheduled_enqueue_time(
    database_url: str,
    repository: OutboxRepository,
    connection_string: str,
    make_settings: Callable[..., ProducerSettings],
) -> None:
    # Too close to be scheduled through the management link, so the relay sends it at once;
    # the scheduled enqueue time still keeps it from being visible before deliver_at.
    deliver_at = (datetime.now(UTC) + timedelta(milliseconds=500)).replace(microsecond=0)
    row = outbox_row(notification("soon"), NOTIFICATIONS_QUEUE)
    await put(repository, [dataclasses.replace(row, deliver_at=deliver_at)])
    settings = make_settings(connection_string, database_url=database_url)
    async with open_event_publisher(settings) as publisher:

        async def published() -> bool:
            return (await publisher.get(row.id)).status is OutboxStatus.PUBLISHED

        assert await wait_for(published)
    [message] = await asyncio.to_thread(receive, connection_string, NOTIFICATIONS_QUEUE, 1)
    assert message.message_id == row.id
    assert message.scheduled_enqueue_time_utc == deliver_at


# -- Service Bus stops answering ---------------------------------------------------------


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    """A real emulator process (``python -m emulator``) that a test may freeze."""
    emulator = Emulator(tmp_path)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


def one_sender_per_queue() -> dict[str, Any]:
    """Transport options that give each queue a single sender, if that is configurable.

    Sends queue up only while every sender of the queue is busy; with one sender, every
    send submitted while the first is on the wire is queued (not in flight on another
    link), which is the case the fail-fast behaviour is about.
    """
    parameters = inspect.signature(ServiceBusTransport).parameters
    return {"senders_per_queue": 1} if "senders_per_queue" in parameters else {}


@pytest.mark.e2e
async def test_sends_queued_behind_a_failing_send_fail_with_its_error(
    emulator: Emulator,
) -> None:
    def message(label: str) -> ServiceBusMessage:
        return ServiceBusMessage(label, message_id=f"{label}-{uuid.uuid4().hex[:8]}")

    async with (
        ServiceBusClient.from_connection_string(emulator.connection_string) as client,
        ServiceBusTransport(client, operation_timeout=4, **one_sender_per_queue()) as transport,
    ):
        assert await transport.send(AUDIT_QUEUE, [message("warm-up")]) == set()
        emulator.freeze()
        try:
            first = asyncio.create_task(transport.send(AUDIT_QUEUE, [message("first")]))
            # Pacing, not a measurement: the first send is on the wire (and can only end
            # by its timeout) before the others queue up behind it.
            await asyncio.sleep(0.5)
            queued = [
                asyncio.create_task(transport.send(AUDIT_QUEUE, [message(f"queued-{n}")]))
                for n in range(5)
            ]
            outcomes = await asyncio.gather(first, *queued, return_exceptions=True)
        finally:
            emulator.resume()

        first_error = outcomes[0]
        assert isinstance(first_error, Exception), outcomes
        assert transport.health.reachable is False
        # Each queued send failed with the first send's error, not after a timeout of
        # its own against a Service Bus that had just failed.
        assert all(outcome is first_error for outcome in outcomes[1:]), outcomes
        # Sending works again once Service Bus answers (a new sender is opened).
        assert await transport.send(AUDIT_QUEUE, [message("after")]) == set()
        assert transport.health.reachable is True


@pytest.mark.e2e
async def test_publishes_failed_while_service_bus_is_frozen_are_relayed_once_it_answers(
    emulator: Emulator, make_settings: Callable[..., ProducerSettings]
) -> None:
    settings = make_settings(
        emulator.connection_string,
        servicebus_operation_timeout=3,
        relay_backoff_initial=0.2,
        relay_backoff_max=1,
    )
    async with open_event_publisher(settings) as publisher:
        before = await publisher.publish(audit("F-before"))

        async def before_published() -> bool:
            return (await publisher.get(before.id)).status is OutboxStatus.PUBLISHED

        async def send_failed() -> bool:
            return publisher.transport.health.reachable is False

        assert await wait_for(before_published)
        emulator.freeze()
        try:
            first = await publisher.publish(audit("F-first"))  # its send hangs, then fails
            await asyncio.sleep(0.5)  # pacing: the others' sends queue behind it
            accepted = [first.id]
            for wave in range(3):
                done = await asyncio.gather(
                    *(publisher.publish(audit(f"F-{wave}-{n}")) for n in range(5))
                )
                accepted.extend(a.id for a in done)
            assert await wait_for(send_failed)
        finally:
            emulator.resume()

        async def all_published() -> bool:
            found = await statuses(publisher, accepted)
            return set(found.values()) == {OutboxStatus.PUBLISHED}

        assert await wait_for(all_published, within=60), await statuses(publisher, accepted)
        messages = await asyncio.to_thread(
            receive, emulator.connection_string, AUDIT_QUEUE, len(accepted) + 1
        )
        extra = await asyncio.to_thread(
            receive, emulator.connection_string, AUDIT_QUEUE, 1, timeout=2
        )
        ids = [str(m.message_id) for m in messages + extra]
        assert sorted(ids) == sorted([before.id, *accepted])  # all of them, each once
        # The first send failed: its row went back to the outbox and the relay sent it.
        assert (await publisher.get(first.id)).attempts >= 2
        assert publisher.stats.publish_failed >= 1
        assert (await publisher.repository.backlog()).count == 0
