"""The ``$management`` node: renew-lock, update-disposition, peek, schedule/cancel.

See https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-request-response.
"""

from __future__ import annotations

import copy
import datetime

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusMessageState, ServiceBusSubQueue
from azure.servicebus._common import mgmt_handlers
from azure.servicebus.aio import AutoLockRenewer, ServiceBusClient
from azure.servicebus.exceptions import (
    MessageLockLostError,
    MessageNotFoundError,
    ServiceBusError,
)

from emulator.testing import EmulatorHandle, queue_config, run_emulator
from tests.emulator.conftest import QUEUE, eventually, receive_n, receive_none


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def test_renew_lock_extends_locked_until(client: ServiceBusClient) -> None:
    async with client.get_queue_sender(QUEUE) as sender:
        await sender.send_messages(ServiceBusMessage("hold"))
    async with client.get_queue_receiver(QUEUE) as receiver:
        [message] = await receive_n(receiver, 1)
        before = message.locked_until_utc
        assert before is not None
        renewed = await receiver.renew_message_lock(message)
        assert renewed >= before
        assert message.locked_until_utc == renewed
        await receiver.complete_message(message)


async def test_auto_lock_renewer_keeps_message_locked_past_lock_duration() -> None:
    # The SDK's renewer wakes up once a second and renews when less than 75 % of the
    # whole seconds of the lock remain; a 3 s lock leaves it a safe margin.
    with run_emulator(queue_config("work", LockDuration="PT3S")) as emulator:
        async with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
            async with client.get_queue_sender("work") as sender:
                await sender.send_messages(ServiceBusMessage("long job"))
            renewer = AutoLockRenewer(max_lock_renewal_duration=30)
            try:
                async with (
                    client.get_queue_receiver("work", auto_lock_renewer=renewer) as worker,
                    client.get_queue_receiver("work") as competitor,
                ):
                    [message] = await receive_n(worker, 1)
                    first_lock = message.locked_until_utc
                    # Longer than the lock duration passes while the worker holds the message.
                    await receive_none(competitor, wait=4.5)
                    assert message.locked_until_utc is not None
                    assert first_lock is not None
                    assert message.locked_until_utc > first_lock
                    await worker.complete_message(message)
            finally:
                await renewer.close()
            async with client.get_queue_receiver("work") as receiver:
                assert await receiver.peek_messages(max_message_count=10, sequence_number=1) == []


async def test_settling_through_another_receiver_uses_update_disposition(
    client: ServiceBusClient,
) -> None:
    """The other receiver's link never delivered the message, so the SDK falls back to the
    management ``update-disposition`` operation with the lock token."""
    async with client.get_queue_sender("long") as sender:
        await sender.send_messages([ServiceBusMessage(b) for b in ("done", "retry", "poison")])
    async with (
        client.get_queue_receiver("long") as owner,
        client.get_queue_receiver("long") as other,
    ):
        done, retry, poison = await receive_n(owner, 3)
        owners_done = copy.copy(done)  # the SDK marks the object it settles as settled
        await other.complete_message(done)
        await other.abandon_message(retry)
        await other.dead_letter_message(poison, reason="BadData", error_description="no id")

        # The owner's locks are gone: the service answers lock-lost, which the SDK raises.
        with pytest.raises(MessageLockLostError):
            await owner.complete_message(owners_done)

        [again] = await receive_n(owner, 1)
        assert (str(again), again.delivery_count) == ("retry", 1)
        await owner.complete_message(again)
        assert await owner.peek_messages(max_message_count=10, sequence_number=1) == []

    async with client.get_queue_receiver("long", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = await receive_n(dlq, 1)
        assert (str(dead), dead.dead_letter_reason, dead.dead_letter_error_description) == (
            "poison",
            "BadData",
            "no id",
        )
        await dlq.complete_message(dead)


async def test_renewing_a_lock_the_service_no_longer_holds_raises_lock_lost(
    client: ServiceBusClient,
) -> None:
    async with client.get_queue_sender("long") as sender:
        await sender.send_messages(ServiceBusMessage("x"))
    async with (
        client.get_queue_receiver("long") as owner,
        client.get_queue_receiver("long") as other,
    ):
        [message] = await receive_n(owner, 1)
        owners_copy = copy.copy(message)  # the SDK marks the object it settles as settled
        await other.complete_message(message)  # via update-disposition
        with pytest.raises(MessageLockLostError):
            await owner.renew_message_lock(owners_copy)


async def test_peek_returns_messages_in_order_without_locking(client: ServiceBusClient) -> None:
    async with client.get_queue_sender("long") as sender:
        await sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(3)])
    async with client.get_queue_receiver("long") as receiver:
        first_two = await receiver.peek_messages(max_message_count=2, sequence_number=1)
        assert [(str(m), m.sequence_number) for m in first_two] == [("m0", 1), ("m1", 2)]
        assert all(m.state == ServiceBusMessageState.ACTIVE for m in first_two)
        assert first_two[0].delivery_count == 0
        last = await receiver.peek_messages(max_message_count=10, sequence_number=3)
        assert [str(m) for m in last] == ["m2"]
        assert await receiver.peek_messages(max_message_count=10, sequence_number=4) == []

        received = await receive_n(receiver, 3)  # peeking locked nothing
        assert [m.delivery_count for m in received] == [0, 0, 0]
        for message in received:
            await receiver.complete_message(message)


