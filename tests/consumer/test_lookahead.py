"""Look-ahead: messages held in hand beyond the running handlers.

A queue processor keeps up to ``concurrency // 4`` (at least one) received messages in
hand while all handler slots are busy: locked, lock renewed, started as soon as a slot
frees. What must hold: a message waiting in hand keeps its lock (it is processed once,
never redelivered behind the worker's back), and on graceful shutdown the messages in
hand that never started are abandoned, so Service Bus hands them to the next receiver
at once (delivery count +1) instead of after their lock expires.
"""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient

from consumer.runtime.routing import Route
from consumer.runtime.worker import Worker
from contracts import EventEnvelope
from contracts.servicebus import to_servicebus_message
from emulator.testing import run_emulator
from tests.conftest import AUDIT_QUEUE, queues_config
from tests.consumer.conftest import FAST, audit_envelope, eventually, queue_config, send


@pytest.fixture
async def long_lock_sb() -> AsyncIterator[ServiceBusClient]:
    """Locks of 5 minutes, longer than any test may run: a message this test's receivers
    get again was given back, never released by an expired lock."""
    with run_emulator(queues_config(LockDuration="PT5M", MaxDeliveryCount=10)) as emulator:
        async with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
            yield client


@pytest.fixture
async def short_lock_sb() -> AsyncIterator[ServiceBusClient]:
    with run_emulator(queues_config(LockDuration="PT1S", MaxDeliveryCount=10)) as emulator:
        async with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
            yield client


async def receive_all(
    sb: ServiceBusClient, count: int, within: float = 20
) -> list[ServiceBusReceivedMessage]:
    """Receive and complete ``count`` messages, then make sure no more are there."""
    received: list[ServiceBusReceivedMessage] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    async with sb.get_queue_receiver(AUDIT_QUEUE) as receiver:
        while len(received) < count and loop.time() < deadline:
            batch = await receiver.receive_messages(
                max_message_count=count - len(received), max_wait_time=1
            )
            for message in batch:
                await receiver.complete_message(message)
            received.extend(batch)
        received.extend(await receiver.receive_messages(max_message_count=10, max_wait_time=1))
    return received


async def test_graceful_shutdown_gives_back_messages_in_hand_at_once(
    long_lock_sb: ServiceBusClient,
) -> None:
    concurrency, in_hand = 8, 2  # look-ahead: concurrency // 4
    envelopes = [audit_envelope(actor=f"u-{n}") for n in range(concurrency + in_hand + 3)]
    await send(long_lock_sb, AUDIT_QUEUE, *(to_servicebus_message(e) for e in envelopes))
    started: list[str] = []
    release = asyncio.Event()

    async def blocked(envelope: EventEnvelope) -> None:
        started.append(envelope.id)
        await release.wait()

    worker = Worker(
        long_lock_sb,
        [queue_config(AUDIT_QUEUE, concurrency=concurrency)],
        lambda envelope: Route("audit", blocked, FAST),
        shutdown_grace_period=20,
    )
    stats = worker.stats.queue(AUDIT_QUEUE)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:

        async def slots_full_and_hands_full() -> bool:
            return len(started) == concurrency and stats.received == concurrency + in_hand

        await eventually(slots_full_and_hands_full)
        stop.set()
        # Pacing, not a measurement: receiving ends (the receive loop is parked on a full
        # processor and wakes on stop) before the running handlers finish.
        await asyncio.sleep(0.5)
        release.set()
        await asyncio.wait_for(task, 30)
    finally:
        release.set()
        stop.set()
        if not task.done():
            await asyncio.wait_for(task, 30)

    assert len(started) == len(set(started)) == concurrency  # in-hand ones never started
    assert stats.received == concurrency + in_hand
    assert stats.completed == concurrency  # running handlers finished within the grace
    assert stats.abandoned == in_hand
    assert stats.locks_lost == stats.settlement_failures == 0

    rest = await receive_all(long_lock_sb, len(envelopes) - concurrency)

    ids = [str(m.message_id) for m in rest]
    assert sorted(ids) == sorted({e.id for e in envelopes} - set(started))  # nothing lost
    # The messages that were in hand come back at once (their 5-minute locks could not
    # have expired) with one more delivery; the others were never delivered.
    assert sorted(m.delivery_count or 0 for m in rest) == [0] * 3 + [1] * in_hand


async def test_a_message_waiting_in_hand_keeps_its_lock_and_is_processed_once(
    short_lock_sb: ServiceBusClient,
) -> None:
    handled: Counter[str] = Counter()

    async def slow(envelope: EventEnvelope) -> None:
        handled[envelope.id] += 1
        await asyncio.sleep(2.5)  # longer than two 1-second locks; the next one waits

    worker = Worker(
        short_lock_sb,
        # One slot: one message runs, one more is held in hand for the whole handler time.
        [queue_config(AUDIT_QUEUE, concurrency=1, max_wait_time=0.5)],
        lambda envelope: Route("audit", slow, FAST),
    )
    stats = worker.stats.queue(AUDIT_QUEUE)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    envelopes = [audit_envelope(actor=f"u-{n}") for n in range(3)]
    try:
        await send(short_lock_sb, AUDIT_QUEUE, *(to_servicebus_message(e) for e in envelopes))

        async def all_completed() -> bool:
            return stats.completed == len(envelopes)

        await eventually(all_completed, within=40)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    assert handled == Counter({e.id: 1 for e in envelopes}), handled
    assert stats.received == len(envelopes)  # never redelivered after an expired lock
    assert stats.locks_lost == stats.settlement_failures == stats.abandoned == 0
    assert stats.lock_renewals > 0
    assert await receive_all(short_lock_sb, 0) == []
