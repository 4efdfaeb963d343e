"""One message's path through the consumer, as a stack of stages.

Each stage is one idea: ``async def __call__(ctx, call_next)`` does its part on the way
in, awaits the rest of the path, and does the rest on the way out, with the outcome
(:data:`consumer.runtime.settlement.Outcome`) coming back up, as FastStream's middlewares
do. Read top to bottom, this file is the order a message meets them:

1. :class:`Telemetry` -- the CONSUMER span; on the way out, outcome and duration.
2. :class:`Settle` -- on the way out: complete, schedule a re-send (then complete),
   dead-letter or abandon, as the outcome says; a lost lock is left alone.
3. :class:`LockRenewal` -- keeps the peek-lock until the outcome is known, and arms the
   processing deadline (one timer per message does both, :mod:`consumer.runtime.lock`).
4. :class:`HandlerSlot` -- waits for one of the queue's ``concurrency`` slots.
   Then, only on subscriptions and session sources (:mod:`consumer.runtime.redelivery`):
   ``RetryHold`` -- a retry is held until due, then abandoned; and only on subscriptions:
   ``OtherSubscriptionsCopy`` -- a DLQ replay copy for another subscription is completed.
5. :class:`Decode` -- the envelope; undecodable -> dead-letter with the contract's reason.
6. :class:`Route` -- the handler; wrong queue or no handler -> dead-letter.
7. :class:`RetryDecision` -- on the way out: success -> complete; failure -> the retry
   ladder's decision (:func:`consumer.retry.decide`).
8. :class:`ProcessingDeadline` -- the handler runs until the maximum processing time
   (then ``TimeoutError``, a transient failure) or until shutdown cancels it.
9. :class:`InvokeHandler` -- the handler, with its immediate in-process retries.

The receive loop (:mod:`consumer.runtime.processor`) composes one
:class:`MessagePipeline` per queue and awaits it once per message, in the message's own
task. Settlement follows
https://learn.microsoft.com/azure/service-bus-messaging/message-transfers-locks-settlement.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from azure.servicebus import ServiceBusReceivedMessage
from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MessagingServicebusDispositionStatusValues as Disposition,
)

from common import span_attributes
from consumer import telemetry
from consumer.errors import ConsumerDeadLetterReason, DeliverLater
from consumer.messages import text_properties
from consumer.retry import (
    Abandon,
    DeadLetter,
    Decision,
    RetryState,
    Schedule,
    call_with_immediate_retries,
    decide,
    describe,
)
from consumer.runtime import routing
from consumer.runtime.channel import ReceiverChannel, SenderChannel
from consumer.runtime.config import QueueConfig
from consumer.runtime.context import HandlerNext, MessageContext, Next, Stage
from consumer.runtime.lock import MessageLockTimer
from consumer.runtime.redelivery import OtherSubscriptionsCopy, RetryHold, redelivery_ladder
from consumer.runtime.settlement import (
    COMPLETE,
    DUPLICATE,
    LOCK_LOST,
    Complete,
    LockLost,
    Outcome,
    reschedule,
    settled,
)
from consumer.runtime.stats import QueueStats
from contracts import ContractViolation, DeadLetterReason, EventEnvelope
from contracts.servicebus import from_servicebus_message

__all__ = ["HandlerNext", "MessageContext", "MessagePipeline", "Next", "Stage"]

logger = logging.getLogger(__name__)


class Telemetry:
    """The ``process <queue>`` span around the whole path; outcome label and duration."""

    def __init__(self, queue: str) -> None:
        self._queue = queue

    async def __call__(self, ctx: MessageContext, call_next: Next) -> Outcome:
        with telemetry.process_span(self._queue, ctx.message) as span:
            outcome = await call_next(ctx)
            label, reason = outcome_label(outcome)
            telemetry.record_processed(span, self._queue, label, ctx.started, reason)
        return outcome


def outcome_label(outcome: Outcome) -> tuple[str, str | None]:
    """The telemetry outcome label of a settled ``outcome``, and its dead-letter reason."""
    if isinstance(outcome, Complete):
        return Disposition.COMPLETE.value, None
    if isinstance(outcome, Schedule):
        return span_attributes.RETRY_SCHEDULED, None
    if isinstance(outcome, DeadLetter):
        return Disposition.DEAD_LETTER.value, outcome.reason
    if isinstance(outcome, Abandon):
        return Disposition.ABANDON.value, None
    return span_attributes.LOCK_LOST, None


class Settle:
    """Carries out the outcome on the message's receiver; returns what was done.

    A ``Schedule`` sends the re-send first, then completes the original; when the
    re-send cannot be scheduled the ladder's fallback (abandon or dead-letter) is
    carried out and returned instead. Settlement failures are counted, never raised.
    """

    def __init__(
        self, queue: str, max_delivery_count: int, sender: SenderChannel, stats: QueueStats
    ):
        self._queue = queue
        self._max_delivery_count = max_delivery_count
        self._sender = sender
        self._stats = stats

    async def __call__(self, ctx: MessageContext, call_next: Next) -> Outcome:
        outcome = await call_next(ctx)
        message, channel, stats = ctx.message, ctx.channel, self._stats
        if isinstance(outcome, LockLost):
            logger.warning(
                "lock lost on message %s (%s); it will be redelivered",
                message.message_id,
                self._queue,
            )
            return outcome
        done: Outcome = outcome
        if isinstance(outcome, Schedule):
            done = await reschedule(
                self._sender, message, outcome, self._max_delivery_count, stats, self._queue
            )
            if isinstance(done, Complete):
                done = outcome  # re-sent: the original is completed below
        if isinstance(done, Complete | Schedule):
            if await settled(channel.complete(message), message, stats):
                stats.completed += 1
                stats.duplicates += isinstance(done, Complete) and done.duplicate
        elif isinstance(done, DeadLetter):
            logger.warning(
                "dead-lettering message %s on %s: %s: %s",
                message.message_id,
                self._queue,
                done.reason,
                done.description,
            )
            dead_letter = channel.dead_letter(message, done.reason, done.description[:1024])
            if await settled(dead_letter, message, stats):
                stats.dead_lettered[done.reason] += 1
        elif isinstance(done, Abandon):
            logger.info(
                "abandoning message %s on %s: %s", message.message_id, self._queue, done.why
            )
            if await settled(channel.abandon(message), message, stats):
                stats.abandoned += 1
        return done


class LockRenewal:
    """Keeps the message's lock from receipt until its outcome; arms its deadline.

    A lost lock turns any outcome into ``LockLost``. Also the path's safety net: an
    error the stages below did not expect (a bug in the runtime itself) abandons the
    message rather than losing the worker.
    """

    def __init__(
        self,
        queue: str,
        max_processing_time: float,
        stats: QueueStats,
        on_deadline: Callable[[asyncio.Task[Any]], None],
    ) -> None:
        self._queue = queue
        self._max_processing_time = max_processing_time
        self._stats = stats
        self._on_deadline = on_deadline

    async def __call__(self, ctx: MessageContext, call_next: Next) -> Outcome:
        ctx.deadline = asyncio.get_running_loop().time() + self._max_processing_time
        lock = ctx.lock = MessageLockTimer(
            ctx.channel,
            ctx.message,
            ctx.deadline,
            self._stats,
            self._queue,
            partial(self._on_deadline, ctx.task),
        )
        try:
            outcome = await call_next(ctx)
        except Exception as exc:
            logger.exception("processing message %s failed unexpectedly", ctx.message.message_id)
            outcome = Abandon(describe(exc))
        finally:
            await lock.stop()
        return LOCK_LOST if lock.lost else outcome


class HandlerSlot:
    """Waits for one of the queue's handler slots; frees the receiver's share after.

    Up to ``lookahead`` messages wait here locked (their locks renewed) so that a freed
    slot starts its next message without a receive round trip. One that gets its slot
    after receiving stopped is abandoned unstarted.

    Args:
        concurrency: Handlers running at once.
        receiving_stopped: True once the queue's receivers stopped (shutdown).
        on_handled: Called with the message's task once its handler is done, so that its
            receiver may receive again (:mod:`consumer.runtime.processor`).
    """

    def __init__(
        self,
        concurrency: int,
        receiving_stopped: Callable[[], bool],
        on_handled: Callable[[asyncio.Task[Any]], None],
    ) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._receiving_stopped = receiving_stopped
        self._on_handled = on_handled

    async def __call__(self, ctx: MessageContext, call_next: Next) -> Outcome:
        try:
            async with self._slots:
                if self._receiving_stopped():  # a look-ahead message, not started
                    return Abandon("shutting down before the handler started")
                return await call_next(ctx)
        finally:
            self._on_handled(ctx.task)


class Decode:
    """The envelope from the message; a contract violation dead-letters with its reason."""

    async def __call__(self, ctx: MessageContext, call_next: Next) -> Outcome:
        try:
            ctx.envelope = from_servicebus_message(ctx.message)
        except ContractViolation as exc:
            return DeadLetter(str(exc.reason), exc.description)
        return await call_next(ctx)


class Route:
    """The envelope's handler (``router``); dead-letters what this queue cannot take.

    ``WrongQueue`` when the event type does not belong on the queue (``event_types``),
    ``UnhandledEventType`` when no handler takes it.
    """

    def __init__(self, queue: str, event_types: frozenset[str] | None, router: routing.Router):
        self._queue = queue
        self._event_types = event_types
        self._router = router

    async def __call__(self, ctx: MessageContext, call_next: Next) -> Outcome:
        envelope = ctx.envelope
        assert envelope is not None
        if self._event_types is not None and envelope.type not in self._event_types:
            return DeadLetter(
                DeadLetterReason.WRONG_QUEUE.value,
                f"{envelope.type} does not belong on queue {self._queue}",
            )
        ctx.route = self._router(envelope)
        if ctx.route is None:
            return DeadLetter(
                ConsumerDeadLetterReason.UNHANDLED_EVENT_TYPE.value,
                f"no handler for {envelope.type} in this consumer",
            )
        return await call_next(ctx)


class HandlerCancelled(Exception):
    """Shutdown cancelled the handler (``ProcessingDeadline.cancel_all``): abandon."""


class RetryDecision:
    """Turns the handler's result or error into the outcome (:mod:`consumer.retry`).

    Success completes (``False`` from the handler: a duplicate); ``DeliverLater``
    schedules the message for its time; a shutdown cancel abandons; other errors go to
    :func:`consumer.retry.decide` (permanent: dead-letter; transient: re-send or
    redelivery; exhausted: dead-letter), unless the lock was lost meanwhile.
    """

    def __init__(self, queue: str, max_delivery_count: int, *, resends: bool = True):
        self._queue = queue
        self._max_delivery_count = max_delivery_count
        self._resends = resends  # False: the ladder counts deliveries (redelivery.py)

    async def __call__(self, ctx: MessageContext, call_next: HandlerNext) -> Outcome:
        envelope, lock = ctx.envelope, ctx.lock
        assert envelope is not None
        assert lock is not None
        try:
            result = await call_next(ctx)
        except HandlerCancelled:
            return Abandon("shutting down before the handler finished")
        except DeliverLater as later:
            return Schedule(later.at, f"{envelope.id}:deliver-at:{int(later.at.timestamp())}", {})
        except Exception as error:
            if lock.lost:
                return LOCK_LOST
            return self._decide(ctx, envelope, error)
        if result is False:
            return DUPLICATE
        telemetry.record_end_to_end(self._queue, envelope.type, envelope.time)
        return COMPLETE

    def _decide(self, ctx: MessageContext, envelope: EventEnvelope, error: Exception) -> Decision:
        message, route = ctx.message, ctx.route
        assert route is not None
        policy = route.policy
        if self._resends:
            state = RetryState.from_properties(text_properties(message), message.message_id)
        else:
            state, policy = redelivery_ladder(message, policy, self._max_delivery_count)
        logger.warning(
            "%s failed on %s (event %s, attempt %d, delivery %s): %s",
            route.name,
            self._queue,
            envelope.id,
            state.attempt,
            message.delivery_count,
            describe(error),
        )
        return decide(
            error,
            policy=policy,
            state=state,
            event_id=envelope.id,
            delivery_count=message.delivery_count or 0,
            max_delivery_count=self._max_delivery_count,
        )


class ProcessingDeadline:
    """The handler runs until the message's deadline, or until shutdown cancels it.

    The handler is awaited in the message's own task rather than a task of its own (a
    task per message costs measurable CPU at thousands of messages a second): the lock
    timer at the deadline (:meth:`cancel_at_deadline`) and shutdown (:meth:`cancel_all`)
    cancel the message's task while it is in here, and this stage tells the two apart.

    Raises (from ``__call__``):
        TimeoutError: the deadline passed, before or during the handler (transient, as
            with ``asyncio.timeout``).
        HandlerCancelled: :meth:`cancel_all` stopped it.
    """

    def __init__(self) -> None:
        self._in_handler: set[asyncio.Task[Any]] = set()
        self._shutdown_cancels: set[asyncio.Task[Any]] = set()
        self._deadline_cancels: set[asyncio.Task[Any]] = set()

    async def __call__(self, ctx: MessageContext, call_next: HandlerNext) -> bool | None:
        task = ctx.task
        if ctx.lock is not None and ctx.lock.expired:  # it passed while waiting for a slot
            raise TimeoutError("maximum processing time reached before the handler started")
        self._in_handler.add(task)
        try:
            return await call_next(ctx)
        except asyncio.CancelledError:
            ours = (task in self._shutdown_cancels) + (task in self._deadline_cancels)
            if ours and task.cancelling() == ours:  # cancelled by us alone
                if task in self._shutdown_cancels:
                    raise HandlerCancelled from None
                raise TimeoutError("maximum processing time reached") from None
            raise
        finally:
            self._in_handler.discard(task)
            # Withdraw our cancellation requests (also when the handler swallowed one),
            # so that only other cancellations of the task remain.
            for cancels in (self._shutdown_cancels, self._deadline_cancels):
                if task in cancels:
                    cancels.discard(task)
                    task.uncancel()

    def cancel_at_deadline(self, task: asyncio.Task[Any]) -> None:
        """The message's maximum processing time is over: cancel its handler, if running."""
        if task in self._in_handler and task not in self._deadline_cancels:
            self._deadline_cancels.add(task)
            task.cancel()

    def cancel_all(self) -> int:
        """Cancel every running handler (shutdown); returns how many."""
        running = list(self._in_handler)
        for task in running:
            self._shutdown_cancels.add(task)
            task.cancel()
        return len(running)


