"""Message states through the SDK: deferral, time to live, lock duration, duplicate window.

Mirrors https://learn.microsoft.com/azure/service-bus-messaging/message-deferral,
https://learn.microsoft.com/azure/service-bus-messaging/message-expiration,
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues and
https://learn.microsoft.com/azure/service-bus-messaging/duplicate-detection.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Iterator

import pytest
from azure.servicebus import (
    ServiceBusMessage,
    ServiceBusMessageState,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import MessageNotFoundError

from emulator.testing import EmulatorHandle, combine_configs, queue_config, run_emulator
from tests.emulator.conftest import eventually, receive_n, receive_none, seq

DEFER = "defer"  # long locks, MaxDeliveryCount 3
EXPIRING_DLQ = "expiring-dlq"  # DeadLetteringOnMessageExpiration
EXPIRING_DROP = "expiring-drop"  # expired messages are dropped
SHORT_TTL = "short-ttl"  # DefaultMessageTimeToLive 3 s, dead-lettered
DEDUP = "dedup-1s"  # duplicate detection with a 1 s window
TTL_2S = "ttl-2s"  # DefaultMessageTimeToLive 2 s, dead-lettered


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@pytest.fixture
def state_emulator() -> Iterator[EmulatorHandle]:
    config = combine_configs(
        queue_config(DEFER, MaxDeliveryCount=3),
        queue_config(EXPIRING_DLQ, DeadLetteringOnMessageExpiration=True),
        queue_config(EXPIRING_DROP),
        queue_config(
            SHORT_TTL, DefaultMessageTimeToLive="PT3S", DeadLetteringOnMessageExpiration=True
        ),
        queue_config(
            DEDUP, RequiresDuplicateDetection=True, DuplicateDetectionHistoryTimeWindow="PT1S"
        ),
        queue_config(
            TTL_2S, DefaultMessageTimeToLive="PT2S", DeadLetteringOnMessageExpiration=True
        ),
    )
    with run_emulator(config) as handle:
        yield handle


@pytest.fixture
async def sb(state_emulator: EmulatorHandle) -> AsyncIterator[ServiceBusClient]:
    async with ServiceBusClient.from_connection_string(
        state_emulator.connection_string, retry_total=0
    ) as client:
        yield client


async def test_deferred_message_is_received_by_sequence_number_and_settled(
    sb: ServiceBusClient,
) -> None:
    async with sb.get_queue_sender(DEFER) as sender:
        await sender.send_messages([ServiceBusMessage("step-2"), ServiceBusMessage("step-1")])
    async with sb.get_queue_receiver(DEFER) as receiver:
        step2, step1 = await receive_n(receiver, 2)
        await receiver.defer_message(step2)
        await receiver.complete_message(step1)
        await receive_none(receiver, wait=0.3)

        [deferred] = await receiver.receive_deferred_messages([seq(step2)])
        assert str(deferred) == "step-2"
        assert deferred.state == ServiceBusMessageState.DEFERRED
        assert deferred.lock_token is not None
        assert deferred.locked_until_utc is not None
        # Abandoning a deferred message keeps it deferred, one delivery later.
        await receiver.abandon_message(deferred)
        [again] = await receiver.receive_deferred_messages([seq(step2)])
        assert again.delivery_count == 1
        # A locked deferred message cannot be received again.
        with pytest.raises(MessageNotFoundError):
            await receiver.receive_deferred_messages([seq(step2)])
        await receiver.complete_message(again)
        with pytest.raises(MessageNotFoundError):
            await receiver.receive_deferred_messages([seq(step2)])
        assert await receiver.peek_messages(max_message_count=10, sequence_number=1) == []


async def test_deferred_messages_in_receive_and_delete_mode_and_dead_lettering(
    sb: ServiceBusClient,
) -> None:
    async with sb.get_queue_sender(DEFER) as sender:
        await sender.send_messages([ServiceBusMessage("a"), ServiceBusMessage("b")])
    async with sb.get_queue_receiver(DEFER) as receiver:
        a, b = await receive_n(receiver, 2)
        await receiver.defer_message(a)
        await receiver.defer_message(b)
        [deferred_b] = await receiver.receive_deferred_messages([seq(b)])
        await receiver.dead_letter_message(deferred_b, reason="bad", error_description="b")
    async with sb.get_queue_receiver(
        DEFER, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
    ) as receiver:
        [deferred_a] = await receiver.receive_deferred_messages([seq(a)])
        assert str(deferred_a) == "a"
        assert await receiver.peek_messages(max_message_count=10, sequence_number=1) == []
    async with sb.get_queue_receiver(DEFER, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = await receive_n(dlq, 1)
        assert (str(dead), dead.dead_letter_reason) == ("b", "bad")


async def test_message_ttl_expiry_dead_letters_with_ttl_expired_exception(
    sb: ServiceBusClient,
) -> None:
    async with sb.get_queue_sender(EXPIRING_DLQ) as sender:
        await sender.send_messages(
            ServiceBusMessage("short-lived", time_to_live=datetime.timedelta(seconds=1))
        )
        await sender.send_messages(ServiceBusMessage("long-lived"))
    async with sb.get_queue_receiver(EXPIRING_DLQ, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = await receive_n(dlq, 1, within=10)
        assert str(dead) == "short-lived"
        assert dead.dead_letter_reason == "TTLExpiredException"
        assert dead.sequence_number == 1
        assert dead.enqueued_sequence_number == 1
        # Messages in the dead-letter queue do not expire.
        await receive_none(dlq, wait=0.3)
        await dlq.complete_message(dead)
    async with sb.get_queue_receiver(EXPIRING_DLQ) as receiver:
        [alive] = await receive_n(receiver, 1)
        assert str(alive) == "long-lived"
        await receiver.complete_message(alive)


async def test_expired_messages_are_dropped_without_dead_lettering_on_expiration(
    sb: ServiceBusClient,
) -> None:
    async with sb.get_queue_sender(EXPIRING_DROP) as sender:
        await sender.send_messages(
            # The SDK sends whole seconds only.
            ServiceBusMessage("gone", time_to_live=datetime.timedelta(seconds=1))
        )
    async with sb.get_queue_receiver(EXPIRING_DROP) as receiver:

        async def queue_empty() -> bool:
            return await receiver.peek_messages(max_message_count=10, sequence_number=1) == []

        await eventually(queue_empty)
        await receive_none(receiver, wait=0.3)
    async with sb.get_queue_receiver(
        EXPIRING_DROP, sub_queue=ServiceBusSubQueue.DEAD_LETTER
    ) as dlq:
        assert await dlq.peek_messages(max_message_count=10, sequence_number=1) == []


async def test_queue_default_ttl_applies_and_caps_the_message_ttl(sb: ServiceBusClient) -> None:
    async with sb.get_queue_sender(SHORT_TTL) as sender:
        await sender.send_messages(
            ServiceBusMessage("capped", time_to_live=datetime.timedelta(hours=1))
        )
    async with sb.get_queue_receiver(SHORT_TTL) as receiver:
        [peeked] = await receiver.peek_messages(max_message_count=1, sequence_number=1)
        assert peeked.time_to_live == datetime.timedelta(seconds=3)
    async with sb.get_queue_receiver(SHORT_TTL, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = await receive_n(dlq, 1, within=10)
        assert (str(dead), dead.dead_letter_reason) == ("capped", "TTLExpiredException")


async def test_locked_and_deferred_messages_expire_only_when_given_back_or_received(
    sb: ServiceBusClient,
) -> None:
    async with (
        sb.get_queue_receiver(TTL_2S) as receiver,
        sb.get_queue_sender(TTL_2S) as sender,
    ):
        await sender.send_messages(
            [ServiceBusMessage("in hand"), ServiceBusMessage("deferred too long")]
        )
        held, deferred = await receive_n(receiver, 2)
        await receiver.defer_message(deferred)
        await asyncio.sleep(2.3)  # past the 2 s time to live; "in hand" is still locked
        # Deferred messages are not expired in the background...
        [still] = await receiver.peek_messages(max_message_count=1, sequence_number=seq(deferred))
        assert still.state == ServiceBusMessageState.DEFERRED
        # ...but when one tries to receive them.
        with pytest.raises(MessageNotFoundError):
            await receiver.receive_deferred_messages([seq(deferred)])
        # A locked message expires once it is given back.
        await receiver.abandon_message(held)
    async with sb.get_queue_receiver(TTL_2S, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        dead = await receive_n(dlq, 2, within=10)
        assert sorted((str(m), m.dead_letter_reason) for m in dead) == [
            ("deferred too long", "TTLExpiredException"),
            ("in hand", "TTLExpiredException"),
        ]
        assert all(m.dead_letter_source is None for m in dead)  # set only when auto-forwarded


async def test_lock_duration_comes_from_the_queue_config(sb: ServiceBusClient) -> None:
    async with sb.get_queue_sender(DEFER) as sender:
        await sender.send_messages(ServiceBusMessage("x"))
    async with sb.get_queue_receiver(DEFER) as receiver:
        [message] = await receive_n(receiver, 1)
        assert message.locked_until_utc is not None
        remaining = message.locked_until_utc - _utcnow()
        assert datetime.timedelta(seconds=50) < remaining <= datetime.timedelta(seconds=60)


async def test_duplicate_detection_window_expires(sb: ServiceBusClient) -> None:
    async with sb.get_queue_sender(DEDUP) as sender:
        await sender.send_messages(ServiceBusMessage("first", message_id="id-1"))
        await sender.send_messages(ServiceBusMessage("dropped", message_id="id-1"))
        await asyncio.sleep(1.2)  # the 1 s history window has passed
        await sender.send_messages(ServiceBusMessage("accepted again", message_id="id-1"))
    async with sb.get_queue_receiver(DEDUP) as receiver:
        messages = await receive_n(receiver, 2)
        assert [str(m) for m in messages] == ["first", "accepted again"]
        await receive_none(receiver, wait=0.3)


async def test_max_delivery_count_counts_lock_expiry_and_abandon_but_not_release(
    sb: ServiceBusClient,
) -> None:
    async with sb.get_queue_sender(DEFER) as sender:
        await sender.send_messages(ServiceBusMessage("poison"))
    async with sb.get_queue_receiver(DEFER, prefetch_count=5) as receiver:
        [first] = await receive_n(receiver, 1)
        await receiver.abandon_message(first)
    # The prefetching receiver above released what it had buffered: no delivery counted.
    async with sb.get_queue_receiver(DEFER) as receiver:
        [second] = await receive_n(receiver, 1)
        assert second.delivery_count == 1
        await receiver.abandon_message(second)
        [third] = await receive_n(receiver, 1)
        await receiver.abandon_message(third)  # third failed delivery: MaxDeliveryCount 3
        await receive_none(receiver, wait=0.3)
    async with sb.get_queue_receiver(DEFER, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = await receive_n(dlq, 1)
        assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
        assert dead.delivery_count == 3
