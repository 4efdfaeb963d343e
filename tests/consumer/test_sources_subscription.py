"""A worker reading a topic subscription: its filter's share, retries kept inside it,
start-up checks, settings."""

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient
from pydantic import ValidationError

from consumer.errors import TransientError
from consumer.retry import RetryPolicy
from consumer.runner import queue_configs
from consumer.runtime.entities import MissingQueueError, QueueEntity, check_queues
from consumer.runtime.routing import Route
from consumer.runtime.worker import Worker
from consumer.settings import ConsumerSettings
from contracts import AUDIT_EVENT_TYPE, EventEnvelope
from contracts.servicebus import to_servicebus_message
from emulator.testing import (
    combine_configs,
    run_emulator,
    sql_rule,
    subscription_config,
    topic_config,
)
from tests.consumer.conftest import (
    FAST,
    RunningWorker,
    audit_envelope,
    eventually,
    queue_config,
)

TOPIC = "events"
SIEM = f"{TOPIC}/Subscriptions/siem"


@pytest.fixture
def topic_connection_string() -> Iterator[str]:
    """Topic ``events``: ``siem`` takes tenant ``a`` only, ``all`` takes everything."""
    config = combine_configs(
        topic_config(
            TOPIC,
            subscription_config(
                "siem",
                sql_rule("tenant-a", "tenant = 'a'"),
                LockDuration="PT2S",
                MaxDeliveryCount=5,
            ),
            subscription_config("all", LockDuration="PT2S"),
        )
    )
    with run_emulator(config) as emulator:
        yield emulator.connection_string


@pytest.fixture
async def client(topic_connection_string: str) -> AsyncIterator[ServiceBusClient]:
    async with ServiceBusClient.from_connection_string(topic_connection_string) as sb:
        yield sb


def tenant_message(envelope: EventEnvelope, tenant: str) -> ServiceBusMessage:
    message = to_servicebus_message(envelope)
    properties: dict[Any, Any] = dict(message.application_properties or {})
    properties["tenant"] = tenant
    message.application_properties = properties
    return message


async def publish(client: ServiceBusClient, *messages: ServiceBusMessage) -> None:
    async with client.get_topic_sender(TOPIC) as sender:
        await sender.send_messages(list(messages))


async def count(client: ServiceBusClient, subscription: str) -> int:
    async with client.get_subscription_receiver(TOPIC, subscription) as receiver:
        return len(await receiver.peek_messages(max_message_count=100))


def subscription_worker(
    client: ServiceBusClient, handler: Any, policy: RetryPolicy
) -> RunningWorker:
    config = queue_config(SIEM, event_types=frozenset({AUDIT_EVENT_TYPE}), max_delivery_count=5)
    router = {AUDIT_EVENT_TYPE: Route("audit", handler, policy)}
    return RunningWorker(
        Worker(client, [config], lambda e: router.get(e.type), shutdown_grace_period=10)
    )


async def test_worker_on_a_subscription_processes_what_its_filter_selects(
    client: ServiceBusClient,
) -> None:
    handled: list[str] = []

    async def handler(envelope: EventEnvelope) -> None:
        handled.append(envelope.id)

    selected = [audit_envelope() for _ in range(3)]
    others = [audit_envelope() for _ in range(2)]
    await publish(
        client,
        *(tenant_message(e, "a") for e in selected),
        *(tenant_message(e, "b") for e in others),
    )
    running = subscription_worker(client, handler, FAST)
    try:
        await eventually(lambda: _true(len(handled) == 3))
        await eventually(lambda: _equal(count(client, "siem"), 0))
    finally:
        await running.shutdown()
    assert sorted(handled) == sorted(e.id for e in selected)
    stats = running.worker.stats.queue(SIEM)
    assert stats.completed == 3
    assert await count(client, "all") == 5  # the other subscription has its own copies


