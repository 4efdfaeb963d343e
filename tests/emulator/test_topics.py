"""Topics and subscriptions through the real azure-servicebus SDK: fan-out, rules, DLQ,
sessions, duplicate detection, scheduling, management operations, addressing."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import ServiceBusError

from emulator.testing import (
    combine_configs,
    correlation_rule,
    queue_config,
    run_emulator,
    sql_rule,
    subscription_config,
    topic_config,
)
from tests.emulator.conftest import receive_n, receive_none

TOPIC = "events"

CONFIG = combine_configs(
    topic_config(
        TOPIC,
        "all-1",
        "all-2",
        "all-3",
        subscription_config("red", sql_rule("red", "color = 'red' AND quantity > 1")),
        subscription_config(
            "orders", correlation_rule("orders", Label="order", Properties={"region": "eu"})
        ),
        subscription_config(
            "tagged",
            sql_rule("tag", "EXISTS(color)", action="SET color = 'seen'; SET sys.Label = 'x'"),
        ),
        subscription_config("retry", LockDuration="PT1S", MaxDeliveryCount=2),
        subscription_config(
            "bad-drop",
            sql_rule("bad", "color + 1 = 2"),
            DeadLetteringOnFilterEvaluationExceptions=False,
        ),
        subscription_config("bad-dlq", sql_rule("bad", "color + 1 = 2")),
    ),
    topic_config(
        "once",
        "sub",
        RequiresDuplicateDetection=True,
        DuplicateDetectionHistoryTimeWindow="PT1M",
    ),
    topic_config("sessions", subscription_config("s", RequiresSession=True)),
    queue_config("plain"),
)


@pytest.fixture
async def client() -> Any:
    with run_emulator(CONFIG) as sb:
        async with ServiceBusClient.from_connection_string(sb.connection_string) as client:
            yield client


async def _send(client: ServiceBusClient, topic: str, *messages: ServiceBusMessage) -> None:
    async with client.get_topic_sender(topic) as sender:
        await sender.send_messages(list(messages))


async def _bodies(client: ServiceBusClient, subscription: str, count: int) -> list[str]:
    async with client.get_subscription_receiver(TOPIC, subscription) as receiver:
        messages = await receive_n(receiver, count)
        for message in messages:
            await receiver.complete_message(message)
        await receive_none(receiver, 0.2)
        return sorted(str(m) for m in messages)


async def test_fan_out_to_every_default_subscription(client: ServiceBusClient) -> None:
    await _send(client, TOPIC, *(ServiceBusMessage(f"m{i}") for i in range(3)))
    for name in ("all-1", "all-2", "all-3"):
        assert await _bodies(client, name, 3) == ["m0", "m1", "m2"]


async def test_sql_filter_selects(client: ServiceBusClient) -> None:
    await _send(
        client,
        TOPIC,
        ServiceBusMessage("red-3", application_properties={"color": "red", "quantity": 3}),
        ServiceBusMessage("red-1", application_properties={"color": "red", "quantity": 1}),
        ServiceBusMessage("blue-5", application_properties={"color": "blue", "quantity": 5}),
    )
    assert await _bodies(client, "red", 1) == ["red-3"]


async def test_correlation_filter_selects_on_system_and_user_properties(
    client: ServiceBusClient,
) -> None:
    await _send(
        client,
        TOPIC,
        ServiceBusMessage("yes", subject="order", application_properties={"region": "eu"}),
        ServiceBusMessage("other-region", subject="order", application_properties={"region": "us"}),
        ServiceBusMessage(
            "other-label", subject="invoice", application_properties={"region": "eu"}
        ),
    )
    assert await _bodies(client, "orders", 1) == ["yes"]


async def test_sql_action_changes_the_copy_only(client: ServiceBusClient) -> None:
    await _send(
        client,
        TOPIC,
        ServiceBusMessage("m", subject="orig", application_properties={"color": "red", "n": 7}),
    )
    async with client.get_subscription_receiver(TOPIC, "tagged") as receiver:
        [copy] = await receive_n(receiver, 1)
        await receiver.complete_message(copy)
    props = copy.application_properties or {}
    assert props[b"color"] == b"seen"
    assert props[b"RuleName"] == b"tag"
    assert props[b"n"] == 7
    assert copy.subject == "x"
    async with client.get_subscription_receiver(TOPIC, "all-1") as receiver:
        [original] = await receive_n(receiver, 1)
    original_props = original.application_properties or {}
    assert original.subject == "orig"
    assert original_props[b"color"] == b"red"
    assert b"RuleName" not in original_props


async def test_subscription_dead_letters_after_max_delivery_count(
    client: ServiceBusClient,
) -> None:
    await _send(client, TOPIC, ServiceBusMessage("poison"))
    async with client.get_subscription_receiver(TOPIC, "retry") as receiver:
        for _ in range(2):
            [message] = await receive_n(receiver, 1)
            await receiver.abandon_message(message)
        await receive_none(receiver, 0.2)
    async with client.get_subscription_receiver(
        TOPIC, "retry", sub_queue=ServiceBusSubQueue.DEAD_LETTER
    ) as dlq:
        [dead] = await receive_n(dlq, 1)
        assert str(dead) == "poison"
        assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
        await dlq.complete_message(dead)


async def test_filter_evaluation_error_dead_letters_or_drops(client: ServiceBusClient) -> None:
    await _send(client, TOPIC, ServiceBusMessage("m", application_properties={"color": "red"}))
    async with client.get_subscription_receiver(
        TOPIC, "bad-dlq", sub_queue=ServiceBusSubQueue.DEAD_LETTER
    ) as dlq:
        [dead] = await receive_n(dlq, 1)
        assert dead.dead_letter_reason == "FilterEvaluationException"
        assert "color + 1 = 2" in (dead.dead_letter_error_description or "")
    async with client.get_subscription_receiver(TOPIC, "bad-drop") as receiver:
        await receive_none(receiver, 0.2)
    assert await _bodies(client, "all-1", 1) == ["m"]


async def test_peek_renew_defer_and_receive_deferred_on_a_subscription(
    client: ServiceBusClient,
) -> None:
    await _send(client, TOPIC, ServiceBusMessage("a"), ServiceBusMessage("b"))
    async with client.get_subscription_receiver(TOPIC, "all-2") as receiver:
        peeked = await receiver.peek_messages(max_message_count=10)
        assert [str(m) for m in peeked] == ["a", "b"]
        first, second = await receive_n(receiver, 2)
        before = first.locked_until_utc
        assert before is not None
        after = await receiver.renew_message_lock(first)
        assert after >= before
        await receiver.defer_message(second)
        await receiver.complete_message(first)
        assert second.sequence_number is not None
        [deferred] = await receiver.receive_deferred_messages([second.sequence_number])
        assert str(deferred) == "b"
        await receiver.complete_message(deferred)


async def test_schedule_and_cancel_on_the_topic_sender(client: ServiceBusClient) -> None:
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
    async with client.get_topic_sender(TOPIC) as sender:
        [kept] = await sender.schedule_messages(ServiceBusMessage("kept"), soon)
        [dropped] = await sender.schedule_messages(ServiceBusMessage("dropped"), soon)
        await sender.cancel_scheduled_messages(dropped)
        assert kept != dropped
    async with client.get_subscription_receiver(TOPIC, "all-3") as receiver:
        [message] = await receive_n(receiver, 1, within=5)
        # Held on the topic until its time, then copied (enqueued time is the schedule).
        assert str(message) == "kept"
        assert message.enqueued_time_utc is not None
        assert message.enqueued_time_utc >= soon - datetime.timedelta(milliseconds=5)
        assert datetime.datetime.now(datetime.UTC) >= soon
        await receiver.complete_message(message)
        await receive_none(receiver, 0.3)


async def test_duplicate_detection_on_the_topic(client: ServiceBusClient) -> None:
    await _send(client, "once", ServiceBusMessage("first", message_id="same"))
    await _send(client, "once", ServiceBusMessage("again", message_id="same"))
    async with client.get_subscription_receiver("once", "sub") as receiver:
        [message] = await receive_n(receiver, 1)
        assert str(message) == "first"
        await receiver.complete_message(message)
        await receive_none(receiver, 0.3)


async def test_sessions_on_a_subscription(client: ServiceBusClient) -> None:
    await _send(
        client,
        "sessions",
        *(ServiceBusMessage(f"{sid}{i}", session_id=sid) for i in range(3) for sid in "ab"),
    )
    async with client.get_subscription_receiver("sessions", "s", session_id="b") as receiver:
        messages = await receive_n(receiver, 3)
        assert [str(m) for m in messages] == ["b0", "b1", "b2"]
        await receiver.session.set_state(b"done")
        assert await receiver.session.get_state() == b"done"
        await receiver.session.renew_lock()
        for message in messages:
            await receiver.complete_message(message)
    async with client.get_subscription_receiver("sessions", "s", session_id="a") as receiver:
        assert [str(m) for m in await receive_n(receiver, 3)] == ["a0", "a1", "a2"]


async def test_message_without_session_id_is_dead_lettered_in_a_session_subscription(
    client: ServiceBusClient,
) -> None:
    await _send(client, "sessions", ServiceBusMessage("no-session"))
    async with client.get_subscription_receiver(
        "sessions", "s", sub_queue=ServiceBusSubQueue.DEAD_LETTER
    ) as dlq:
        [dead] = await receive_n(dlq, 1)
        assert dead.dead_letter_reason == "Session ID is null"


async def test_addresses_are_case_insensitive(client: ServiceBusClient) -> None:
    await _send(client, "EVENTS", ServiceBusMessage("m"))
    async with client.get_subscription_receiver("Events", "ALL-1") as receiver:
        assert [str(m) for m in await receive_n(receiver, 1)] == ["m"]


async def test_receiver_on_a_topic_and_sender_to_a_subscription_are_refused(
    client: ServiceBusClient,
) -> None:
    with pytest.raises(ServiceBusError, match="topic"):
        async with client.get_queue_receiver(TOPIC) as receiver:
            await receiver.receive_messages(max_wait_time=1)
    with pytest.raises(ServiceBusError, match="subscription"):
        async with client.get_queue_sender(f"{TOPIC}/Subscriptions/all-1") as sender:
            await sender.send_messages(ServiceBusMessage("m"))
    with pytest.raises(ServiceBusError):
        async with client.get_subscription_receiver(TOPIC, "missing") as receiver:
            await receiver.receive_messages(max_wait_time=1)
