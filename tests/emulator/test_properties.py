"""Every message property round-trips; system properties are set as Azure sets them; large
messages; per-queue maximum size; prefetch.

See https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messages-payloads and
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-prefetch.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.amqp import AmqpAnnotatedMessage, AmqpMessageBodyType
from azure.servicebus.exceptions import MessageSizeExceededError

from emulator.testing import queue_config, run_emulator
from tests.emulator.conftest import receive_n, receive_none, seq


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def test_every_property_round_trips(client: ServiceBusClient) -> None:
    scheduled = _utcnow() + datetime.timedelta(seconds=1)
    stamp = datetime.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=datetime.UTC)
    an_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    # datetime values are sent as AMQP timestamps, although the SDK's type hints omit them.
    application_properties: dict[str | bytes, Any] = {
        "str": "text",
        "int": 7,
        "negative": -3,
        "big": 2**31 - 1,  # the SDK encodes Python ints as AMQP int (32 bits)
        "float": 1.5,
        "true": True,
        "false": False,
        "bytes": b"\x00\x01",
        "uuid": an_id,
        "time": stamp,
    }
    sent = ServiceBusMessage(
        b"payload",
        message_id="mid",
        correlation_id="cid",
        session_id="sid",
        partition_key="sid",
        reply_to="replies",
        reply_to_session_id="reply-sid",
        to="destination",
        subject="subject",
        content_type="application/octet-stream",
        time_to_live=datetime.timedelta(hours=2),
        scheduled_enqueue_time_utc=scheduled,
        application_properties=application_properties,
    )
    async with client.get_queue_sender("long") as sender:
        await sender.send_messages(sent)
    async with client.get_queue_receiver("long") as receiver:
        [message] = await receive_n(receiver, 1, within=10)
        assert message.locked_until_utc is not None
        assert message.lock_token is not None
        await receiver.complete_message(message)

    assert b"".join(message.body) == b"payload"
    assert (message.message_id, message.correlation_id) == ("mid", "cid")
    assert (message.session_id, message.partition_key) == ("sid", "sid")
    assert (message.reply_to, message.reply_to_session_id) == ("replies", "reply-sid")
    assert (message.to, message.subject) == ("destination", "subject")
    assert message.content_type == "application/octet-stream"
    assert message.time_to_live == datetime.timedelta(hours=2)
    assert message.scheduled_enqueue_time_utc is not None
    assert abs(message.scheduled_enqueue_time_utc - scheduled) < datetime.timedelta(seconds=1)
    props = message.application_properties
    assert props is not None
    assert props[b"str"] == b"text"
    assert (props[b"int"], props[b"negative"], props[b"big"]) == (7, -3, 2**31 - 1)
    assert props[b"float"] == 1.5
    assert (props[b"true"], props[b"false"]) == (True, False)
    assert props[b"bytes"] == b"\x00\x01"
    assert props[b"uuid"] == an_id
    assert props[b"time"] == int(stamp.timestamp() * 1000)  # the SDK returns ms timestamps
    # System properties.
    assert message.sequence_number == 1
    assert message.enqueued_sequence_number == 1
    assert message.enqueued_time_utc is not None
    assert message.enqueued_time_utc >= scheduled - datetime.timedelta(milliseconds=5)
    assert message.expires_at_utc == message.enqueued_time_utc + datetime.timedelta(hours=2)
    assert message.dead_letter_source is None


async def test_system_properties_and_broker_assigned_message_id(
    client: ServiceBusClient,
) -> None:
    before = _utcnow() - datetime.timedelta(seconds=1)
    async with client.get_queue_sender("long") as sender:
        await sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(5)])
        await sender.send_messages(AmqpAnnotatedMessage(data_body=b"no message id"))
    async with client.get_queue_receiver("long") as receiver:
        messages = await receive_n(receiver, 6)
        for message in messages:
            await receiver.complete_message(message)
    numbers = [seq(m) for m in messages]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == 6
    assert all(m.enqueued_time_utc is not None and m.enqueued_time_utc >= before for m in messages)
    # Azure always delivers a MessageId, assigning one when the sender set none.
    assert all(m.message_id for m in messages)
    assert len({m.message_id for m in messages}) == 6


async def test_all_three_body_types_and_multi_section_bodies(client: ServiceBusClient) -> None:
    outgoing = [
        AmqpAnnotatedMessage(value_body={"k": [1, 2.5, None, True]}),
        AmqpAnnotatedMessage(sequence_body=[[1, "a"], [2, "b"]]),
        AmqpAnnotatedMessage(data_body=[b"part1", b"part2"]),
        AmqpAnnotatedMessage(value_body="just a string"),
    ]
    async with client.get_queue_sender("long") as sender:
        for item in outgoing:
            await sender.send_messages(item)
    async with client.get_queue_receiver("long") as receiver:
        received = await receive_n(receiver, 4)
        for message in received:
            await receiver.complete_message(message)
    assert [m.body_type for m in received] == [
        AmqpMessageBodyType.VALUE,
        AmqpMessageBodyType.SEQUENCE,
        AmqpMessageBodyType.DATA,
        AmqpMessageBodyType.VALUE,
    ]
    assert received[0].body == {b"k": [1, 2.5, None, True]}
    assert list(received[1].body) == [[1, b"a"], [2, b"b"]]
    assert list(received[2].body) == [b"part1", b"part2"]
    assert received[3].body == b"just a string"


async def test_messages_larger_than_a_frame_round_trip(client: ServiceBusClient) -> None:
    big = bytes(range(256)) * 900  # 230,400 bytes: several 64 KiB frames each way
    async with client.get_queue_sender("long") as sender:
        await sender.send_messages(ServiceBusMessage(big))
        batch = await sender.create_message_batch()
        batch.add_message(ServiceBusMessage(b"a" * 100_000))
        batch.add_message(ServiceBusMessage(b"b" * 100_000))
        await sender.send_messages(batch)
    async with client.get_queue_receiver("long") as receiver:
        received = await receive_n(receiver, 3)
        for message in received:
            await receiver.complete_message(message)
    assert [b"".join(m.body) for m in received] == [big, b"a" * 100_000, b"b" * 100_000]


async def test_max_message_size_is_configurable_per_queue() -> None:
    with run_emulator(queue_config("small", MaxMessageSizeInKilobytes=8)) as emulator:
        client = ServiceBusClient.from_connection_string(emulator.connection_string, retry_total=0)
        async with client, client.get_queue_sender("small") as sender:
            batch = await sender.create_message_batch()
            assert batch.max_size_in_bytes == 8 * 1024
            with pytest.raises(MessageSizeExceededError):
                await sender.send_messages(ServiceBusMessage(b"x" * 10_000))
            await sender.send_messages(ServiceBusMessage(b"x" * 7_000))


async def test_prefetched_messages_are_locked_and_released_on_close(
    client: ServiceBusClient,
) -> None:
    async with client.get_queue_sender("long") as sender:
        await sender.send_messages([ServiceBusMessage(str(i)) for i in range(5)])
    async with (
        client.get_queue_receiver("long", prefetch_count=10) as prefetching,
        client.get_queue_receiver("long") as other,
    ):
        [first] = await prefetching.receive_messages(max_message_count=1, max_wait_time=5)
        assert str(first) == "0"
        # The other four were delivered into the prefetch buffer and are locked there.
        await receive_none(other, wait=0.5)
        rest = await receive_n(prefetching, 4)
        assert [str(m) for m in rest] == ["1", "2", "3", "4"]
        await prefetching.complete_message(first)
        for message in rest[:2]:
            await prefetching.complete_message(message)
    # Closing released nothing here (all were handed out); the two unsettled ones stay
    # locked until their lock expires, as in Azure.
    async with client.get_queue_receiver("long") as receiver:
        peeked = await receiver.peek_messages(max_message_count=10, sequence_number=1)
        assert [str(m) for m in peeked] == ["3", "4"]
