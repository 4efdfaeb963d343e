"""Auto-forwarding (``ForwardTo``, ``ForwardDeadLetteredMessagesTo``) through the real SDK,
with Azure's four-hop limit."""

from __future__ import annotations

from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from emulator.config import ConfigError, parse_config
from emulator.testing import (
    combine_configs,
    queue_config,
    run_emulator,
    sql_rule,
    subscription_config,
    topic_config,
)
from tests.emulator.conftest import receive_n, receive_none

CONFIG = combine_configs(
    queue_config("inbox", ForwardTo="work"),
    queue_config("work"),
    queue_config("strict", ForwardDeadLetteredMessagesTo="errors", MaxDeliveryCount=1),
    queue_config("errors"),
    topic_config(
        "events",
        subscription_config("to-work", sql_rule("big", "size > 10"), ForwardTo="work"),
        subscription_config("to-errors", ForwardDeadLetteredMessagesTo="errors"),
    ),
    queue_config("to-topic", ForwardTo="events"),
    # A chain of six: hop1 -> ... -> hop6.
    *(queue_config(f"hop{i}", ForwardTo=f"hop{i + 1}") for i in range(1, 6)),
    queue_config("hop6"),
    # A loop.
    queue_config("ping", ForwardTo="pong"),
    queue_config("pong", ForwardTo="ping"),
)


@pytest.fixture
async def client() -> Any:
    with run_emulator(CONFIG) as sb:
        async with ServiceBusClient.from_connection_string(sb.connection_string) as client:
            yield client


async def _send_queue(client: ServiceBusClient, queue: str, *messages: ServiceBusMessage) -> None:
    async with client.get_queue_sender(queue) as sender:
        await sender.send_messages(list(messages))


async def test_queue_forwards_to_queue(client: ServiceBusClient) -> None:
    await _send_queue(client, "inbox", ServiceBusMessage("m", message_id="id-1"))
    async with client.get_queue_receiver("inbox") as receiver:
        await receive_none(receiver, 0.2)
    async with client.get_queue_receiver("work") as receiver:
        [message] = await receive_n(receiver, 1)
        assert str(message) == "m"
        assert message.message_id == "id-1"
        assert message.delivery_count == 0


async def test_subscription_forwards_to_queue(client: ServiceBusClient) -> None:
    async with client.get_topic_sender("events") as sender:
        await sender.send_messages(
            [
                ServiceBusMessage("small", application_properties={"size": 1}),
                ServiceBusMessage("big", application_properties={"size": 50}),
            ]
        )
    async with client.get_queue_receiver("work") as receiver:
        [message] = await receive_n(receiver, 1)
        assert str(message) == "big"
        await receive_none(receiver, 0.2)


async def test_queue_forwards_to_topic(client: ServiceBusClient) -> None:
    await _send_queue(client, "to-topic", ServiceBusMessage("t"))
    async with client.get_subscription_receiver("events", "to-errors") as receiver:
        [message] = await receive_n(receiver, 1)
        assert str(message) == "t"


async def test_dead_lettered_messages_are_forwarded(client: ServiceBusClient) -> None:
    await _send_queue(client, "strict", ServiceBusMessage("explicit"), ServiceBusMessage("mdc"))
    async with client.get_queue_receiver("strict") as receiver:
        first, second = await receive_n(receiver, 2)
        await receiver.dead_letter_message(first, reason="Bad", error_description="bad input")
        await receiver.abandon_message(second)  # MaxDeliveryCount 1: dead-lettered
    async with client.get_queue_receiver("strict", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        await receive_none(dlq, 0.2)
    async with client.get_queue_receiver("errors") as receiver:
        messages = sorted(await receive_n(receiver, 2), key=str)
    assert [str(m) for m in messages] == ["explicit", "mdc"]
    assert [m.dead_letter_reason for m in messages] == ["Bad", "MaxDeliveryCountExceeded"]
    assert messages[0].dead_letter_error_description == "bad input"
    assert {m.dead_letter_source for m in messages} == {"strict"}


async def test_subscription_dead_letters_are_forwarded(client: ServiceBusClient) -> None:
    async with client.get_topic_sender("events") as sender:
        await sender.send_messages(ServiceBusMessage("sub-dead"))
    async with client.get_subscription_receiver("events", "to-errors") as receiver:
        [message] = await receive_n(receiver, 1)
        await receiver.dead_letter_message(message, reason="Nope")
    async with client.get_queue_receiver("errors") as receiver:
        [forwarded] = await receive_n(receiver, 1)
    assert forwarded.dead_letter_reason == "Nope"
    assert forwarded.dead_letter_source == "events/Subscriptions/to-errors"


async def test_fifth_hop_is_dead_lettered(client: ServiceBusClient) -> None:
    await _send_queue(client, "hop1", ServiceBusMessage("far"))
    async with client.get_queue_receiver("hop6") as receiver:
        await receive_none(receiver, 0.2)
    async with client.get_queue_receiver("hop5", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = await receive_n(dlq, 1)
    assert str(dead) == "far"
    assert dead.dead_letter_reason == "MaxTransferHopCountExceeded"


async def test_a_forwarding_loop_ends_in_a_dead_letter_queue(client: ServiceBusClient) -> None:
    await _send_queue(client, "ping", ServiceBusMessage("loop"))
    # ping -> pong (1) -> ping (2) -> pong (3) -> ping (4): ping would make the fifth hop.
    async with client.get_queue_receiver("ping", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = await receive_n(dlq, 1)
    assert dead.dead_letter_reason == "MaxTransferHopCountExceeded"


def test_forwarding_target_must_exist() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(queue_config("q", ForwardTo="nowhere"))
    assert str(info.value) == (
        "UserConfig: queue 'q': ForwardTo 'nowhere' is not a configured queue or topic"
    )
    with pytest.raises(ConfigError, match="ForwardDeadLetteredMessagesTo 'gone'"):
        parse_config(
            topic_config("t", subscription_config("s", ForwardDeadLetteredMessagesTo="gone"))
        )
