"""Each stage of one message's path (``consumer.runtime.pipeline``), tested alone.

Messages are real: sent to the emulator and received through a ``ReceiverChannel``, as
the receive loop does. The rest of the path after a stage is a small coroutine.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from consumer.errors import DeliverLater, PermanentError, TransientError
from consumer.retry import Abandon, DeadLetter, RetryPolicy, Schedule
from consumer.runtime.channel import ReceiverChannel, SenderChannel
from consumer.runtime.lock import MessageLockTimer
from consumer.runtime.pipeline import (
    Decode,
    HandlerCancelled,
    HandlerSlot,
    LockRenewal,
    MessageContext,
    MessagePipeline,
    ProcessingDeadline,
    RetryDecision,
    Route,
    Settle,
    Telemetry,
    outcome_label,
)
from consumer.runtime.routing import Route as HandlerRoute
from consumer.runtime.settlement import Complete, LockLost, Outcome
from consumer.runtime.stats import QueueStats
from contracts import AUDIT_EVENT_TYPE, DeadLetterReason, EventEnvelope
from contracts.servicebus import from_servicebus_message, to_servicebus_message
from tests.conftest import AUDIT_QUEUE
from tests.consumer.conftest import FAST, audit_envelope, dead_letters, queue_config, send
from tests.telemetry_support import azure_sdk_tracing, in_memory_telemetry

Contexts = Callable[..., Awaitable[list[MessageContext]]]


@pytest.fixture
async def channel(sb: ServiceBusClient) -> AsyncIterator[ReceiverChannel]:
    receiver = ReceiverChannel(sb, AUDIT_QUEUE, prefetch_count=0, generation=1)
    await receiver.open()
    yield receiver
    await receiver.close()


@pytest.fixture
def contexts(sb: ServiceBusClient, channel: ReceiverChannel) -> Contexts:
    """``await contexts(*messages)``: send them, receive them, one context each."""

    async def make(*messages: ServiceBusMessage) -> list[MessageContext]:
        await send(sb, AUDIT_QUEUE, *messages)
        received: list[ServiceBusReceivedMessage] = []
        while len(received) < len(messages):
            received += await channel.receive(len(messages) - len(received), 5)
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        return [
            MessageContext(m, channel, task, loop.time(), deadline=loop.time() + 30)
            for m in received
        ]

    return make


def with_lock(ctx: MessageContext, stats: QueueStats | None = None) -> MessageContext:
    ctx.lock = MessageLockTimer(
        ctx.channel, ctx.message, ctx.deadline, stats or QueueStats(), AUDIT_QUEUE, lambda: None
    )
    return ctx


def answer(outcome: Outcome) -> Callable[[MessageContext], Awaitable[Outcome]]:
    async def call_next(ctx: MessageContext) -> Outcome:
        return outcome

    return call_next


async def never(ctx: MessageContext) -> Outcome:
    raise AssertionError("the path should have stopped before")


# -- decode and route ----------------------------------------------------------------------


async def test_decode_sets_the_envelope_and_dead_letters_what_it_cannot_read(
    contexts: Contexts,
) -> None:
    envelope = audit_envelope()
    good, bad = await contexts(
        to_servicebus_message(envelope), ServiceBusMessage(b"not json", message_id="m-bad")
    )
    if good.message.message_id == "m-bad":
        good, bad = bad, good

    assert await Decode()(good, answer(Complete())) == Complete()
    assert good.envelope is not None
    assert good.envelope.id == envelope.id

    outcome = await Decode()(bad, never)
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason == DeadLetterReason.INVALID_JSON.value


async def test_route_picks_the_handler_or_dead_letters(contexts: Contexts) -> None:
    [ctx] = await contexts(to_servicebus_message(audit_envelope()))
    ctx.envelope = from_servicebus_message(ctx.message)

    async def handler(envelope: EventEnvelope) -> None:
        return None

    audit = HandlerRoute("audit", handler, FAST)
    assert await Route(AUDIT_QUEUE, None, lambda e: audit)(ctx, answer(Complete())) == Complete()
    assert ctx.route is audit

    wrong = await Route(AUDIT_QUEUE, frozenset({"other.v1"}), lambda e: audit)(ctx, never)
    assert isinstance(wrong, DeadLetter)
    assert wrong.reason == DeadLetterReason.WRONG_QUEUE.value

    unhandled = await Route(AUDIT_QUEUE, frozenset({AUDIT_EVENT_TYPE}), lambda e: None)(ctx, never)
    assert isinstance(unhandled, DeadLetter)
    assert unhandled.reason == "UnhandledEventType"


# -- retry decision and deadline -------------------------------------------------------------


async def test_retry_decision_turns_results_and_errors_into_outcomes(contexts: Contexts) -> None:
    [ctx] = await contexts(to_servicebus_message(audit_envelope()))
    ctx.envelope = from_servicebus_message(ctx.message)
    ctx.route = HandlerRoute("audit", lambda e: asyncio.sleep(0), RetryPolicy())
    with_lock(ctx)
    decision = RetryDecision(AUDIT_QUEUE, max_delivery_count=10)

    def raising(error: BaseException) -> Callable[[MessageContext], Awaitable[bool | None]]:
        async def call(ctx: MessageContext) -> bool | None:
            raise error

        return call

    async def returns(value: bool | None) -> bool | None:
        return value

    assert await decision(ctx, lambda c: returns(None)) == Complete()
    assert await decision(ctx, lambda c: returns(False)) == Complete(duplicate=True)
    permanent = await decision(ctx, raising(PermanentError("Bad", "no")))
    assert permanent == DeadLetter("Bad", "no")
    transient = await decision(ctx, raising(TransientError("later")))
    assert isinstance(transient, Schedule)
    assert transient.message_id == f"{ctx.envelope.id}:retry:1"
    at = datetime.now(UTC) + timedelta(hours=1)
    later = await decision(ctx, raising(DeliverLater(at)))
    assert isinstance(later, Schedule)
    assert later.at == at
    cancelled = await decision(ctx, raising(HandlerCancelled()))
    assert isinstance(cancelled, Abandon)

    assert ctx.lock is not None
    ctx.lock.lost = True
    assert await decision(ctx, raising(TransientError("later"))) == LockLost()
    await ctx.lock.stop()


async def test_processing_deadline_tells_its_cancellations_apart(contexts: Contexts) -> None:
    [ctx] = await contexts(to_servicebus_message(audit_envelope()))
    with_lock(ctx)
    deadline = ProcessingDeadline()
    started = asyncio.Event()

    async def hang(ctx: MessageContext) -> bool | None:
        started.set()
        await asyncio.Event().wait()
        return None

    async def run() -> bool | None:
        ctx.task = asyncio.current_task()  # type: ignore[assignment]
        return await deadline(ctx, hang)

    for cancel, expected in (
        (deadline.cancel_at_deadline, TimeoutError),
        (lambda task: deadline.cancel_all(), HandlerCancelled),
        (lambda task: task.cancel(), asyncio.CancelledError),  # someone else's: not ours
    ):
        started.clear()
        task = asyncio.create_task(run())
        await started.wait()
        cancel(task)
        with pytest.raises(expected):
            await task
        assert task.cancelling() == (1 if expected is asyncio.CancelledError else 0)

    assert ctx.lock is not None
    ctx.lock.expired = True
    with pytest.raises(TimeoutError):
        await deadline(ctx, hang)
    await ctx.lock.stop()


# -- handler slot and lock renewal -----------------------------------------------------------


async def test_handler_slot_limits_handlers_and_abandons_after_receiving_stopped(
    contexts: Contexts,
) -> None:
    first, second = await contexts(
        to_servicebus_message(audit_envelope()), to_servicebus_message(audit_envelope())
    )
    stopped = False
    handled: list[asyncio.Task[Any]] = []
    slot = HandlerSlot(1, lambda: stopped, handled.append)
    release = asyncio.Event()
    running: list[MessageContext] = []
    entered = asyncio.Event()

    async def hold(ctx: MessageContext) -> Outcome:
        running.append(ctx)
        entered.set()
        await release.wait()
        return Complete()

    one = asyncio.create_task(slot(first, hold))
    two = asyncio.create_task(slot(second, hold))
    await entered.wait()
    for _ in range(10):  # let the second task run as far as it can
        await asyncio.sleep(0)
    assert running == [first]  # the second waits for the only slot
    stopped = True
    release.set()
    assert await one == Complete()
    assert isinstance(await two, Abandon)  # got its slot after receiving stopped
    assert handled == [first.task, second.task]


async def test_lock_renewal_arms_the_deadline_and_reports_a_lost_lock(
    contexts: Contexts, channel: ReceiverChannel
) -> None:
    first, second = await contexts(
        to_servicebus_message(audit_envelope()), to_servicebus_message(audit_envelope())
    )
    stats = QueueStats()
    renewal = LockRenewal(AUDIT_QUEUE, 30.0, stats, lambda task: None)

    async def check(ctx: MessageContext) -> Outcome:
        assert ctx.lock is not None
        assert ctx.deadline > asyncio.get_running_loop().time() + 25
        return Complete()

    assert await renewal(first, check) == Complete()

    async def runtime_bug(ctx: MessageContext) -> Outcome:
        raise KeyError("a bug")

    outcome = await renewal(first, runtime_bug)
    assert isinstance(outcome, Abandon)
    assert "KeyError" in outcome.why

    async def lose_lock(ctx: MessageContext) -> Outcome:
        assert ctx.lock is not None
        ctx.lock.lost = True
        return Complete()

    assert await renewal(second, lose_lock) == LockLost()


# -- settle and telemetry --------------------------------------------------------------------


async def test_settle_carries_out_each_outcome(sb: ServiceBusClient, contexts: Contexts) -> None:
    done, dead, later, lost = await contexts(
        *(to_servicebus_message(audit_envelope()) for _ in range(4))
    )
    stats = QueueStats()
    sender = SenderChannel(sb, AUDIT_QUEUE)
    settle = Settle(AUDIT_QUEUE, 10, sender, stats)
    at = datetime.now(UTC) + timedelta(seconds=1)
    schedule = Schedule(at, "resend-1", {"retryAttempt": 1})

    assert await settle(done, answer(Complete())) == Complete()
    assert await settle(dead, answer(DeadLetter("Bad", "x" * 2000))) == DeadLetter(
        "Bad", "x" * 2000
    )
    assert await settle(later, answer(schedule)) == schedule
    assert await settle(lost, answer(LockLost())) == LockLost()
    await sender.close()

    assert stats.completed == 2
    assert stats.retries_scheduled == 1
    assert stats.dead_lettered["Bad"] == 1
    [letter] = await dead_letters(sb, AUDIT_QUEUE, 1)
    assert letter.dead_letter_reason == "Bad"
    assert letter.dead_letter_error_description == "x" * 1024
    back: dict[str, ServiceBusReceivedMessage] = {}  # the re-send, and the lock-lost one
    async with sb.get_queue_receiver(AUDIT_QUEUE) as receiver:
        for _ in range(10):
            for message in await receiver.receive_messages(max_message_count=2, max_wait_time=2):
                back[str(message.message_id)] = message
                await receiver.complete_message(message)
            if len(back) == 2:
                break
    assert set(back) == {"resend-1", lost.message.message_id}
    properties = back["resend-1"].application_properties or {}
    assert properties[b"retryAttempt"] == 1  # the original's properties, plus the ladder's


async def test_telemetry_labels_each_outcome(contexts: Contexts) -> None:
    [ctx] = await contexts(to_servicebus_message(audit_envelope()))
    assert await Telemetry(AUDIT_QUEUE)(ctx, answer(Complete())) == Complete()
    at = datetime.now(UTC)
    assert [
        outcome_label(o)
        for o in (Complete(), Schedule(at, "m", {}), DeadLetter("R", "d"), Abandon("w"), LockLost())
    ] == [
        ("complete", None),
        ("retry_scheduled", None),
        ("dead_letter", "R"),
        ("abandon", None),
        ("lock_lost", None),
    ]


async def test_settlement_is_recorded_on_the_process_span_not_in_a_second_span(
    sb: ServiceBusClient, contexts: Contexts
) -> None:
    """Inside ``process <queue>`` the SDK's per-message settlement span is left out (the
    process span records the disposition, and a failed settlement as an exception);
    outside one, the SDK's settlement span is kept."""
    collected = in_memory_telemetry()
    with azure_sdk_tracing():
        done, failing, plain = await contexts(
            *(to_servicebus_message(audit_envelope()) for _ in range(3))
        )
        stats = QueueStats()
        sender = SenderChannel(sb, AUDIT_QUEUE)
        settle = Settle(AUDIT_QUEUE, 10, sender, stats)
        telemetry = Telemetry(AUDIT_QUEUE)

        async def settled(ctx: MessageContext) -> Outcome:
            return await settle(ctx, answer(Complete()))

        assert await telemetry(done, settled) == Complete()
        await plain.channel.complete(plain.message)
        await failing.channel.close()  # its receiver is gone: settling it must fail
        assert await telemetry(failing, settled) == Complete()
        await sender.close()

    spans = {
        str((s.attributes or {}).get("messaging.message.id")): s
        for s in collected.finished(f"process {AUDIT_QUEUE}")
    }
    ok = spans[str(done.message.message_id)]
    assert (ok.attributes or {})["messaging.servicebus.disposition_status"] == "complete"
    assert ok.status.is_ok
    bad = spans[str(failing.message.message_id)]
    assert not bad.status.is_ok
    assert [event.name for event in bad.events] == ["exception"]
    assert stats.completed == 1
    settlement_spans = collected.finished("ServiceBus.complete")
    assert len(settlement_spans) == 1, "only the settlement outside a process span"
    assert settlement_spans[0].parent is None or settlement_spans[0].parent.span_id not in {
        ok.context.span_id,
        bad.context.span_id,
    }


# -- the whole path --------------------------------------------------------------------------


async def test_the_whole_path_completes_a_handled_message(
    sb: ServiceBusClient, contexts: Contexts
) -> None:
    [ctx] = await contexts(to_servicebus_message(audit_envelope()))
    seen: list[str] = []

    async def handler(envelope: EventEnvelope) -> None:
        seen.append(envelope.id)

    stats = QueueStats()
    sender = SenderChannel(sb, AUDIT_QUEUE)
    handled: list[asyncio.Task[Any]] = []
    pipeline = MessagePipeline(
        queue_config(AUDIT_QUEUE, event_types=frozenset({AUDIT_EVENT_TYPE})),
        lambda envelope: HandlerRoute("audit", handler, FAST),
        stats,
        sender,
        receiving_stopped=lambda: False,
        on_handled=handled.append,
    )
    assert await pipeline(ctx.message, ctx.channel, ctx.task) == Complete()
    await sender.close()
    assert seen == [from_servicebus_message(ctx.message).id]
    assert stats.completed == 1
    assert handled == [ctx.task]
    async with sb.get_queue_receiver(AUDIT_QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        assert await dlq.receive_messages(max_wait_time=1) == []
