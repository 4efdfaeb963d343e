"""The worker runtime against the emulator: settlement, retry ladder, locks, duplicates."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from consumer.errors import PermanentError, TransientError
from consumer.handlers.audit import AuditHandler
from consumer.retry import RetryPolicy
from consumer.runner import queue_configs
from consumer.runtime.processor import receivers_for
from consumer.runtime.routing import Route
from consumer.settings import ConsumerSettings
from consumer.stores.audit import AuditStore
from consumer.stores.database import Database
from contracts import AUDIT_EVENT_TYPE, NOTIFICATION_EVENT_TYPE, EventEnvelope
from contracts.servicebus import to_servicebus_message
from emulator.testing import run_emulator
from tests.conftest import AUDIT_QUEUE, NOTIFICATIONS_QUEUE, queues_config
from tests.consumer.conftest import (
    FAST,
    StartWorker,
    audit_envelope,
    dead_letters,
    eventually,
    notification_envelope,
    send,
)


def props(message: Any) -> dict[str, Any]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in (message.application_properties or {}).items()
    }


@pytest.mark.parametrize(
    ("concurrency", "receivers", "count"),
    [(4, 2, 20), (64, 4, 300)],
    ids=["default-receivers", "receivers-follow-concurrency"],
)
async def test_events_are_processed_and_completed(
    sb: ServiceBusClient,
    db: Database,
    start_worker: StartWorker,
    concurrency: int,
    receivers: int,
    count: int,
) -> None:
    """Every event is stored once and completed, whichever receiver took it."""
    store = AuditStore(db)
    running = start_worker(
        {AUDIT_EVENT_TYPE: Route("audit", AuditHandler(store), FAST)}, concurrency=concurrency
    )
    assert running.worker.processors[0].config.receiver_count == receivers  # receivers_for
    await send(sb, AUDIT_QUEUE, *(to_servicebus_message(audit_envelope()) for _ in range(count)))

    async def all_stored() -> bool:
        return await store.count() == count and running.stats().completed == count

    await eventually(all_stored)
    await running.shutdown()
    assert running.stats().received == count  # each delivered once: no lock lost, no retry
    assert (await store.verify()).ok
    async with sb.get_queue_receiver(AUDIT_QUEUE) as receiver:
        assert await receiver.receive_messages(max_wait_time=1) == []  # completed


POISON = [
    (b"{not json", "application/json", "InvalidJson", "JSON"),
    (b"plain words", "text/plain", "UnsupportedContentType", "text/plain"),
    (b'{"type": "com.example.nope"}', "application/json", "UnknownEventType", "com.example.nope"),
    (b'{"hello": 1}', "application/json", "SchemaValidationFailed", "type: Field required"),
    (
        json.dumps(
            {"type": AUDIT_EVENT_TYPE, "source": "/x", "data": {"outcome": "maybe"}}
        ).encode(),
        "application/json",
        "SchemaValidationFailed",
        "data",
    ),
    (
        json.dumps({"type": AUDIT_EVENT_TYPE, "schemaversion": "3"}).encode(),
        "application/json",
        "UnsupportedSchemaVersion",
        "3",
    ),
    (
        to_servicebus_message(notification_envelope()).body,
        "application/cloudevents+json",
        "WrongQueue",
        "notification",
    ),
]


@pytest.mark.parametrize(("body", "content_type", "reason", "mentions"), POISON)
async def test_poison_messages_are_dead_lettered_on_first_delivery(
    sb: ServiceBusClient,
    db: Database,
    start_worker: StartWorker,
    body: Any,
    content_type: str,
    reason: str,
    mentions: str,
) -> None:
    running = start_worker({AUDIT_EVENT_TYPE: Route("audit", AuditHandler(AuditStore(db)), FAST)})
    payload = body if isinstance(body, bytes) else b"".join(body)
    await send(
        sb,
        AUDIT_QUEUE,
        ServiceBusMessage(payload, message_id="poison-1", content_type=content_type),
    )

    [dead] = await dead_letters(sb, AUDIT_QUEUE, 1)

    assert dead.message_id == "poison-1"
    assert dead.dead_letter_reason == reason
    assert mentions in (dead.dead_letter_error_description or "")
    assert dead.delivery_count == 0  # first delivery, never retried
    assert running.stats().dead_lettered == {reason: 1}


async def test_event_without_handler_is_dead_lettered(
    sb: ServiceBusClient, start_worker: StartWorker
) -> None:
    start_worker({})
    await send(sb, NOTIFICATIONS_QUEUE, to_servicebus_message(notification_envelope()))
    [dead] = await dead_letters(sb, NOTIFICATIONS_QUEUE, 1)
    assert dead.dead_letter_reason == "UnhandledEventType"


async def test_permanent_error_dead_letters_at_once(
    sb: ServiceBusClient, start_worker: StartWorker
) -> None:
    calls: list[str] = []

    async def reject(envelope: EventEnvelope) -> None:
        calls.append(envelope.id)
        raise PermanentError("RecipientRejected", "mailbox does not exist")

    policy = RetryPolicy(immediate_attempts=3, delayed_attempts=3)
    start_worker({NOTIFICATION_EVENT_TYPE: Route("email", reject, policy)})
    envelope = notification_envelope()
    await send(sb, NOTIFICATIONS_QUEUE, to_servicebus_message(envelope))

    [dead] = await dead_letters(sb, NOTIFICATIONS_QUEUE, 1)

    assert dead.message_id == envelope.id
    assert dead.dead_letter_reason == "RecipientRejected"
    assert dead.dead_letter_error_description == "mailbox does not exist"
    assert calls == [envelope.id]  # no retries of a permanent failure


async def test_retry_ladder_resends_with_backoff_then_dead_letters(
    sb: ServiceBusClient, start_worker: StartWorker
) -> None:
    calls: list[datetime] = []

    async def always_down(envelope: EventEnvelope) -> None:
        calls.append(datetime.now(UTC))
        raise TransientError(f"downstream unavailable #{len(calls)}")

    policy = RetryPolicy(
        immediate_attempts=1,
        immediate_initial_delay=0.01,
        delayed_attempts=2,
        delayed_initial_delay=0.5,
        delayed_jitter=0.1,
        delayed_max_delay=5,
    )
    running = start_worker({AUDIT_EVENT_TYPE: Route("audit", always_down, policy)})
    envelope = audit_envelope()
    await send(sb, AUDIT_QUEUE, to_servicebus_message(envelope))

    [dead] = await dead_letters(sb, AUDIT_QUEUE, 1)

    properties = props(dead)
    assert len(calls) == (1 + 1) * (1 + 2)  # (first try + immediate) x (original + re-sends)
    assert dead.message_id == f"{envelope.id}:retry:2"
    assert dead.dead_letter_reason == "MaxRetriesExceeded"
    assert "downstream unavailable #6" in (dead.dead_letter_error_description or "")
    assert "3 attempt(s)" in (dead.dead_letter_error_description or "")
    assert properties["retryAttempt"] == 2
    assert properties["retryOriginalMessageId"] == envelope.id
    assert "downstream unavailable #4" in properties["retryLastError"]
    first_failed = datetime.fromisoformat(properties["retryFirstFailedAt"])
    assert calls[1] <= first_failed <= calls[2]  # after the first try and its immediate retry
    scheduled = dead.scheduled_enqueue_time_utc or dead.enqueued_time_utc
    assert scheduled is not None
    # Backoff is a lower bound on the schedule: 0.5 s then 1.0 s (plus jitter).
    assert scheduled - first_failed >= timedelta(seconds=1.5)
    assert json.loads(b"".join(dead.body))["id"] == envelope.id  # same event, same body
    stats = running.stats()
    assert stats.retries_scheduled == 2
    assert stats.immediate_retries == 3
    assert stats.dead_lettered == {"MaxRetriesExceeded": 1}


async def test_transient_failure_then_success_has_one_effect(
    sb: ServiceBusClient, db: Database, start_worker: StartWorker
) -> None:
    store = AuditStore(db)
    real = AuditHandler(store)
    calls: list[int] = []

    async def flaky(envelope: EventEnvelope) -> bool:
        calls.append(1)
        if len(calls) <= 2:  # fails the first try and the immediate retry
            raise TimeoutError("slow dependency")
        return await real(envelope)

    policy = RetryPolicy(
        immediate_attempts=1,
        immediate_initial_delay=0.01,
        delayed_attempts=3,
        delayed_initial_delay=0.2,
        delayed_jitter=0.05,
    )
    running = start_worker({AUDIT_EVENT_TYPE: Route("audit", flaky, policy)})
    await send(sb, AUDIT_QUEUE, to_servicebus_message(audit_envelope()))

    async def stored() -> bool:
        return await store.count() == 1 and running.stats().completed == 2

    await eventually(stored)
    assert len(calls) == 3
    assert running.stats().retries_scheduled == 1


async def test_redelivery_ladder_dead_letters_before_max_delivery_count(
    sb: ServiceBusClient, start_worker: StartWorker
) -> None:
    calls: list[int] = []

    async def down(envelope: EventEnvelope) -> None:
        calls.append(1)
        raise ConnectionError("downstream unavailable")

    start_worker({AUDIT_EVENT_TYPE: Route("audit", down, FAST)})  # delayed_attempts=0
    envelope = audit_envelope()
    await send(sb, AUDIT_QUEUE, to_servicebus_message(envelope))

    [dead] = await dead_letters(sb, AUDIT_QUEUE, 1)

    # MaxDeliveryCount 3: abandoned twice, then dead-lettered by us with the error.
    assert dead.message_id == envelope.id
    assert dead.dead_letter_reason == "MaxRetriesExceeded"
    assert "ConnectionError: downstream unavailable" in (dead.dead_letter_error_description or "")
    assert dead.delivery_count == 2
    assert len(calls) == 3


async def test_duplicate_deliveries_cause_one_effect(
    sb: ServiceBusClient, db: Database, start_worker: StartWorker
) -> None:
    store = AuditStore(db)
    running = start_worker({AUDIT_EVENT_TYPE: Route("audit", AuditHandler(store), FAST)})
    envelope = audit_envelope()
    first = to_servicebus_message(envelope)
    second = to_servicebus_message(envelope)
    second.message_id = f"{envelope.id}:resent"  # slips past duplicate detection
    await send(sb, AUDIT_QUEUE, first, second)

    async def both_settled() -> bool:
        return running.stats().completed == 2

    await eventually(both_settled)
    assert await store.count() == 1
    assert running.stats().duplicates == 1


@pytest.fixture
async def short_lock_sb() -> AsyncIterator[ServiceBusClient]:
    with run_emulator(queues_config(LockDuration="PT1S")) as emulator:
        async with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
            yield client


async def test_handler_longer_than_lock_completes_once(short_lock_sb: ServiceBusClient) -> None:
    from consumer.runtime.worker import Worker
    from tests.consumer.conftest import queue_config

    calls: list[str] = []
    release = asyncio.Event()

    async def slow(envelope: EventEnvelope) -> None:
        calls.append(envelope.id)
        await release.wait()

    worker = Worker(
        short_lock_sb,
        [queue_config(AUDIT_QUEUE)],
        lambda envelope: Route("audit", slow, FAST),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    stats = worker.stats.queue(AUDIT_QUEUE)
    await send(short_lock_sb, AUDIT_QUEUE, to_servicebus_message(audit_envelope()))

    async def renewed_a_few_times() -> bool:
        return stats.lock_renewals >= 4  # the handler has held the message > 2 lock durations

    await eventually(renewed_a_few_times)
    release.set()

    async def completed() -> bool:
        return stats.completed == 1

    await eventually(completed)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert len(calls) == 1
    assert stats.locks_lost == 0
    async with short_lock_sb.get_queue_receiver(AUDIT_QUEUE) as receiver:
        assert await receiver.receive_messages(max_wait_time=2) == []


async def test_shutdown_abandons_unfinished_messages(
    sb: ServiceBusClient, db: Database, start_worker: StartWorker
) -> None:
    started = asyncio.Event()

    async def stuck(envelope: EventEnvelope) -> None:
        started.set()
        await asyncio.Event().wait()

    first = start_worker({AUDIT_EVENT_TYPE: Route("audit", stuck, FAST)}, grace=4.0)
    envelope = audit_envelope()
    await send(sb, AUDIT_QUEUE, to_servicebus_message(envelope))
    await asyncio.wait_for(started.wait(), 20)
    await first.shutdown()
    assert first.stats().abandoned == 1

    store = AuditStore(db)
    second = start_worker({AUDIT_EVENT_TYPE: Route("audit", AuditHandler(store), FAST)})

    async def stored() -> bool:
        return await store.contains(envelope.id) and second.stats().completed == 1

    await eventually(stored)


async def test_deliver_at_in_the_future_is_rescheduled(
    sb: ServiceBusClient, start_worker: StartWorker
) -> None:
    from consumer.errors import DeliverLater

    delivered: list[datetime] = []
    at = datetime.now(UTC) + timedelta(seconds=1)

    async def handler(envelope: EventEnvelope) -> None:
        if not delivered and datetime.now(UTC) < at:
            delivered.append(datetime.now(UTC))
            raise DeliverLater(at)
        delivered.append(datetime.now(UTC))

    running = start_worker({NOTIFICATION_EVENT_TYPE: Route("webhook", handler, FAST)})
    await send(sb, NOTIFICATIONS_QUEUE, to_servicebus_message(notification_envelope()))

    async def done() -> bool:
        return running.stats(NOTIFICATIONS_QUEUE).completed == 2

    await eventually(done)
    assert running.stats(NOTIFICATIONS_QUEUE).retries_scheduled == 1


async def test_quiet_receiver_is_recreated_and_still_receives(
    sb: ServiceBusClient, db: Database, start_worker: StartWorker
) -> None:
    store = AuditStore(db)
    running = start_worker(
        {AUDIT_EVENT_TYPE: Route("audit", AuditHandler(store), FAST)}, recycle_after_idle=0.5
    )

    async def recycled() -> bool:
        return running.stats().receiver_restarts >= 2

    await eventually(recycled)
    await send(sb, AUDIT_QUEUE, to_servicebus_message(audit_envelope()))

    async def stored() -> bool:
        return await store.count() == 1

    await eventually(stored)


def test_receivers_per_queue_applies_to_both_queues(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "CONSUMER_SERVICEBUS_FULLY_QUALIFIED_NAMESPACE", "example.servicebus.windows.net"
    )
    monkeypatch.setenv("CONSUMER_RECEIVERS_PER_QUEUE", "3")
    assert [config.receiver_count for config in queue_configs(ConsumerSettings())] == [3, 3]


def test_receivers_per_queue_follow_concurrency_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "CONSUMER_SERVICEBUS_FULLY_QUALIFIED_NAMESPACE", "example.servicebus.windows.net"
    )
    monkeypatch.setenv("CONSUMER_AUDIT_CONCURRENCY", "64")
    monkeypatch.setenv("CONSUMER_NOTIFICATIONS_CONCURRENCY", "16")
    audit, notifications = queue_configs(ConsumerSettings())
    assert (audit.receiver_count, notifications.receiver_count) == (4, 2)
    assert [receivers_for(c) for c in (1, 32, 100, 1000)] == [2, 2, 6, 8]


async def test_handler_past_max_processing_time_is_cancelled_and_retried(
    sb: ServiceBusClient, start_worker: StartWorker
) -> None:
    calls: list[str] = []
    never = asyncio.Event()

    async def hangs_once(envelope: EventEnvelope) -> None:
        calls.append("called")
        if len(calls) == 1:
            try:
                await never.wait()
            except asyncio.CancelledError:
                calls.append("cancelled")
                raise

    policy = RetryPolicy(
        immediate_attempts=0, delayed_attempts=2, delayed_initial_delay=0.2, delayed_jitter=0.05
    )
    running = start_worker(
        {AUDIT_EVENT_TYPE: Route("audit", hangs_once, policy)}, max_processing_time=0.5
    )
    await send(sb, AUDIT_QUEUE, to_servicebus_message(audit_envelope()))

    async def retried_and_done() -> bool:
        return running.stats().completed == 2

    await eventually(retried_and_done)
    # The deadline cancelled the first call, which counted as a transient failure (a
    # delayed retry), not as shutdown (abandon) or a lost lock.
    assert calls == ["called", "cancelled", "called"]
    stats = running.stats()
    assert stats.retries_scheduled == 1
    assert stats.abandoned == 0
    assert stats.locks_lost == 0