async def test_delayed_retry_on_a_subscription_stays_in_that_subscription(
    client: ServiceBusClient,
) -> None:
    calls: list[float] = []

    async def flaky(envelope: EventEnvelope) -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise TransientError("downstream unavailable")

    policy = RetryPolicy(
        immediate_attempts=0, delayed_attempts=3, delayed_initial_delay=0.5, delayed_jitter=0
    )
    await publish(client, tenant_message(audit_envelope(), "a"))
    running = subscription_worker(client, flaky, policy)
    try:
        await eventually(lambda: _true(len(calls) == 2))
        stats = running.worker.stats.queue(SIEM)
        await eventually(lambda: _true(stats.completed == 1))
    finally:
        await running.shutdown()
    assert calls[1] - calls[0] >= 0.4  # held until the retry was due, then redelivered
    assert stats.abandoned == 1
    assert stats.retries_scheduled == 0  # no copy was sent to the topic
    assert await count(client, "all") == 1  # ... so the other subscription got none
    assert await count(client, "siem") == 0


async def test_retries_on_a_subscription_end_before_max_delivery_count(
    client: ServiceBusClient,
) -> None:
    async def broken(envelope: EventEnvelope) -> None:
        raise TransientError("still down")

    policy = RetryPolicy(
        immediate_attempts=0, delayed_attempts=10, delayed_initial_delay=0.05, delayed_jitter=0
    )
    await publish(client, tenant_message(audit_envelope(), "a"))
    running = subscription_worker(client, broken, policy)
    stats = running.worker.stats.queue(SIEM)
    try:
        await eventually(lambda: _true(sum(stats.dead_lettered.values()) == 1))
    finally:
        await running.shutdown()
    # MaxDeliveryCount 5: four redeliveries, and the consumer dead-letters the fifth
    # delivery itself, with the error, before Service Bus would.
    assert stats.dead_lettered == {"MaxRetriesExceeded": 1}
    assert stats.abandoned == 4
    async with client.get_subscription_receiver(
        TOPIC, "siem", sub_queue=ServiceBusSubQueue.DEAD_LETTER
    ) as dlq:
        [dead] = await dlq.peek_messages(max_message_count=5)
    assert dead.dead_letter_reason == "MaxRetriesExceeded"
    assert "still down" in (dead.dead_letter_error_description or "")


async def test_start_up_check_names_a_missing_subscription(client: ServiceBusClient) -> None:
    await check_queues(client, [QueueEntity(SIEM, "CONSUMER_AUDIT_SUBSCRIPTION")])
    with pytest.raises(MissingQueueError) as raised:
        await check_queues(
            client, [QueueEntity(f"{TOPIC}/Subscriptions/nope", "CONSUMER_AUDIT_SUBSCRIPTION")]
        )
    [line] = raised.value.missing
    assert "subscription 'events/Subscriptions/nope'" in line
    assert "CONSUMER_AUDIT_SUBSCRIPTION" in line


def test_settings_read_a_subscription_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUMER_SERVICEBUS_CONNECTION_STRING", "Endpoint=sb://x/;A=b")
    monkeypatch.setenv("CONSUMER_AUDIT_SUBSCRIPTION", "events/subscriptions/siem")
    audit, notifications = queue_configs(ConsumerSettings())
    assert audit.name == SIEM
    assert audit.setting == "CONSUMER_AUDIT_SUBSCRIPTION"
    assert audit.entity.topic == TOPIC
    assert not audit.resends_retries
    assert notifications.name == "notifications"
    assert notifications.resends_retries

    monkeypatch.setenv("CONSUMER_AUDIT_QUEUE", "audit")
    with pytest.raises(ValidationError, match="not both"):
        ConsumerSettings()
    monkeypatch.delenv("CONSUMER_AUDIT_QUEUE")
    monkeypatch.setenv("CONSUMER_AUDIT_SUBSCRIPTION", "events/siem")
    with pytest.raises(ValidationError, match="subscription path"):
        ConsumerSettings()


async def _true(value: bool) -> bool:
    return value


async def _equal(awaitable: Any, expected: int) -> bool:
    return bool(await awaitable == expected)
