"""Sending: single messages, batches, sequence numbers, unknown queues, duplicate detection."""

from __future__ import annotations

import datetime

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.amqp import AmqpAnnotatedMessage, AmqpMessageBodyType
from azure.servicebus.exceptions import MessageSizeExceededError, MessagingEntityNotFoundError

from tests.emulator.conftest import QUEUE, receive_n, receive_none


async def test_single_message_round_trip_keeps_properties(client: ServiceBusClient) -> None:
    sent = ServiceBusMessage(
        "hello",
        message_id="m-1",
        correlation_id="c-1",
        subject="greeting",
        content_type="text/plain",
        application_properties={"tenant": "acme", "attempt": 3},
        time_to_live=datetime.timedelta(minutes=5),
    )
    async with client.get_queue_sender(QUEUE) as sender:
        await sender.send_messages(sent)
    async with client.get_queue_receiver(QUEUE) as receiver:
        [message] = await receive_n(receiver, 1)
        await receiver.complete_message(message)

    assert str(message) == "hello"
    assert message.message_id == "m-1"
    assert message.correlation_id == "c-1"
    assert message.subject == "greeting"
    assert message.content_type == "text/plain"
    assert message.application_properties == {b"tenant": b"acme", b"attempt": 3}
    assert message.delivery_count == 0
    assert message.sequence_number == 1
    assert message.time_to_live == datetime.timedelta(minutes=5)
    assert message.enqueued_time_utc is not None
    assert message.expires_at_utc == message.enqueued_time_utc + datetime.timedelta(minutes=5)
    now = datetime.datetime.now(datetime.UTC)
    assert abs(now - message.enqueued_time_utc) < datetime.timedelta(minutes=1)


async def test_batch_and_list_become_separate_messages_with_increasing_numbers(
    client: ServiceBusClient,
) -> None:
    async with client.get_queue_sender(QUEUE) as sender:
        batch = await sender.create_message_batch()
        for i in range(3):
            batch.add_message(ServiceBusMessage(f"batch-{i}", application_properties={"i": i}))
        await sender.send_messages(batch)
        await sender.send_messages([ServiceBusMessage(f"list-{i}") for i in range(2)])
        await sender.send_messages(ServiceBusMessage("single"))

    async with client.get_queue_receiver(QUEUE) as receiver:
        messages = await receive_n(receiver, 6)
        for message in messages:
            await receiver.complete_message(message)

    assert [str(m) for m in messages] == [
        "batch-0",
        "batch-1",
        "batch-2",
        "list-0",
        "list-1",
        "single",
    ]
    assert [m.sequence_number for m in messages] == [1, 2, 3, 4, 5, 6]
    assert [m.application_properties for m in messages[:3]] == [{b"i": i} for i in range(3)]


async def test_amqp_bodies_survive_byte_for_byte(client: ServiceBusClient) -> None:
    value = AmqpAnnotatedMessage(value_body={"k": [1, 2, 3]})
    sequence = AmqpAnnotatedMessage(sequence_body=[[1, "a"], [2, "b"]])
    multi_data = AmqpAnnotatedMessage(data_body=[b"part1", b"part2"])
    async with client.get_queue_sender(QUEUE) as sender:
        for outgoing in (value, sequence, multi_data):
            await sender.send_messages(outgoing)
    async with client.get_queue_receiver(QUEUE) as receiver:
        received = await receive_n(receiver, 3)
        for message in received:
            await receiver.complete_message(message)

    assert received[0].body_type == AmqpMessageBodyType.VALUE
    assert received[0].body == {b"k": [1, 2, 3]}
    assert received[1].body_type == AmqpMessageBodyType.SEQUENCE
    assert list(received[1].body) == [[1, b"a"], [2, b"b"]]
    assert received[2].body_type == AmqpMessageBodyType.DATA
    assert list(received[2].body) == [b"part1", b"part2"]


async def test_sender_to_unknown_queue_raises_entity_not_found(client: ServiceBusClient) -> None:
    sender = client.get_queue_sender("no-such-queue")
    with pytest.raises(MessagingEntityNotFoundError):
        async with sender:
            await sender.send_messages(ServiceBusMessage("x"))


async def test_receiver_from_unknown_queue_raises_entity_not_found(
    client: ServiceBusClient,
) -> None:
    receiver = client.get_queue_receiver("no-such-queue")
    with pytest.raises(MessagingEntityNotFoundError):
        async with receiver:
            await receiver.receive_messages(max_wait_time=1)


async def test_queue_names_are_case_insensitive(client: ServiceBusClient) -> None:
    async with client.get_queue_sender(QUEUE.upper()) as sender:
        await sender.send_messages(ServiceBusMessage("any case"))
    async with client.get_queue_receiver(QUEUE) as receiver:
        [message] = await receive_n(receiver, 1)
        await receiver.complete_message(message)
    assert str(message) == "any case"


async def test_duplicate_message_id_is_accepted_and_dropped(client: ServiceBusClient) -> None:
    async with client.get_queue_sender("dedup") as sender:
        await sender.send_messages(ServiceBusMessage("first", message_id="same"))
        await sender.send_messages(ServiceBusMessage("second", message_id="same"))
        await sender.send_messages(
            [
                ServiceBusMessage("third", message_id="same"),
                ServiceBusMessage("other", message_id="x"),
            ]
        )
    async with client.get_queue_receiver("dedup") as receiver:
        messages = await receive_n(receiver, 2)
        for message in messages:
            await receiver.complete_message(message)
        await receive_none(receiver)
    assert [str(m) for m in messages] == ["first", "other"]


async def test_without_duplicate_detection_same_id_is_kept(client: ServiceBusClient) -> None:
    async with client.get_queue_sender(QUEUE) as sender:
        await sender.send_messages(ServiceBusMessage("a", message_id="same"))
        await sender.send_messages(ServiceBusMessage("b", message_id="same"))
    async with client.get_queue_receiver(QUEUE) as receiver:
        messages = await receive_n(receiver, 2)
        for message in messages:
            await receiver.complete_message(message)
    assert [str(m) for m in messages] == ["a", "b"]


async def test_link_advertises_the_256_kib_standard_tier_limit(client: ServiceBusClient) -> None:
    async with client.get_queue_sender(QUEUE) as sender:
        batch = await sender.create_message_batch()
        assert batch.max_size_in_bytes == 256 * 1024
        with pytest.raises(MessageSizeExceededError):
            await sender.send_messages(ServiceBusMessage(b"x" * 300_000))
