"""Link credit: a receiver holds credit only while it is in a receive call.

With ``prefetch_count=0`` each ``receive_messages(N)`` of azure-servicebus grants N credits
and leaves what it did not use on the link; Service Bus (and the emulator) delivers to any
link with credit, and the SDK gives a message that reached a receiver outside a receive
call back (``released``) only on its keep-alive, about every 5 s: the message reaches a
handler seconds late (issue 22; the emulator's PROTOCOL.md, "Link credit outlives a
receive call"). These tests count the ``released`` outcomes the emulator gets (a message
handed to a receiver that is not receiving is one of them, sooner or later) and read the
credit the SDK's link is left with after each receive call.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient

from consumer.runtime import channel as channel_module
from consumer.runtime.channel import ReceiverChannel
from consumer.runtime.routing import Route
from consumer.runtime.worker import Worker
from contracts import EventEnvelope
from contracts.servicebus import to_servicebus_message
from emulator.entity import Entity
from emulator.testing import run_emulator
from tests.conftest import AUDIT_QUEUE, queues_config
from tests.consumer.conftest import FAST, audit_envelope, eventually, queue_config, send


@dataclass
class ObservedQueue:
    """The emulator's audit queue, with every ``released`` outcome it applied recorded."""

    client: ServiceBusClient
    entity: Entity
    released: list[uuid.UUID] = field(default_factory=list)

    def locked(self) -> int:
        """Messages the emulator has handed to a receiver and not got back yet."""
        return len(self.entity._locks)


@pytest.fixture
async def audit() -> AsyncIterator[ObservedQueue]:
    # Five-minute locks: no lock expires while a test runs, so every message that comes
    # back was given back by a receiver.
    with run_emulator(queues_config(LockDuration="PT5M", MaxDeliveryCount=10)) as emulator:
        handler = emulator.emulator.handler
        assert handler is not None
        entity = handler.namespace.get(AUDIT_QUEUE)
        assert entity is not None
        async with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
            observed = ObservedQueue(client, entity)
            real_release = entity.release

            def release(token: uuid.UUID, now: float) -> None:  # runs on the emulator thread
                observed.released.append(token)
                real_release(token, now)

            entity.release = release  # type: ignore[method-assign]
            yield observed


class Blocked:
    """A handler that records each event and returns only once ``gate`` is set."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gate = asyncio.Event()

    async def __call__(self, envelope: EventEnvelope) -> None:
        self.started.append(envelope.id)
        await self.gate.wait()


def link_credit(channel: ReceiverChannel) -> int:
    """The credit the SDK's receive link holds (its own count; read for the test only)."""
    receiver: Any = channel._receiver
    credit: int = receiver._handler._link.current_link_credit
    return credit