async def test_scheduled_message_is_invisible_until_its_time(client: ServiceBusClient) -> None:
    async with (
        client.get_queue_receiver("long") as receiver,
        client.get_queue_sender("long") as sender,
    ):
        at = _utcnow() + datetime.timedelta(seconds=2.5)
        [number] = await sender.schedule_messages(ServiceBusMessage("later"), at)
        await sender.send_messages(ServiceBusMessage("now"))
        peeked = await receiver.peek_messages(max_message_count=10, sequence_number=1)
        assert [(m.sequence_number, m.state) for m in peeked] == [
            (number, ServiceBusMessageState.SCHEDULED),
            (number + 1, ServiceBusMessageState.ACTIVE),
        ]

        [now] = await receive_n(receiver, 1)
        assert str(now) == "now"
        await receiver.complete_message(now)

        [later] = await receive_n(receiver, 1, within=10)
        assert str(later) == "later"
        assert later.sequence_number == number
        assert later.enqueued_time_utc is not None
        assert later.enqueued_time_utc >= at - datetime.timedelta(milliseconds=5)
        assert _utcnow() >= at
        await receiver.complete_message(later)


async def test_message_with_scheduled_enqueue_time_sent_normally_is_scheduled(
    client: ServiceBusClient,
) -> None:
    async with (
        client.get_queue_receiver("long") as receiver,
        client.get_queue_sender("long") as sender,
    ):
        at = _utcnow() + datetime.timedelta(seconds=2.5)
        await sender.send_messages(ServiceBusMessage("timed", scheduled_enqueue_time_utc=at))
        [peeked] = await receiver.peek_messages(max_message_count=10, sequence_number=1)
        assert peeked.state == ServiceBusMessageState.SCHEDULED
        [message] = await receive_n(receiver, 1, within=10)
        assert str(message) == "timed"
        assert _utcnow() >= at
        await receiver.complete_message(message)


async def test_cancel_scheduled_message_removes_it(
    emulator: EmulatorHandle, client: ServiceBusClient
) -> None:
    at = _utcnow() + datetime.timedelta(minutes=5)
    async with client.get_queue_sender("long") as sender:
        numbers = await sender.schedule_messages(
            [ServiceBusMessage("a"), ServiceBusMessage("b")], at
        )
        assert len(numbers) == 2
        assert numbers[0] < numbers[1]
        await sender.cancel_scheduled_messages(numbers[0])
    # The SDK retries message-not-found with back-off; a client without retries is quicker.
    no_retry = ServiceBusClient.from_connection_string(emulator.connection_string, retry_total=0)
    async with no_retry, no_retry.get_queue_sender("long") as sender:
        with pytest.raises(MessageNotFoundError):
            await sender.cancel_scheduled_messages(numbers[0])
    async with client.get_queue_receiver("long") as receiver:
        remaining = await receiver.peek_messages(max_message_count=10, sequence_number=1)
        assert [(str(m), m.sequence_number) for m in remaining] == [("b", numbers[1])]


async def test_unsupported_operations_answer_an_error_not_empty_success(
    emulator: EmulatorHandle,
) -> None:
    # The SDK retries message-not-found with back-off; a client without retries is quicker.
    client = ServiceBusClient.from_connection_string(emulator.connection_string, retry_total=0)
    async with client, client.get_queue_receiver("long") as receiver:
        with pytest.raises(ServiceBusError, match="not supported"):
            await receiver._mgmt_request_response_with_retry(  # the SDK's own request path
                b"com.microsoft:no-such-operation", {}, mgmt_handlers.default
            )
        # A sequence number that is not a deferred message is "not found", not success.
        with pytest.raises(MessageNotFoundError):
            await receiver.receive_deferred_messages([1])


async def test_deferred_message_leaves_the_active_queue(client: ServiceBusClient) -> None:
    async with client.get_queue_sender(QUEUE) as sender:
        await sender.send_messages(ServiceBusMessage("later please"))
    async with client.get_queue_receiver(QUEUE) as receiver:
        [message] = await receive_n(receiver, 1)
        await receiver.defer_message(message)

        async def deferred() -> list[object]:
            peeked = await receiver.peek_messages(max_message_count=10, sequence_number=1)
            return [m for m in peeked if m.state == ServiceBusMessageState.DEFERRED]

        assert len(await eventually(deferred)) == 1
        await receive_none(receiver, wait=1.5)  # longer than the lock: not redelivered
