"""Peek-lock receive and settlement, dead-lettering, lock expiry, receive-and-delete.

Behaviour under test mirrors
https://learn.microsoft.com/azure/service-bus-messaging/message-transfers-locks-settlement and
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues.
"""

from __future__ import annotations

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import MessageLockLostError, ServiceBusError

from emulator.testing import combine_configs, queue_config, run_emulator
from tests.emulator.conftest import QUEUE, receive_n, receive_none


async def _send(client: ServiceBusClient, *bodies: str, queue: str = QUEUE) -> None:
    async with client.get_queue_sender(queue) as sender:
        await sender.send_messages([ServiceBusMessage(body) for body in bodies])


async def test_complete_removes_the_message(client: ServiceBusClient) -> None:
    await _send(client, "a", "b")
    async with client.get_queue_receiver(QUEUE) as receiver:
        messages = await receive_n(receiver, 2)
        assert [str(m) for m in messages] == ["a", "b"]
        assert all(m.lock_token is not None and m.locked_until_utc for m in messages)
        for message in messages:
            await receiver.complete_message(message)
        assert await receiver.peek_messages(max_message_count=10, sequence_number=1) == []


async def test_credit_limits_what_one_receive_call_gets(client: ServiceBusClient) -> None:
    await _send(client, "1", "2", "3")
    async with client.get_queue_receiver(QUEUE) as receiver:
        first = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
        assert [str(m) for m in first] == ["1"]
        rest = await receive_n(receiver, 2)
        assert [str(m) for m in rest] == ["2", "3"]
        for message in first + rest:
            await receiver.complete_message(message)


async def test_abandon_makes_message_available_with_delivery_count_plus_one(
    client: ServiceBusClient,
) -> None:
    await _send(client, "retry me")
    async with client.get_queue_receiver(QUEUE) as receiver:
        [first] = await receive_n(receiver, 1)
        assert first.delivery_count == 0
        await receiver.abandon_message(first)
        [second] = await receive_n(receiver, 1)
        assert str(second) == "retry me"
        assert second.delivery_count == 1
        assert second.sequence_number == first.sequence_number
        assert second.lock_token != first.lock_token
        await receiver.complete_message(second)


async def test_dead_letter_moves_message_with_reason_and_description(
    client: ServiceBusClient,
) -> None:
    await _send(client, "poison")
    async with client.get_queue_receiver(QUEUE) as receiver:
        [message] = await receive_n(receiver, 1)
        await receiver.dead_letter_message(
            message, reason="ValidationFailed", error_description="field 'x' is missing"
        )
        assert await receiver.peek_messages(max_message_count=10, sequence_number=1) == []

    async with client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = await receive_n(dlq, 1)
        assert str(dead) == "poison"
        assert dead.dead_letter_reason == "ValidationFailed"
        assert dead.dead_letter_error_description == "field 'x' is missing"
        assert dead.sequence_number == message.sequence_number
        await dlq.complete_message(dead)
        await receive_none(dlq)


async def test_dead_letter_queue_is_addressable_by_path(client: ServiceBusClient) -> None:
    await _send(client, "by path")
    async with client.get_queue_receiver(QUEUE) as receiver:
        [message] = await receive_n(receiver, 1)
        await receiver.dead_letter_message(message, reason="r")
    async with client.get_queue_receiver(f"{QUEUE}/$DeadLetterQueue") as dlq:
        [peeked] = await dlq.peek_messages(max_message_count=10, sequence_number=1)
        assert (str(peeked), peeked.dead_letter_reason) == ("by path", "r")
        [dead] = await receive_n(dlq, 1)
        assert (str(dead), dead.dead_letter_reason) == ("by path", "r")
        assert dead.dead_letter_error_description is None
        await dlq.complete_message(dead)


async def test_abandon_up_to_max_delivery_count_dead_letters(client: ServiceBusClient) -> None:
    await _send(client, "never works")  # QUEUE has MaxDeliveryCount 3
    counts = []
    async with client.get_queue_receiver(QUEUE) as receiver:
        for _ in range(3):
            [message] = await receive_n(receiver, 1)
            counts.append(message.delivery_count)
            await receiver.abandon_message(message)
        await receive_none(receiver)
    assert counts == [0, 1, 2]

    async with client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = await receive_n(dlq, 1)
        assert str(dead) == "never works"
        assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
        assert dead.dead_letter_error_description
        assert dead.delivery_count == 3
        await dlq.complete_message(dead)