class InvokeHandler:
    """Calls the route's handler with its immediate retries, within the deadline's budget."""

    def __init__(self, stats: QueueStats) -> None:
        self._stats = stats

    async def __call__(self, ctx: MessageContext) -> bool | None:
        envelope, route, lock = ctx.envelope, ctx.route, ctx.lock
        assert envelope is not None
        assert route is not None
        assert lock is not None

        def retried(error: BaseException) -> None:
            self._stats.immediate_retries += 1
            logger.info("retrying %s (%s) in process: %s", envelope.id, route.name, describe(error))

        return await call_with_immediate_retries(
            partial(route.handler, envelope),
            route.policy,
            budget=max(0.0, ctx.deadline - asyncio.get_running_loop().time()),
            on_retry=retried,
            keep_going=lambda: not lock.lost,
        )


class MessagePipeline:
    """The stages of one source, composed once; ``await pipeline(ctx)`` runs one message.

    ``deadline`` cancels handlers (:meth:`ProcessingDeadline.cancel_all`); ``hold`` ends
    the holds of retries due later (:meth:`RetryHold.release_all`), both at shutdown.

    Args:
        config: The source's settings.
        router: Picks each envelope's handler.
        stats: The queue's counters.
        sender: Sends the queue's delayed retries.
        receiving_stopped: True once the queue's receivers stopped (shutdown).
        on_handled: Called with a message's task once its handler is done.
    """

    def __init__(
        self,
        config: QueueConfig,
        router: routing.Router,
        stats: QueueStats,
        sender: SenderChannel,
        *,
        receiving_stopped: Callable[[], bool],
        on_handled: Callable[[asyncio.Task[Any]], None],
    ) -> None:
        queue, resends = config.name, config.resends_retries
        self.deadline = ProcessingDeadline()
        self.hold = RetryHold()
        handler: HandlerNext = partial(self.deadline, call_next=InvokeHandler(stats))
        decision = RetryDecision(queue, config.max_delivery_count, resends=resends)
        path: Next = partial(decision, call_next=handler)
        slots = config.max_concurrent_sessions if config.sessions else config.concurrency
        stages: list[Stage] = [  # outermost first: the order a message meets them
            Telemetry(queue),
            Settle(queue, config.max_delivery_count, sender, stats),
            LockRenewal(queue, config.max_processing_time, stats, self.deadline.cancel_at_deadline),
            HandlerSlot(slots, receiving_stopped, on_handled),
            *([] if resends else [self.hold]),
            *(
                [OtherSubscriptionsCopy(config.entity.name)]
                if config.entity.is_subscription
                else []
            ),
            Decode(),
            Route(queue, config.event_types, router),
        ]
        for stage in reversed(stages):
            path = partial(stage, call_next=path)
        self._path = path

    def __call__(
        self, message: ServiceBusReceivedMessage, channel: ReceiverChannel, task: asyncio.Task[Any]
    ) -> Awaitable[Outcome]:
        """Process ``message`` from ``channel`` in ``task`` (the current one), to the end."""
        return self._path(MessageContext(message, channel, task, time.monotonic()))