@pytest.fixture(params=["credit taken back", "SDK link out of reach"])
def take_back(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a receiver avoids idling with credit: the credit taken back after a short
    receive call, and, were the SDK's link out of reach, calling again at once."""
    if request.param == "SDK link out of reach":

        async def unreachable(receiver: object) -> bool:
            return False

        monkeypatch.setattr(channel_module, "take_back_credit", unreachable)
    return str(request.param)


@pytest.mark.usefixtures("take_back")
async def test_a_message_sent_while_hands_are_nearly_full_reaches_a_receiving_receiver(
    audit: ObservedQueue,
) -> None:
    """Two receivers, 8 handler slots and 2 messages in hand: 10 messages at most.

    Nine arrive and block their handlers, so the consumer can take one more. The tenth
    must go to a receiver that is in a receive call (the one holding four of its share of
    five) and reach the consumer at once. Before the fix one receiver had asked for all
    ten, got nine and waited for capacity with one credit left; the tenth went to it and
    came back only on the SDK's keep-alive.
    """
    concurrency, capacity = 8, 10  # look-ahead: concurrency // 4
    handler = Blocked()
    worker = Worker(
        audit.client,
        [queue_config(AUDIT_QUEUE, concurrency=concurrency, receivers=2)],
        lambda envelope: Route("audit", handler, FAST),
        shutdown_grace_period=20,
    )
    stats = worker.stats.queue(AUDIT_QUEUE)
    envelopes = [audit_envelope(actor=f"u-{n}") for n in range(capacity)]
    await send(audit.client, AUDIT_QUEUE, *(to_servicebus_message(e) for e in envelopes[:-1]))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:

        async def nine_in_hand() -> bool:
            return stats.received == capacity - 1

        await eventually(nine_in_hand)
        await send(audit.client, AUDIT_QUEUE, to_servicebus_message(envelopes[-1]))

        async def tenth_received_or_given_back() -> bool:
            return stats.received == capacity or bool(audit.released)

        await eventually(tenth_received_or_given_back)
        assert audit.released == [], "a receiver that was not receiving was handed a message"
        assert stats.received == capacity
        assert audit.locked() == capacity  # every message handed out is in the consumer's hands

        handler.gate.set()

        async def all_completed() -> bool:
            return stats.completed == capacity

        await eventually(all_completed)
        assert audit.released == []
    finally:
        handler.gate.set()
        stop.set()
        await asyncio.wait_for(task, 30)

    assert sorted(handler.started) == sorted(e.id for e in envelopes)  # each handled once
    assert stats.locks_lost == stats.settlement_failures == stats.abandoned == 0


async def test_receivers_that_stopped_receiving_leave_new_messages_to_others(
    audit: ObservedQueue,
) -> None:
    """Shutdown: receiving ends while a handler still runs; a message sent then is not
    handed to the stopping consumer (which would give it back seconds later) but stays on
    the queue for the next receiver."""
    handler = Blocked()
    worker = Worker(
        audit.client,
        [queue_config(AUDIT_QUEUE, concurrency=4, receivers=2)],
        lambda envelope: Route("audit", handler, FAST),
        shutdown_grace_period=20,
    )
    [processor] = worker.processors
    first, later = audit_envelope(actor="u-first"), audit_envelope(actor="u-later")
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await send(audit.client, AUDIT_QUEUE, to_servicebus_message(first))

        async def first_started() -> bool:
            return handler.started == [first.id]

        await eventually(first_started)
        stop.set()

        async def receiving_ended() -> bool:
            return not processor.receiving

        await eventually(receiving_ended)
        await send(audit.client, AUDIT_QUEUE, to_servicebus_message(later))
        async with audit.client.get_queue_receiver(AUDIT_QUEUE) as receiver:
            [message] = await receiver.receive_messages(max_message_count=1, max_wait_time=30)
            await receiver.complete_message(message)
        assert message.message_id == later.id
        assert audit.released == [], "a receiver that had stopped receiving was handed it"
    finally:
        handler.gate.set()
        stop.set()
        await asyncio.wait_for(task, 30)

    assert handler.started == [first.id]
    assert worker.stats.queue(AUDIT_QUEUE).completed == 1


async def test_every_receive_call_leaves_its_link_without_credit(
    audit: ObservedQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages trickle in while others are settled: after each receive call, short ones
    included, the link holds no credit, so a settlement or lock renewal reading the
    connection between two calls has nothing to give back."""
    credit_after_calls: list[tuple[int, int, int]] = []  # asked, got, credit left
    real_receive = ReceiverChannel.receive

    async def receive(
        channel: ReceiverChannel, max_message_count: int, max_wait_time: float
    ) -> list[ServiceBusReceivedMessage]:
        messages = await real_receive(channel, max_message_count, max_wait_time)
        credit_after_calls.append((max_message_count, len(messages), link_credit(channel)))
        return messages

    monkeypatch.setattr(ReceiverChannel, "receive", receive)
    handled: list[str] = []

    async def record(envelope: EventEnvelope) -> None:
        handled.append(envelope.id)

    worker = Worker(
        audit.client,
        [queue_config(AUDIT_QUEUE, concurrency=4, receivers=2)],
        lambda envelope: Route("audit", record, FAST),
        shutdown_grace_period=20,
    )
    stats = worker.stats.queue(AUDIT_QUEUE)
    envelopes = [audit_envelope(actor=f"u-{n}") for n in range(30)]
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        for start in range(0, len(envelopes), 3):
            batch = envelopes[start : start + 3]
            await send(audit.client, AUDIT_QUEUE, *(to_servicebus_message(e) for e in batch))

            async def batch_completed(count: int = start + len(batch)) -> bool:
                return stats.completed == count

            await eventually(batch_completed)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    assert sorted(handled) == sorted(e.id for e in envelopes)
    short_calls = [call for call in credit_after_calls if call[1] < call[0]]
    assert short_calls  # the case that matters happened (a call that waited and timed out)
    assert [call for call in credit_after_calls if call[2] > 0] == []