async def test_lock_expiry_redelivers_and_counts_toward_max_delivery(
    client: ServiceBusClient,
) -> None:
    await _send(client, "slow consumer")
    seen = []
    async with client.get_queue_receiver(QUEUE) as receiver:
        for _ in range(3):
            # Never settled: the 1 s lock expires and the message comes back.
            [message] = await receive_n(receiver, 1, within=10)
            seen.append((str(message), message.delivery_count))
    assert seen == [("slow consumer", 0), ("slow consumer", 1), ("slow consumer", 2)]

    async with client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = await receive_n(dlq, 1, within=10)
        assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
        await dlq.complete_message(dead)


async def test_settling_after_lock_expired_raises_lock_lost(client: ServiceBusClient) -> None:
    await _send(client, "late")
    async with client.get_queue_receiver(QUEUE) as receiver:
        [message] = await receive_n(receiver, 1)
        [again] = await receive_n(receiver, 1, within=10)  # lock expired, redelivered
        assert again.delivery_count == 1
        with pytest.raises(MessageLockLostError):
            await receiver.complete_message(message)
        await receiver.complete_message(again)


async def test_released_messages_keep_their_delivery_count(client: ServiceBusClient) -> None:
    await _send(client, "1", "2", "3")
    # With prefetch the SDK buffers messages it did not hand out; closing the receiver
    # settles them as `released`, which must not count as a delivery attempt.
    async with client.get_queue_receiver("q", prefetch_count=10) as receiver:
        [first] = await receive_n(receiver, 1)
        await receiver.complete_message(first)
    async with client.get_queue_receiver(QUEUE) as receiver:
        rest = await receive_n(receiver, 2, within=5)  # well before the 1 s lock could expire twice
        assert sorted((str(m), m.delivery_count) for m in rest) == [("2", 0), ("3", 0)]
        for message in rest:
            await receiver.complete_message(message)


async def test_receive_and_delete_removes_on_delivery(client: ServiceBusClient) -> None:
    await _send(client, "x", "y")
    async with client.get_queue_receiver(
        QUEUE, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
    ) as receiver:
        messages = await receive_n(receiver, 2)
        assert [str(m) for m in messages] == ["x", "y"]
        assert [m.sequence_number for m in messages] == [1, 2]
    async with client.get_queue_receiver(QUEUE) as receiver:
        assert await receiver.peek_messages(max_message_count=10, sequence_number=1) == []


async def test_competing_receivers_get_distinct_messages(client: ServiceBusClient) -> None:
    await _send(client, *[str(i) for i in range(20)], queue="long")
    async with (
        client.get_queue_receiver("long") as one,
        client.get_queue_receiver("long") as two,
    ):
        got_one = await one.receive_messages(max_message_count=10, max_wait_time=5)
        got_two = await receive_n(two, 20 - len(got_one))
        bodies = [str(m) for m in got_one] + [str(m) for m in got_two]
        assert sorted(bodies, key=int) == [str(i) for i in range(20)]
        for message in got_one:
            await one.complete_message(message)
        for message in got_two:
            await two.complete_message(message)


async def test_session_receivers_are_refused_until_sessions_exist() -> None:
    config = combine_configs(queue_config("plain"), queue_config("sessions", RequiresSession=True))
    with run_emulator(config) as emulator:
        async with ServiceBusClient.from_connection_string(
            emulator.connection_string, retry_total=0
        ) as client:
            with pytest.raises(ServiceBusError, match=r"[Ss]ession"):
                async with client.get_queue_receiver("plain", session_id="s1") as receiver:
                    await receiver.receive_messages(max_wait_time=1)
            with pytest.raises(ServiceBusError, match="requires sessions"):
                async with client.get_queue_receiver("sessions") as receiver:
                    await receiver.receive_messages(max_wait_time=1)
